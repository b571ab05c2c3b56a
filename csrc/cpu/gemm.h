// One small GEMM shape serves every conv2d kernel on the CPU (framework-free):
//   C[i, j] = epilogue(init[i] + sum_kk A[i, kk] * B[kk, j])     (store mode), or
//   C[i, j] += sum_kk A[i, kk] * B[kk, j]                       (accumulate mode)
// for i < M, j < N, kk < K, with A read through two strides (so W and W^T are both views, no
// packing), B and C row-major with leading dimensions. Every C element is a sum in the fixed order
// kk = 0, 1, ..., K-1 (with fused multiply-adds on the SIMD paths), whatever the blocking, so a result
// never depends on how the caller splits the work.
//   forward       A = W [Kg, CgRS] (a_rs = CgRS, a_ks = 1), B = im2col tile, C = y, init = bias
//   grad-input    A = W^T (a_rs = 1, a_ks = CgRS), B = dy tile [Kg, 64], C = gradient of the col tile
//   grad-weight   A = dy [Kg, pixels] (a_rs = P*Q), B = im2row tile [pixels, CgRS], C = dw (accumulate)
#pragma once

#include <algorithm>
#include <cstdint>

#include "cpu/capability.h"

namespace cnnfast::cpu {

template <typename T>
struct GemmArgs {
  int64_t M = 0, N = 0, K = 0;
  const T* a = nullptr;
  int64_t a_rs = 0, a_ks = 0;
  // When set, row i of A starts at a + a_off[i] (e.g. the shifted views of a padded input); otherwise
  // at a + i * a_rs.
  const int64_t* a_off = nullptr;
  const T* b = nullptr;
  int64_t ldb = 0;
  // When set, row kk of B starts at b + b_off[kk] (rows at any offsets, e.g. the shifted views of a
  // padded input that a stride-1 convolution reads directly); otherwise at b + kk * ldb.
  const int64_t* b_off = nullptr;
  T* c = nullptr;
  int64_t ldc = 0;
  const T* init = nullptr;  // store mode: per-row start value (bias), or zero when null
  bool accumulate = false;
  bool relu = false;  // store mode: clamp_min(., 0) as torch (NaN and -0.0 kept)
};

// The dot-product form, for grad-weight with few channels (dw = dy . X^T, both operands running along
// the pixels, so dw comes out in its own layout and every vector lane is used however few channels):
//   acc[(i * ldacc + j) * L + l] += sum over s < batch, then kk < K with kk = l (mod L), of
//                                   A_s[i, kk] * B_s[j, kk]
// with L = dot_lanes(cap) lanes per element, row i of A_s at a + s * a_bs + i * lda and row j of B_s at
// b + s * b_bs + b_off[j] (shifted views of a padded input, s a sample); K a multiple of L. Each lane
// sums in that order whatever the caller's blocking; the caller adds an element's L lanes in a fixed
// order at the end.
struct DotArgs {
  int64_t M = 0, N = 0, K = 0, batch = 1;
  const float* a = nullptr;
  int64_t lda = 0, a_bs = 0;
  const float* b = nullptr;
  const int64_t* b_off = nullptr;
  int64_t b_bs = 0;
  float* acc = nullptr;
  int64_t ldacc = 0;
};

// The SIMD paths (float only); defined in gemm_avx512.cpp and gemm_avx2.cpp, compiled for their ISA.
void sgemm_avx512(const GemmArgs<float>& g);
void sgemm_avx2(const GemmArgs<float>& g);
void sdot_avx512(const DotArgs& d);
void sdot_avx2(const DotArgs& d);

// Lanes per accumulator of the dot-product form on `cap`; 0 where it has no SIMD path.
inline int64_t dot_lanes(Capability cap) {
  return cap == Capability::kAvx512 ? 16 : cap == Capability::kAvx2 ? 8 : 0;
}
inline void dot(Capability cap, const DotArgs& d) {
  if (cap == Capability::kAvx512) sdot_avx512(d);
  else sdot_avx2(d);
}
// Elementwise ReLU kernels of the same ISA files: y = clamp_min(x, 0) and d = (!(y <= 0) ? g : 0).
void relu_f32_avx512(const float* x, float* y, int64_t n);
void relu_f32_avx2(const float* x, float* y, int64_t n);
void relu_mask_f32_avx512(const float* g, const float* y, float* d, int64_t n);
void relu_mask_f32_avx2(const float* g, const float* y, float* d, int64_t n);

// Sixteen rows to lanes and back (AVX-512, 16 x 16 register transposes): rows_to_lanes16 sets
// dst[i * ldd + l] = src[l * ld + i], lanes16_to_rows sets dst[l * ld + i] = src[i * 16 + l], for i < n
// and l < 16 (conv2d_kernel.cpp's batch-of-16 layout, and grad-weight's transposed gradient).
// Split by stride phase (sw > 1, the columns numbered from col0): column i goes to
// dst + (j / sw) * ldd + (j % sw) * phase_ld with j = col0 + i.
void rows_to_lanes16_avx512(const float* src, int64_t ld, float* dst, int64_t ldd, int64_t n, int64_t sw = 1,
                            int64_t phase_ld = 0, int64_t col0 = 0);
// rows_to_lanes16 of src where !(keep <= 0), 0 elsewhere (keep laid out as src: a ReLU's output as its mask).
void rows_to_lanes16_masked_avx512(const float* src, const float* keep, int64_t ld, float* dst, int64_t ldd,
                                   int64_t n, int64_t sw = 1, int64_t phase_ld = 0, int64_t col0 = 0);
// Columns split by parity (AVX-512 permutes): even[i] = src[2 i] for 2 i < n, odd[i] = src[2 i + 1]
// for 2 i + 1 < n (a row of the stride-2 phase layout, conv2d_kernel.cpp's padded_input).
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

// The portable path: plain loops in blocks of 4 rows x 64 columns (the compiler vectorizes the
// innermost loop for the baseline ISA).
template <typename T>
void gemm_portable(const GemmArgs<T>& g) {
  constexpr int64_t kMr = 4, kNb = 64;
  for (int64_t i0 = 0; i0 < g.M; i0 += kMr) {
    const int64_t rows = std::min(kMr, g.M - i0);
    for (int64_t j0 = 0; j0 < g.N; j0 += kNb) {
      const int64_t n = std::min(kNb, g.N - j0);
      alignas(64) T acc[kMr][kNb];
      for (int64_t i = 0; i < rows; ++i) {
        T* ci = g.c + (i0 + i) * g.ldc + j0;
        for (int64_t j = 0; j < n; ++j) acc[i][j] = g.accumulate ? ci[j] : (g.init ? g.init[i0 + i] : T(0));
      }
      for (int64_t kk = 0; kk < g.K; ++kk) {
        const T* brow = g.b + (g.b_off ? g.b_off[kk] : kk * g.ldb) + j0;
        for (int64_t i = 0; i < rows; ++i) {
          const T av = g.a[(g.a_off ? g.a_off[i0 + i] : (i0 + i) * g.a_rs) + kk * g.a_ks];
          for (int64_t j = 0; j < n; ++j) acc[i][j] += av * brow[j];
        }
      }
      for (int64_t i = 0; i < rows; ++i) {
        T* ci = g.c + (i0 + i) * g.ldc + j0;
        for (int64_t j = 0; j < n; ++j) {
          const T v = acc[i][j];
          ci[j] = (g.relu && !g.accumulate && v < T(0)) ? T(0) : v;
        }
      }
    }
  }
}

// The path for capability `cap` (double always takes the portable one).
inline void gemm(Capability cap, const GemmArgs<float>& g) {
  if (cap == Capability::kAvx512) sgemm_avx512(g);
  else if (cap == Capability::kAvx2) sgemm_avx2(g);
  else gemm_portable(g);
}
inline void gemm(Capability, const GemmArgs<double>& g) { gemm_portable(g); }

// dst[i] += src[i] over n elements: the SIMD path for float, else portable.
inline void add_span(Capability cap, const float* src, float* dst, int64_t n) {
  if (cap == Capability::kAvx512) return add_f32_avx512(src, dst, n);
  if (cap == Capability::kAvx2) return add_f32_avx2(src, dst, n);
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}
inline void add_span(Capability, const double* src, double* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

// ReLU forward over n elements: the SIMD path for float, else portable (clamp_min semantics).
inline void relu_span(Capability cap, const float* x, float* y, int64_t n) {
  if (cap == Capability::kAvx512) return relu_f32_avx512(x, y, n);
  if (cap == Capability::kAvx2) return relu_f32_avx2(x, y, n);
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}
inline void relu_span(Capability, const double* x, double* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.0 ? 0.0 : x[i];
}
// ReLU's gradient from its output: d = g where !(y <= 0) (positive or NaN, as torch's threshold_backward),
// else 0 (both loads unconditional: branch-free).
inline void relu_mask_span(Capability cap, const float* g, const float* y, float* d, int64_t n) {
  if (cap == Capability::kAvx512) return relu_mask_f32_avx512(g, y, d, n);
  if (cap == Capability::kAvx2) return relu_mask_f32_avx2(g, y, d, n);
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    d[i] = !(y[i] <= 0.0f) ? gi : 0.0f;
  }
}
inline void relu_mask_span(Capability, const double* g, const double* y, double* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double gi = g[i];
    d[i] = !(y[i] <= 0.0) ? gi : 0.0;
  }
}

}  // namespace cnnfast::cpu
