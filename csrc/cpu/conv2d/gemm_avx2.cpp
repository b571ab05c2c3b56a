// gemm.h's SIMD GEMM for AVX2 + FMA (8 floats per vector, 6 x 2 vectors of C in registers). Only
// reached when capability.cpp found AVX2 and FMA on the CPU. Standard headers come before the
// target pragma so that none of their inline functions is compiled for AVX2 here.
#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include <immintrin.h>

#include "cpu/conv2d/gemm.h"

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
  static inline V add(V a, V b) { return _mm256_add_ps(a, b); }
  static inline V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  // max(0, v) with 0 first: v when v is NaN or -0.0, as torch's clamp_min.
  static inline V relu(V v) { return _mm256_max_ps(_mm256_setzero_ps(), v); }
  static inline Mask make_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
};

#include "cpu/conv2d/gemm_simd.inc"

}  // namespace
}  // namespace avx2_impl

void sgemm_avx2(const GemmArgs<float>& g) { avx2_impl::sgemm_impl(g); }
void sdot_avx2(const DotArgs& d) { avx2_impl::sdot_impl(d); }

}  // namespace cnnfast::cpu
