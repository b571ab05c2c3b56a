#include "cpu/common/capability.h"

#include <cstring>
#include <initializer_list>

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

const char* capability_name(Capability c) {
  switch (c) {
    case Capability::kAvx512: return "avx512";
    case Capability::kAvx2: return "avx2";
    default: return "default";
  }
}

bool parse_capability(const char* name, Capability* out) {
  for (Capability c : {Capability::kAvx512, Capability::kAvx2, Capability::kDefault}) {
    if (std::strcmp(name, capability_name(c)) == 0) {
      *out = c;
      return true;
    }
  }
  return false;
}

}  // namespace cnnfast::cpu
