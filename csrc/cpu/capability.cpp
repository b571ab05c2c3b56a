#include "cpu/capability.h"

#include <strings.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace cnnfast::cpu {

namespace {

Capability detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // The AVX-512 path uses F, BW, VL and DQ instructions; the AVX2 path AVX2 and FMA. The OS must also
  // save the wide registers, which __builtin_cpu_supports reflects on GCC >= 12 via XGETBV.
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma"))
    return Capability::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Capability::kAvx2;
#endif
  return Capability::kDefault;
}

}  // namespace

Capability supported_capability() {
  static const Capability best = detect();
  return best;
}

Capability current_capability() {
  const Capability best = supported_capability();
  const char* env = std::getenv("CNNFAST_CPU_CAPABILITY");
  if (env == nullptr || *env == '\0') return best;
  Capability want;
  if (strcasecmp(env, "avx512") == 0) want = Capability::kAvx512;
  else if (strcasecmp(env, "avx2") == 0) want = Capability::kAvx2;
  else if (strcasecmp(env, "default") == 0) want = Capability::kDefault;
  else
    throw std::invalid_argument(std::string("cnnfast: the environment variable CNNFAST_CPU_CAPABILITY must be "
                                            "avx512, avx2 or default (or unset), got '") + env + "'");
  return static_cast<int>(want) < static_cast<int>(best) ? want : best;
}

Switch env_switch(const char* name) {
  const char* env = std::getenv(name);
  if (env == nullptr || *env == '\0' || std::strcmp(env, "auto") == 0) return Switch::kAuto;
  if (std::strcmp(env, "0") == 0) return Switch::kOff;
  if (std::strcmp(env, "1") == 0) return Switch::kOn;
  throw std::invalid_argument(std::string("cnnfast: the environment variable ") + name +
                              " must be 0 (never), 1 (wherever it applies) or auto (or unset), got '" + env + "'");
}

const char* capability_name(Capability c) {
  switch (c) {
    case Capability::kAvx512: return "avx512";
    case Capability::kAvx2: return "avx2";
    default: return "default";
  }
}

}  // namespace cnnfast::cpu
