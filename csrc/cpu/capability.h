// Which SIMD code path the CPU kernels take: chosen at run time from what the CPU supports, or
// forced (downwards only) with the environment variable CNNFAST_CPU_CAPABILITY=avx512|avx2|default,
// in the manner of ATEN_CPU_CAPABILITY. Framework-free. A request the CPU cannot honour (avx512 on a
// CPU without AVX-512) falls back to the best path it does support: never an illegal instruction.
// Any other value of the variable is an error (std::invalid_argument, naming it and its value).
#pragma once

namespace cnnfast::cpu {

enum class Capability : int { kDefault = 0, kAvx2 = 1, kAvx512 = 2 };

// The best path this CPU supports (cached after the first call).
Capability supported_capability();
// The path the kernels use now: supported_capability(), lowered by CNNFAST_CPU_CAPABILITY when set.
// The variable is read at each call (one getenv per op call), so tests can switch paths in-process.
Capability current_capability();
const char* capability_name(Capability c);

// An algorithm switch read from the environment at each call (CNNFAST_CPU_WINOGRAD,
// CNNFAST_CPU_BATCH16): unset, empty or "auto" -> kAuto (the measured rule), "0" -> kOff, "1" -> kOn;
// any other value throws std::invalid_argument naming the variable and its value.
enum class Switch { kAuto, kOff, kOn };
Switch env_switch(const char* name);

}  // namespace cnnfast::cpu
