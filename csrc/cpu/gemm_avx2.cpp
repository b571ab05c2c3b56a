// gemm.h's SIMD GEMM for AVX2 + FMA (8 floats per vector, 6 x 2 vectors of C in registers). Only
// reached when capability.cpp found AVX2 and FMA on the CPU. Standard headers come before the
// target pragma so that none of their inline functions is compiled for AVX2 here.
#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include <immintrin.h>

#include "cpu/gemm.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace cnnfast::cpu {
namespace avx2_impl {
namespace {

struct Isa {
  using V = __m256;
  using Mask = __m256i;
  static constexpr int L = 8, kMr = 6, kNv = 2;
  static constexpr int kDotMr = 3, kDotNr = 4;  // dot-product form: 3 x 4 accumulators
  static inline V set1(float x) { return _mm256_set1_ps(x); }
  static inline V load(const float* p) { return _mm256_loadu_ps(p); }
  static inline V load_mask(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
  static inline void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static inline void store_mask(float* p, V v, Mask m) { _mm256_maskstore_ps(p, m, v); }
  static inline V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  // max(0, v) with 0 first: v when v is NaN or -0.0, as torch's clamp_min.
  static inline V relu(V v) { return _mm256_max_ps(_mm256_setzero_ps(), v); }
  static inline Mask make_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
};

#include "cpu/gemm_simd.inc"

}  // namespace
}  // namespace avx2_impl

void sgemm_avx2(const GemmArgs<float>& g) { avx2_impl::sgemm_impl(g); }
void sdot_avx2(const DotArgs& d) { avx2_impl::sdot_impl(d); }

// y[i] = max(0, x[i]) (NaN and -0.0 kept, as torch's clamp_min), 8 floats at a time, scalar tail.
void relu_f32_avx2(const float* x, float* y, int64_t n) {
  const __m256 zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_max_ps(zero, _mm256_loadu_ps(x + i)));
  for (; i < n; ++i) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

// d[i] = g[i] where !(y[i] <= 0) (positive or NaN: torch's threshold_backward), else 0.
void relu_mask_f32_avx2(const float* g, const float* y, float* d, int64_t n) {
  const __m256 zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 pos = _mm256_cmp_ps(_mm256_loadu_ps(y + i), zero, _CMP_NLE_UQ);
    _mm256_storeu_ps(d + i, _mm256_and_ps(pos, _mm256_loadu_ps(g + i)));
  }
  for (; i < n; ++i) {
    const float gi = g[i];
    d[i] = !(y[i] <= 0.0f) ? gi : 0.0f;
  }
}

void add_f32_avx2(const float* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(dst + i), _mm256_loadu_ps(src + i)));
  for (; i < n; ++i) dst[i] += src[i];
}

}  // namespace cnnfast::cpu

#pragma GCC pop_options
