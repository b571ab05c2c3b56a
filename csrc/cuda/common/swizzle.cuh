// XOR-swizzled shared-memory layouts. A tile is stored as rows of 16-byte chunks; Swizzle<B, M, S>
// maps a byte offset to its stored place by XORing bits [M, M+B) (the chunk within a 128-byte line)
// with bits [M+S, M+S+B) (which line), so that the 8 rows an ldmatrix or a column of 16-byte stores
// touch land on 8 different groups of 4 banks. With 16-byte chunks (M = 4) and S = 3:
//   rows of 64 bytes (32 halves): Swizzle<2, 4, 3>: chunk c of row r goes to chunk c ^ ((r / 2) % 4);
//   rows of 128 bytes (64 halves or 32 floats): Swizzle<3, 4, 3>: chunk c ^ (r % 8).
// The map is its own inverse and keeps every 16-byte chunk whole.
#pragma once

#include <cstdint>

#include "launch.cuh"

#if defined(__CUDACC__)
#define CNNFAST_HD_INLINE __host__ __device__ __forceinline__
#else
#define CNNFAST_HD_INLINE inline
#endif

namespace cnnfast {
namespace cuda {

template <int B, int M, int S>
struct Swizzle {
  static_assert(B >= 0 && M >= 0 && S >= B, "Swizzle<B, M, S>: the XORed bit ranges must not overlap");
  static constexpr uint32_t kMask = ((1u << B) - 1u) << (M + S);
  CNNFAST_HD_INLINE static uint32_t apply(uint32_t offset) { return offset ^ ((offset & kMask) >> S); }
};

// The swizzle for rows of RowBytes (a multiple of 16 up to 128, or a multiple of 128).
template <int RowBytes>
using RowSwizzle = Swizzle<(RowBytes >= 128 ? 3 : RowBytes == 64 ? 2 : RowBytes == 32 ? 1 : 0), 4, 3>;

}  // namespace cuda
}  // namespace cnnfast
