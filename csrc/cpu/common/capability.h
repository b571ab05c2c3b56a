// Which SIMD code path the CPU kernels can take: detected once from what the CPU supports.
// Framework-free. The path in use is a setting (settings.h): it may only be lowered below this.
#pragma once

namespace cnnfast::cpu {

enum class Capability : int { kDefault = 0, kAvx2 = 1, kAvx512 = 2 };

// The best path this CPU supports (detected at the first call).
Capability supported_capability();
const char* capability_name(Capability c);
// The capability named "avx512", "avx2" or "default"; false for any other name.
bool parse_capability(const char* name, Capability* out);

}  // namespace cnnfast::cpu
