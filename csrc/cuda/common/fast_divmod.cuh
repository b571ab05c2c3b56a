// Division by a divisor fixed for a launch, without a divide instruction: the host computes a
// multiplier and a shift (round-up reciprocal, Granlund and Montgomery), the device takes one
// __umulhi, an add and a shift. Exact for every dividend in [0, 2^31) and divisor in [1, 2^31).
// Kernels decompose their linear indices with it (pixel -> image, row, column) instead of the
// 64-bit division routines that `/` and `%` on int64_t call.
#pragma once

#include <cstdint>

#include "swizzle.cuh"  // CNNFAST_HD_INLINE

namespace cnnfast {
namespace cuda {

struct FastDivmod {
  int divisor = 1;
  uint32_t multiplier = 0;
  uint32_t shift = 0;

  FastDivmod() = default;
  // Host side: d in [1, 2^31).
  explicit FastDivmod(int d) : divisor(d) {
    while ((1ull << shift) < static_cast<uint64_t>(d)) ++shift;  // ceil(log2(d))
    multiplier = static_cast<uint32_t>(((1ull << 32) * ((1ull << shift) - static_cast<uint64_t>(d))) /
                                           static_cast<uint64_t>(d) + 1);
  }

  // n / divisor for n in [0, 2^31).
  CNNFAST_HD_INLINE int div(int n) const {
    const uint32_t u = static_cast<uint32_t>(n);
#if defined(__CUDA_ARCH__)
    const uint32_t hi = __umulhi(u, multiplier);
#else
    const uint32_t hi = static_cast<uint32_t>((static_cast<uint64_t>(u) * multiplier) >> 32);
#endif
    return static_cast<int>((hi + u) >> shift);
  }
  // q = n / divisor, r = n % divisor.
  CNNFAST_HD_INLINE void divmod(int n, int& q, int& r) const {
    q = div(n);
    r = n - q * divisor;
  }
};

}  // namespace cuda
}  // namespace cnnfast
