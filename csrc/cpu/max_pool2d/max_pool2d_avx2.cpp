// max_pool2d_simd.h's AVX2 entry points: max_pool2d_simd.inc over 8 floats / 4 doubles per ymm. AVX2
// has no mask registers: a mask is a blend vector (all ones in a lane that is set), lane bits become
// one by a compare against the lanes' own bits, and masked loads and stores are vmaskmov. Double
// indices are int64 lanes (the same width as the double lanes, and no narrowing of the int64 indices
// in the backward). Only reached when capability.cpp found AVX2 and FMA on the CPU. Standard headers
// and windows.h come before the target pragma, so only the functions below are compiled for AVX2.
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

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace cnnfast::cpu {
namespace avx2_impl {
namespace {

// The even 32-bit lanes of the 16 in a, b, in order.
inline __m256i even32(__m256i a, __m256i b) {
  const __m256 s = _mm256_shuffle_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), _MM_SHUFFLE(2, 0, 2, 0));
  return _mm256_permute4x64_epi64(_mm256_castps_si256(s), _MM_SHUFFLE(3, 1, 2, 0));
}
// The 4 32-bit lanes of m widened to 4 64-bit lanes (a mask stays a mask: sign extension).
inline __m256i widen_lo(__m256i m) { return _mm256_cvtepi32_epi64(_mm256_castsi256_si128(m)); }
inline __m256i widen_hi(__m256i m) { return _mm256_cvtepi32_epi64(_mm256_extracti128_si256(m, 1)); }
// A 4-lane 64-bit mask from the low 4 bits of b.
inline __m256i mask64(unsigned b) {
  const __m256i bit = _mm256_setr_epi64x(1, 2, 4, 8);
  return _mm256_cmpeq_epi64(_mm256_and_si256(_mm256_set1_epi64x(b), bit), bit);
}

struct F32 {
  using T = float;
  using V = __m256;
  using I = __m256i;
  using M = __m256;
  static constexpr int L = 8;
  static constexpr bool kPairs = true;
  static V set1(T a) { return _mm256_set1_ps(a); }
  static V load(const T* p) { return _mm256_loadu_ps(p); }
  static V loadz(M k, const T* p) { return _mm256_maskload_ps(p, _mm256_castps_si256(k)); }
  static void store(T* p, M k, V v) { _mm256_maskstore_ps(p, _mm256_castps_si256(k), v); }
  static void storeu(T* p, V v) { _mm256_storeu_ps(p, v); }
  // The even lanes of the 2L values a, b.
  static V even(V a, V b) {
    return _mm256_castsi256_ps(even32(_mm256_castps_si256(a), _mm256_castps_si256(b)));
  }
  // Lanes (of k) where tap value a replaces the best b so far: a > b, or a is NaN (torch's rule).
  static M takes(V a, V b) { return _mm256_or_ps(_mm256_cmp_ps(a, b, _CMP_GT_OQ), _mm256_cmp_ps(a, a, _CMP_UNORD_Q)); }
  static M takes(M k, V a, V b) { return _mm256_and_ps(k, takes(a, b)); }
  static V blend(M k, V a, V b) { return _mm256_blendv_ps(a, b, k); }
  static V zero_unless(M k, V a) { return _mm256_and_ps(k, a); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static I iset1(int32_t a) { return _mm256_set1_epi32(a); }
  static I iota(int32_t step) { return _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), iset1(step)); }
  static I iadd(I a, I b) { return _mm256_add_epi32(a, b); }
  static I iblend(M k, I a, I b) {
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), k));
  }
  static M ieq(I a, I b) { return _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, b)); }
  static M ieq(M k, I a, I b) { return _mm256_and_ps(k, ieq(a, b)); }
  static I iload(const int32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static void istore(int32_t* p, I i) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), i); }
  static void store_index(int64_t* p, M k, I i) {
    const __m256i m = _mm256_castps_si256(k);
    long long* q = reinterpret_cast<long long*>(p);
    _mm256_maskstore_epi64(q, widen_lo(m), widen_lo(i));
    _mm256_maskstore_epi64(q + 4, widen_hi(m), widen_hi(i));
  }
  static M mask(unsigned b) {
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(static_cast<int>(b)), bit), bit));
  }
  static unsigned bits(M k) { return static_cast<unsigned>(_mm256_movemask_ps(k)); }
  static int count(M k) { return __builtin_popcount(bits(k)); }
  // Two output rows in one vector (lanes [0, L/2) and [L/2, L)); half: the lanes of a row to store.
  static void store_halves(T* lo, T* hi, unsigned half, V v) {
    const __m128i m = _mm256_castsi256_si128(_mm256_castps_si256(mask(half)));
    _mm_maskstore_ps(lo, m, _mm256_castps256_ps128(v));
    _mm_maskstore_ps(hi, m, _mm256_extractf128_ps(v, 1));
  }
  static void store_index_halves(int64_t* lo, int64_t* hi, unsigned half, I i) {
    const __m256i m = mask64(half);
    _mm256_maskstore_epi64(reinterpret_cast<long long*>(lo), m, widen_lo(i));
    _mm256_maskstore_epi64(reinterpret_cast<long long*>(hi), m, widen_hi(i));
  }
  static I halves(int32_t lo, int32_t hi) {
    return _mm256_inserti128_si256(_mm256_set1_epi32(lo), _mm_set1_epi32(hi), 1);
  }
  // The write-once backward in index lanes: L/2 outputs, their int64 indices in one vector.
  static constexpr bool kIndexPairs = true;
  // Measured against the zero-and-scatter (benchmarks/NOTES.md): 0.4-0.9x on rows of 5-10 outputs
  // (the per-row work outweighs the scatter's few stores), 0.8-1.2x on 12-15 (LeNet's 14: slower on 2
  // threads), 1.03-1.38x from 16 on.
  static constexpr int64_t kWriteOnceMinQ = 16;
  static M and_mask(M a, M b) { return _mm256_and_ps(a, b); }
  static __m256i pair_cols(int64_t base) { return _mm256_add_epi64(_mm256_set1_epi64x(base), _mm256_setr_epi64x(0, 2, 4, 6)); }
  static __m256i load_pair_index(const int64_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static __m256i load_pair_index(unsigned k, const int64_t* p) {
    return _mm256_maskload_epi64(reinterpret_cast<const long long*>(p), mask64(k));
  }
  // Lane 2j where index j is column cols_j (the even one), lane 2j + 1 where it is cols_j + 1.
  static M pair_hits(__m256i i, __m256i cols) {
    const __m256i d = _mm256_sub_epi64(i, cols);
    const __m256i at_even = _mm256_cmpeq_epi64(d, _mm256_setzero_si256());
    const __m256i at_odd = _mm256_cmpeq_epi64(d, _mm256_set1_epi64x(1));
    return _mm256_castsi256_ps(_mm256_blend_epi32(at_even, at_odd, 0xAA));
  }
  // g0 g0 g1 g1 ... from the L/2 values at p (k: the ones to read).
  static V dup_pairs(const T* p) {
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(p)), _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
  }
  static V dup_pairs(unsigned k, const T* p) {
    const __m128i m = _mm256_castsi256_si128(_mm256_castps_si256(mask(k)));
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_maskload_ps(p, m)), _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
  }
};

struct F64 {
  using T = double;
  using V = __m256d;
  using I = __m256i;  // 4 int64
  using M = __m256d;
  static constexpr int L = 4;
  static constexpr bool kPairs = false;  // (not written for double, as on AVX-512)
  static constexpr bool kIndexPairs = false;
  // Never: measured 0.35-0.9x the zero-and-scatter on rows of 3-64 outputs (two output columns take
  // a whole ymm of doubles), within noise of it at best (benchmarks/NOTES.md).
  static constexpr int64_t kWriteOnceMinQ = std::numeric_limits<int64_t>::max();
  static V set1(T a) { return _mm256_set1_pd(a); }
  static V load(const T* p) { return _mm256_loadu_pd(p); }
  static V loadz(M k, const T* p) { return _mm256_maskload_pd(p, _mm256_castpd_si256(k)); }
  static void store(T* p, M k, V v) { _mm256_maskstore_pd(p, _mm256_castpd_si256(k), v); }
  static V even(V a, V b) { return _mm256_permute4x64_pd(_mm256_unpacklo_pd(a, b), _MM_SHUFFLE(3, 1, 2, 0)); }
  static V zip_lo(V a, V b) { return _mm256_permute2f128_pd(_mm256_unpacklo_pd(a, b), _mm256_unpackhi_pd(a, b), 0x20); }
  static V zip_hi(V a, V b) { return _mm256_permute2f128_pd(_mm256_unpacklo_pd(a, b), _mm256_unpackhi_pd(a, b), 0x31); }
  static M takes(M k, V a, V b) {
    return _mm256_and_pd(k, _mm256_or_pd(_mm256_cmp_pd(a, b, _CMP_GT_OQ), _mm256_cmp_pd(a, a, _CMP_UNORD_Q)));
  }
  static V blend(M k, V a, V b) { return _mm256_blendv_pd(a, b, k); }
  static V zero_unless(M k, V a) { return _mm256_and_pd(k, a); }
  static I iset1(int32_t a) { return _mm256_set1_epi64x(a); }
  static I iota(int32_t step) { return _mm256_setr_epi64x(0, step, 2 * int64_t(step), 3 * int64_t(step)); }
  static I iadd(I a, I b) { return _mm256_add_epi64(a, b); }
  static I iblend(M k, I a, I b) {
    return _mm256_castpd_si256(_mm256_blendv_pd(_mm256_castsi256_pd(a), _mm256_castsi256_pd(b), k));
  }
  static M ieq(M k, I a, I b) { return _mm256_and_pd(k, _mm256_castsi256_pd(_mm256_cmpeq_epi64(a, b))); }
  static void store_index(int64_t* p, M k, I i) {
    _mm256_maskstore_epi64(reinterpret_cast<long long*>(p), _mm256_castpd_si256(k), i);
  }
  static I load_index(M k, const int64_t* p) {
    return _mm256_maskload_epi64(reinterpret_cast<const long long*>(p), _mm256_castpd_si256(k));
  }
  static M mask(unsigned b) { return _mm256_castsi256_pd(mask64(b)); }
  static unsigned bits(M k) { return static_cast<unsigned>(_mm256_movemask_pd(k)); }
  static int count(M k) { return __builtin_popcount(bits(k)); }
};

#include "cpu/max_pool2d/max_pool2d_simd.inc"

}  // namespace
}  // namespace avx2_impl

template <typename T>
bool max_pool2d_forward_avx2(const Pool2dProblem& p, const T* x, T* y, int64_t* indices) {
  return avx2_impl::forward<T>(p, x, y, indices);
}
template <typename T>
bool max_pool2d_write_once_fits_avx2(const Pool2dProblem& p) {
  return avx2_impl::write_once_fits<T>(p);
}
template <typename T>
bool max_pool2d_backward_plane_write_once_avx2(const Pool2dProblem& p, const T* dy, const int64_t* idx, T* dx,
                                               const int32_t* row_window) {
  return avx2_impl::backward_plane_write_once<T>(p, dy, idx, dx, row_window);
}
bool max_pool2d_ipv_avx2(const Pool2dProblem& p, int64_t planes, const float* x, float* y, int32_t* indices) {
  return avx2_impl::ipv(p, planes, x, y, indices);
}
bool max_pool2d_backward_ipv_avx2(const Pool2dProblem& p, int64_t planes, const float* dy, const int32_t* indices,
                                  float* dx, int64_t dx_plane, int64_t dx_row, int64_t dx_first) {
  return avx2_impl::backward_ipv(p, planes, dy, indices, dx, dx_plane, dx_row, dx_first);
}

#define CNNFAST_INSTANTIATE(T)                                                                             \
  template bool max_pool2d_forward_avx2<T>(const Pool2dProblem&, const T*, T*, int64_t*);                 \
  template bool max_pool2d_write_once_fits_avx2<T>(const Pool2dProblem&);                                 \
  template bool max_pool2d_backward_plane_write_once_avx2<T>(const Pool2dProblem&, const T*, const int64_t*, \
                                                             T*, const int32_t*);
CNNFAST_INSTANTIATE(float)
CNNFAST_INSTANTIATE(double)
#undef CNNFAST_INSTANTIATE

}  // namespace cnnfast::cpu

#pragma GCC pop_options
