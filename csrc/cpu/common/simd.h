// Data movers shared by the CPU kernels, framework-free: the transposes between rows and the
// sixteen-lane layout (the images-per-vector layout of conv2d, the pooling of its output, grad-weight's
// transposed gradient), the stride-2 column splits of the stride-phase layout, and a vector add.
// AVX-512 (simd_avx512.cpp) and AVX2 (simd_avx2.cpp) definitions.
#pragma once

#include <cstdint>

#include "cpu/common/capability.h"

namespace cnnfast::cpu {


// Sixteen rows to lanes and back (AVX-512, 16 x 16 register transposes): rows_to_lanes16 sets
// dst[i * ldd + l] = src[l * ld + i], lanes16_to_rows sets dst[l * ld + i] = src[i * 16 + l], for i < n
// and l < 16 (conv2d's images-per-vector layout, and grad-weight's transposed gradient).
// Split by stride phase (sw > 1, the columns numbered from col0): column i goes to
// dst + (j / sw) * ldd + (j % sw) * phase_ld with j = col0 + i.
void rows_to_lanes16_avx512(const float* src, int64_t ld, float* dst, int64_t ldd, int64_t n, int64_t sw = 1,
                            int64_t phase_ld = 0, int64_t col0 = 0);
// rows_to_lanes16 of src where !(keep <= 0), 0 elsewhere (keep laid out as src: a ReLU's output as its mask).
void rows_to_lanes16_masked_avx512(const float* src, const float* keep, int64_t ld, float* dst, int64_t ldd,
                                   int64_t n, int64_t sw = 1, int64_t phase_ld = 0, int64_t col0 = 0);
// Columns split by parity (AVX-512 permutes): even[i] = src[2 i] for 2 i < n, odd[i] = src[2 i + 1]
// for 2 i + 1 < n (a row of the stride-2 phase layout, conv2d/direct.cpp's padded_input).
void split_columns2_avx512(const float* src, int64_t n, float* even, float* odd);
// The inverse: dst[2 i] = even[i], dst[2 i + 1] = odd[i] for the n elements of dst.
void merge_columns2_avx512(const float* even, const float* odd, int64_t n, float* dst);
// dst[i] += src[i] for i < n.
void add_f32_avx512(const float* src, float* dst, int64_t n);
void add_f32_avx2(const float* src, float* dst, int64_t n);
void lanes16_to_rows_avx512(const float* src, float* dst, int64_t ld, int64_t n);
// lanes16_to_rows for int32 lanes widened to int64 rows (pooling indices): dst[l * ld + i] = src[i * 16 + l].
void lanes16_to_rows_i64_avx512(const int32_t* src, int64_t* dst, int64_t ld, int64_t n);
// rows_to_lanes16 for int64 rows narrowed to int32 lanes with signed saturation (an index past int32
// stays out of range): dst[i * 16 + l] = src[l * ld + i].
void rows_i64_to_lanes16_avx512(const int64_t* src, int64_t ld, int32_t* dst, int64_t n);

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
