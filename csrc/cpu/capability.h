// Which SIMD code path the CPU kernels take: chosen at run time from what the CPU supports, or
// forced (downwards only) with the environment variable CNNFAST_CPU_CAPABILITY=avx512|avx2|default,
// in the manner of ATEN_CPU_CAPABILITY. Framework-free. A request the CPU cannot honour (avx512 on a
// CPU without AVX-512) falls back to the best path it does support: never an illegal instruction.
#pragma once

namespace cnnfast::cpu {

enum class Capability : int { kDefault = 0, kAvx2 = 1, kAvx512 = 2 };

// The best path this CPU supports (cached after the first call).
Capability supported_capability();
// The path the kernels use now: supported_capability(), lowered by CNNFAST_CPU_CAPABILITY when set.
// The variable is read at each call (one getenv per op call), so tests can switch paths in-process.
Capability current_capability();
const char* capability_name(Capability c);

}  // namespace cnnfast::cpu
