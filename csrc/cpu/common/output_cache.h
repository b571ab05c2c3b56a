// Memory for the CPU ops' outputs, reused from call to call.
//
// torch's CPU tensors come from malloc, and glibc's malloc hands the freed top of its heap back to the
// system once it exceeds a threshold; in a training step the activations and gradients are freed in
// bulk, so the next step faults every page of them in again (a zero-filled 4 KB page per fault:
// about 2800 faults per CIFAR-ResNet step, benchmarks/NOTES.md "Outputs from a cache"). The ops'
// outputs of at least kOutputCacheMinBytes therefore come from a cache: a freed output's block is
// kept, keyed by its size, for the next output of that size, up to a byte limit (a setting:
// cnnfast.backends.cpu.output_cache_mb, default 1024 MB; 0 turns the cache off). Smaller outputs, which
// malloc serves from its heap without faults, are plain at::empty. The blocks are 64-byte aligned and
// left uninitialized: every kernel writes each element of its outputs. The ops allocate through
// outputs.h; this header is the cache's framework-free control surface.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cnnfast::cpu {

constexpr std::size_t kOutputCacheMinBytes = std::size_t(64) << 10;
constexpr int64_t kOutputCacheDefaultBytes = int64_t(1024) << 20;

struct OutputCacheStats {
  int64_t cached_bytes;  // held for reuse (free blocks)
  int64_t limit_bytes;   // at most this many held
  int64_t hits, misses;  // requests served from the cache / from malloc
};
OutputCacheStats output_cache_stats();
// Frees every held block (the outputs still in use are untouched and return to the cache when freed).
void empty_output_cache();
// At most `bytes` held from now on (0: the cache is off); held blocks past it are freed, oldest first.
void set_output_cache_limit(int64_t bytes);

}  // namespace cnnfast::cpu
