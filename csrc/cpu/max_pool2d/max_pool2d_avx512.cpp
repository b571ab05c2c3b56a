// max_pool2d_simd.h's AVX-512 entry points: max_pool2d_simd.inc over 16 floats / 8 doubles per zmm,
// with AVX-512's bit masks (masked loads, stores and compares cost no extra instruction). Only reached
// when capability.cpp found AVX-512 F/BW/VL/DQ on the CPU. Standard headers and windows.h come before
// the target pragma, so only the functions below are compiled for AVX-512.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include <immintrin.h>

#include "cpu/common/parallel.h"
#include "cpu/max_pool2d/max_pool2d_simd.h"
#include "cpu/max_pool2d/windows.h"

// GCC 12 flags its own _mm512_undefined_* idiom inside the masked-load intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")

namespace cnnfast::cpu {
namespace avx512_impl {
namespace {

struct F32 {
  using T = float;
  using V = __m512;
  using I = __m512i;
  using M = __mmask16;
  static constexpr int L = 16;
  static constexpr bool kPairs = true;
  static constexpr bool kIndexPairs = false;
  static constexpr int64_t kWriteOnceMinQ = L / 2 + 1;  // shorter rows: the scatter (benchmarks/NOTES.md)
  static V set1(T a) { return _mm512_set1_ps(a); }
  static V load(const T* p) { return _mm512_loadu_ps(p); }
  static V loadz(M k, const T* p) { return _mm512_maskz_loadu_ps(k, p); }
  static void store(T* p, M k, V v) { _mm512_mask_storeu_ps(p, k, v); }
  static void storeu(T* p, V v) { _mm512_storeu_ps(p, v); }
  // The even lanes of the 2L values a, b.
  static V even(V a, V b) {
    return _mm512_permutex2var_ps(a, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), b);
  }
  // a0 b0 a1 b1 ... : the first and second L of the 2L interleaved values.
  static V zip_lo(V a, V b) {
    return _mm512_permutex2var_ps(a, _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b);
  }
  static V zip_hi(V a, V b) {
    return _mm512_permutex2var_ps(a, _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31),
                                  b);
  }
  // Lanes of k where tap value a replaces the best b so far: a > b, or a is NaN (torch's rule).
  static M takes(M k, V a, V b) {
    return _mm512_mask_cmp_ps_mask(k, a, b, _CMP_GT_OQ) | _mm512_mask_cmp_ps_mask(k, a, a, _CMP_UNORD_Q);
  }
  static M takes(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ) | _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
  static V blend(M k, V a, V b) { return _mm512_mask_mov_ps(a, k, b); }
  static V zero_unless(M k, V a) { return _mm512_maskz_mov_ps(k, a); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static I iset1(int32_t a) { return _mm512_set1_epi32(a); }
  static I iota(int32_t step) {
    return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), iset1(step));
  }
  static I iadd(I a, I b) { return _mm512_add_epi32(a, b); }
  static I iblend(M k, I a, I b) { return _mm512_mask_mov_epi32(a, k, b); }
  static M ieq(M k, I a, I b) { return _mm512_mask_cmpeq_epi32_mask(k, a, b); }
  static M ieq(I a, I b) { return _mm512_cmpeq_epi32_mask(a, b); }
  static I iload(const int32_t* p) { return _mm512_loadu_si512(p); }
  static void istore(int32_t* p, I i) { _mm512_storeu_si512(p, i); }
  static void store_index(int64_t* p, M k, I i) {
    _mm512_mask_storeu_epi64(p, static_cast<__mmask8>(k), _mm512_cvtepi32_epi64(_mm512_castsi512_si256(i)));
    _mm512_mask_storeu_epi64(p + 8, static_cast<__mmask8>(k >> 8),
                             _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(i, 1)));
  }
  // L int64 indices narrowed with signed saturation (a value outside int32 cannot alias a real one).
  static I load_index(M k, const int64_t* p) {
    const __m256i lo = _mm512_cvtsepi64_epi32(_mm512_maskz_loadu_epi64(static_cast<__mmask8>(k), p));
    const __m256i hi = _mm512_cvtsepi64_epi32(_mm512_maskz_loadu_epi64(static_cast<__mmask8>(k >> 8), p + 8));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
  }
  static M mask(unsigned bits) { return static_cast<M>(bits); }
  static unsigned bits(M k) { return k; }
  static int count(M k) { return __builtin_popcount(static_cast<unsigned>(k)); }
  // Two output rows in one vector (lanes [0, L/2) and [L/2, L)).
  static void store_halves(T* lo, T* hi, unsigned half, V v) {
    _mm256_mask_storeu_ps(lo, static_cast<__mmask8>(half), _mm512_castps512_ps256(v));
    _mm256_mask_storeu_ps(hi, static_cast<__mmask8>(half), _mm512_extractf32x8_ps(v, 1));
  }
  static void store_index_halves(int64_t* lo, int64_t* hi, unsigned half, I i) {
    _mm512_mask_storeu_epi64(lo, static_cast<__mmask8>(half), _mm512_cvtepi32_epi64(_mm512_castsi512_si256(i)));
    _mm512_mask_storeu_epi64(hi, static_cast<__mmask8>(half), _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(i, 1)));
  }
  static I halves(int32_t lo, int32_t hi) { return _mm512_mask_set1_epi32(iset1(lo), 0xFF00, hi); }
};

struct F64 {
  using T = double;
  using V = __m512d;
  using I = __m256i;
  using M = __mmask8;
  static constexpr int L = 8;
  static constexpr bool kPairs = false;  // (not written for double)
  static constexpr bool kIndexPairs = false;
  static constexpr int64_t kWriteOnceMinQ = L / 2 + 1;
  static V set1(T a) { return _mm512_set1_pd(a); }
  static V load(const T* p) { return _mm512_loadu_pd(p); }
  static V loadz(M k, const T* p) { return _mm512_maskz_loadu_pd(k, p); }
  static void store(T* p, M k, V v) { _mm512_mask_storeu_pd(p, k, v); }
  static V even(V a, V b) { return _mm512_permutex2var_pd(a, _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), b); }
  static V zip_lo(V a, V b) { return _mm512_permutex2var_pd(a, _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), b); }
  static V zip_hi(V a, V b) { return _mm512_permutex2var_pd(a, _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15), b); }
  static M takes(M k, V a, V b) {
    return _mm512_mask_cmp_pd_mask(k, a, b, _CMP_GT_OQ) | _mm512_mask_cmp_pd_mask(k, a, a, _CMP_UNORD_Q);
  }
  static V blend(M k, V a, V b) { return _mm512_mask_mov_pd(a, k, b); }
  static V zero_unless(M k, V a) { return _mm512_maskz_mov_pd(k, a); }
  static I iset1(int32_t a) { return _mm256_set1_epi32(a); }
  static I iota(int32_t step) { return _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), iset1(step)); }
  static I iadd(I a, I b) { return _mm256_add_epi32(a, b); }
  static I iblend(M k, I a, I b) { return _mm256_mask_mov_epi32(a, k, b); }
  static M ieq(M k, I a, I b) { return _mm256_mask_cmpeq_epi32_mask(k, a, b); }
  static void store_index(int64_t* p, M k, I i) { _mm512_mask_storeu_epi64(p, k, _mm512_cvtepi32_epi64(i)); }
  static I load_index(M k, const int64_t* p) { return _mm512_cvtsepi64_epi32(_mm512_maskz_loadu_epi64(k, p)); }
  static M mask(unsigned bits) { return static_cast<M>(bits); }
  static unsigned bits(M k) { return k; }
  static int count(M k) { return __builtin_popcount(static_cast<unsigned>(k)); }
};

#include "cpu/max_pool2d/max_pool2d_simd.inc"

}  // namespace
}  // namespace avx512_impl

template <typename T>
bool max_pool2d_forward_avx512(const Pool2dProblem& p, const T* x, T* y, int64_t* indices) {
  return avx512_impl::forward<T>(p, x, y, indices);
}
template <typename T>
bool max_pool2d_write_once_fits_avx512(const Pool2dProblem& p) {
  return avx512_impl::write_once_fits<T>(p);
}
template <typename T>
bool max_pool2d_backward_plane_write_once_avx512(const Pool2dProblem& p, const T* dy, const int64_t* idx, T* dx,
                                                 const int32_t* row_window) {
  return avx512_impl::backward_plane_write_once<T>(p, dy, idx, dx, row_window);
}
bool max_pool2d_ipv_avx512(const Pool2dProblem& p, int64_t planes, const float* x, float* y, int32_t* indices) {
  return avx512_impl::ipv(p, planes, x, y, indices);
}
bool max_pool2d_backward_ipv_avx512(const Pool2dProblem& p, int64_t planes, const float* dy, const int32_t* indices,
                                    float* dx, int64_t dx_plane, int64_t dx_row, int64_t dx_first) {
  return avx512_impl::backward_ipv(p, planes, dy, indices, dx, dx_plane, dx_row, dx_first);
}

#define CNNFAST_INSTANTIATE(T)                                                                               \
  template bool max_pool2d_forward_avx512<T>(const Pool2dProblem&, const T*, T*, int64_t*);                 \
  template bool max_pool2d_write_once_fits_avx512<T>(const Pool2dProblem&);                                 \
  template bool max_pool2d_backward_plane_write_once_avx512<T>(const Pool2dProblem&, const T*, const int64_t*, \
                                                               T*, const int32_t*);
CNNFAST_INSTANTIATE(float)
CNNFAST_INSTANTIATE(double)
#undef CNNFAST_INSTANTIATE

}  // namespace cnnfast::cpu

#pragma GCC pop_options
