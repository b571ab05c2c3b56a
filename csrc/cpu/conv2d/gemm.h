// One small GEMM shape serves every conv2d kernel on the CPU (framework-free):
//   C[i, j] = epilogue(init[i] + sum_kk A[i, kk] * B[kk, j] + R[i, j])   (store mode; R optional), or
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

#include "cpu/common/capability.h"

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
  // Store mode: when set, R[i, j] = res[i * ldr + j] is added to the finished sum, before the ReLU
  // (conv2d_add_relu's residual). Added once, after the whole reduction, so the sum is rounded as a
  // convolution's output before the addition, as torch's separate add sees it.
  const T* res = nullptr;
  int64_t ldr = 0;
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
        const T* ri = g.res && !g.accumulate ? g.res + (i0 + i) * g.ldr + j0 : nullptr;
        for (int64_t j = 0; j < n; ++j) {
          const T v = ri ? acc[i][j] + ri[j] : acc[i][j];
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

}  // namespace cnnfast::cpu
