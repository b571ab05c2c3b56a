// gemm.h's SIMD GEMM for AVX-512 (16 floats per vector, 6 x 4 vectors of C in registers). Only
// reached when capability.cpp found AVX-512 F/BW/VL/DQ on the CPU. Standard headers come before
// the target pragma so that none of their inline functions is compiled for AVX-512 here.
#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include <immintrin.h>

#include "cpu/conv2d/gemm.h"

// GCC 12 flags its own _mm512_undefined_ps idiom inside the masked-load intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")


namespace cnnfast::cpu {
namespace avx512_impl {
namespace {

struct Isa {
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int L = 16, kMr = 6, kNv = 4;
  static constexpr int kDotMr = 6, kDotNr = 4;  // dot-product form: 6 x 4 accumulators
  static inline V set1(float x) { return _mm512_set1_ps(x); }
  static inline V load(const float* p) { return _mm512_loadu_ps(p); }
  static inline V load_mask(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static inline void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static inline void store_mask(float* p, V v, Mask m) { _mm512_mask_storeu_ps(p, m, v); }
  static inline V add(V a, V b) { return _mm512_add_ps(a, b); }
  static inline V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  // max(0, v) with 0 first: v when v is NaN or -0.0, as torch's clamp_min.
  static inline V relu(V v) { return _mm512_max_ps(_mm512_setzero_ps(), v); }
  static inline Mask make_mask(int n) { return static_cast<Mask>(n >= 16 ? 0xFFFF : (1u << n) - 1u); }
};

#include "cpu/conv2d/gemm_simd.inc"

}  // namespace
}  // namespace avx512_impl

void sgemm_avx512(const GemmArgs<float>& g) { avx512_impl::sgemm_impl(g); }
void sdot_avx512(const DotArgs& d) { avx512_impl::sdot_impl(d); }

}  // namespace cnnfast::cpu
