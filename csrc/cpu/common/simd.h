// Data movers shared by the CPU kernels, framework-free: the transposes between rows and the
// sixteen-lane layout (the images-per-vector layout of conv2d, the pooling of its output, grad-weight's
// transposed gradient), the stride-2 column splits of the stride-phase layout, and a vector add.
// AVX-512 (simd_avx512.cpp) and AVX2 (simd_avx2.cpp) definitions.
#pragma once

#include <cstdint>

#include "cpu/common/capability.h"

namespace cnnfast::cpu {


// Sixteen rows to lanes and back (16 x 16 register transposes on AVX-512, pairs of 8 x 8 on AVX2):
// rows_to_lanes16 sets dst[i * ldd + l] = src[l * ld + i], lanes16_to_rows sets
// dst[l * ld + i] = src[i * 16 + l], for i < n and l < 16 (conv2d's images-per-vector layout, and
// grad-weight's transposed gradient). Split by stride phase (sw > 1, the columns numbered from col0):
// column i goes to dst + (j / sw) * ldd + (j % sw) * phase_ld with j = col0 + i.
// The masked form copies src where !(keep <= 0) and writes 0 elsewhere (keep laid out as src: a ReLU's
// output as its mask). The i64 forms move pooling indices: int32 lanes widened to int64 rows, and int64
// rows narrowed to int32 lanes with signed saturation (an index past int32 stays out of range).
// split_columns2: even[i] = src[2 i] for 2 i < n, odd[i] = src[2 i + 1] for 2 i + 1 < n (a row of the
// stride-2 phase layout, conv2d/direct.cpp's padded_input); merge_columns2 is its inverse over the n
// elements of dst.
#define CNNFAST_SIMD_MOVERS(isa)                                                                              \
  void rows_to_lanes16_##isa(const float* src, int64_t ld, float* dst, int64_t ldd, int64_t n, int64_t sw = 1, \
                             int64_t phase_ld = 0, int64_t col0 = 0);                                          \
  void rows_to_lanes16_masked_##isa(const float* src, const float* keep, int64_t ld, float* dst, int64_t ldd,  \
                                    int64_t n, int64_t sw = 1, int64_t phase_ld = 0, int64_t col0 = 0);        \
  void lanes16_to_rows_##isa(const float* src, float* dst, int64_t ld, int64_t n);                             \
  void lanes16_to_rows_i64_##isa(const int32_t* src, int64_t* dst, int64_t ld, int64_t n);                     \
  void rows_i64_to_lanes16_##isa(const int64_t* src, int64_t ld, int32_t* dst, int64_t n);                     \
  void split_columns2_##isa(const float* src, int64_t n, float* even, float* odd);                             \
  void merge_columns2_##isa(const float* even, const float* odd, int64_t n, float* dst);                       \
  void add_f32_##isa(const float* src, float* dst, int64_t n);
CNNFAST_SIMD_MOVERS(avx512)
CNNFAST_SIMD_MOVERS(avx2)
#undef CNNFAST_SIMD_MOVERS

// The movers above for the capability in use; callers take them where has_simd_movers(cap) and use
// their own portable loops elsewhere.
inline bool has_simd_movers(Capability cap) { return cap == Capability::kAvx512 || cap == Capability::kAvx2; }
inline void rows_to_lanes16(Capability cap, const float* src, int64_t ld, float* dst, int64_t ldd, int64_t n,
                            int64_t sw = 1, int64_t phase_ld = 0, int64_t col0 = 0) {
  if (cap == Capability::kAvx512) return rows_to_lanes16_avx512(src, ld, dst, ldd, n, sw, phase_ld, col0);
  rows_to_lanes16_avx2(src, ld, dst, ldd, n, sw, phase_ld, col0);
}
inline void rows_to_lanes16_masked(Capability cap, const float* src, const float* keep, int64_t ld, float* dst,
                                   int64_t ldd, int64_t n, int64_t sw = 1, int64_t phase_ld = 0, int64_t col0 = 0) {
  if (cap == Capability::kAvx512) return rows_to_lanes16_masked_avx512(src, keep, ld, dst, ldd, n, sw, phase_ld, col0);
  rows_to_lanes16_masked_avx2(src, keep, ld, dst, ldd, n, sw, phase_ld, col0);
}
inline void lanes16_to_rows(Capability cap, const float* src, float* dst, int64_t ld, int64_t n) {
  if (cap == Capability::kAvx512) return lanes16_to_rows_avx512(src, dst, ld, n);
  lanes16_to_rows_avx2(src, dst, ld, n);
}
inline void lanes16_to_rows_i64(Capability cap, const int32_t* src, int64_t* dst, int64_t ld, int64_t n) {
  if (cap == Capability::kAvx512) return lanes16_to_rows_i64_avx512(src, dst, ld, n);
  lanes16_to_rows_i64_avx2(src, dst, ld, n);
}
inline void rows_i64_to_lanes16(Capability cap, const int64_t* src, int64_t ld, int32_t* dst, int64_t n) {
  if (cap == Capability::kAvx512) return rows_i64_to_lanes16_avx512(src, ld, dst, n);
  rows_i64_to_lanes16_avx2(src, ld, dst, n);
}
inline void split_columns2(Capability cap, const float* src, int64_t n, float* even, float* odd) {
  if (cap == Capability::kAvx512) return split_columns2_avx512(src, n, even, odd);
  split_columns2_avx2(src, n, even, odd);
}
inline void merge_columns2(Capability cap, const float* even, const float* odd, int64_t n, float* dst) {
  if (cap == Capability::kAvx512) return merge_columns2_avx512(even, odd, n, dst);
  merge_columns2_avx2(even, odd, n, dst);
}

// dst[i] += src[i] over n elements: the SIMD path for float, else portable.
inline void add_span(Capability cap, const float* src, float* dst, int64_t n) {
  if (cap == Capability::kAvx512) return add_f32_avx512(src, dst, n);
  if (cap == Capability::kAvx2) return add_f32_avx2(src, dst, n);
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}
inline void add_span(Capability, const double* src, double* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

}  // namespace cnnfast::cpu
