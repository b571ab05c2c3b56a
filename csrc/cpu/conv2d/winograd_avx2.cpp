// winograd.h's transforms for AVX2 + FMA: the 16 lanes of a group (16 tiles or 16 filters) as two
// ymm, lanes 0..7 and 8..15, each half through the same instruction as the other (so every lane sees
// the arithmetic of the AVX-512 and portable builds, in the same order). Only reached when
// capability.cpp found AVX2 and FMA on the CPU. Standard headers come before the target pragma so
// that none of their inline functions is compiled for AVX2 here.
#include <algorithm>
#include <cstdint>
#include <utility>

#include <immintrin.h>

#include "cpu/conv2d/winograd.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#include "cpu/common/transpose_avx2.h"

namespace cnnfast::cpu {
namespace wino_avx2_impl {
namespace {

// The load/store mask of 8 lanes from 8 bits (AVX2 masks are the lanes' sign bits).
inline __m256i mask8(uint32_t bits) {
  const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(static_cast<int>(bits)), sel), sel);
}

using avx2::transpose8;

// 8 filters x 9 taps (72 contiguous floats, in 9 ymm z) to 9 tap vectors, tap R: lane l = float
// 9 l + R, which is in z[(9 l + R) / 8] at position (l + R) % 8. Those 8 positions are distinct, so
// blends gather each lane's element at its own position (one source per lane) and one permute
// (a rotation by R) moves them into place.
template <int R, int... L>
inline __m256 tap8(const __m256* z, std::integer_sequence<int, L...>) {
  __m256 b = z[R / 8];
  ((b = _mm256_blend_ps(b, z[(9 * L + R) / 8], 1 << ((L + R) % 8))), ...);
  return _mm256_permutevar8x32_ps(b, _mm256_setr_epi32(R % 8, (1 + R) % 8, (2 + R) % 8, (3 + R) % 8, (4 + R) % 8,
                                                       (5 + R) % 8, (6 + R) % 8, (7 + R) % 8));
}
template <int... R>
inline void taps8(const __m256* z, __m256* g, std::integer_sequence<int, R...>) {
  ((g[R] = tap8<R>(z, std::integer_sequence<int, 1, 2, 3, 4, 5, 6, 7>{})), ...);
}

// The inverse: output ymm M holds floats e = 8 M + j (j < 8), tap (8 M + j) % 9 of filter
// (8 M + j) / 9. The 8 taps are distinct and every one moves its lanes by the same index (the
// filter), so one permute of each tap vector by that index and blends pick position j from its tap.
template <int M, int... J>
inline __m256 untap8(const __m256* g, std::integer_sequence<int, J...>) {
  const __m256i idx = _mm256_setr_epi32((8 * M) / 9, (8 * M + 1) / 9, (8 * M + 2) / 9, (8 * M + 3) / 9,
                                        (8 * M + 4) / 9, (8 * M + 5) / 9, (8 * M + 6) / 9, (8 * M + 7) / 9);
  __m256 b = _mm256_permutevar8x32_ps(g[(8 * M) % 9], idx);
  ((b = _mm256_blend_ps(b, _mm256_permutevar8x32_ps(g[(8 * M + J) % 9], idx), 1 << J)), ...);
  return b;
}
template <int... M>
inline void untaps8(const __m256* g, __m256* out, std::integer_sequence<int, M...>) {
  ((out[M] = untap8<M>(g, std::integer_sequence<int, 1, 2, 3, 4, 5, 6, 7>{})), ...);
}

struct Isa {
  struct V {
    __m256 lo, hi;  // lanes 0..7, 8..15
  };
  static inline V zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
  static inline V set1(float x) { return {_mm256_set1_ps(x), _mm256_set1_ps(x)}; }
  static inline V load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
  // (maskload reads no masked-off lane, so a window past the end of the input never faults.)
  static inline __m256 load_mask8(__m256 prev, const float* p, uint32_t bits) {
    if (bits == 0) return prev;
    if (bits == 0xFF) return _mm256_loadu_ps(p);
    const __m256i m = mask8(bits);
    return _mm256_blendv_ps(prev, _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static inline V load_mask(V prev, const float* p, uint32_t bits) {
    return {load_mask8(prev.lo, p, bits & 0xFF), load_mask8(prev.hi, p + 8, (bits >> 8) & 0xFF)};
  }
  static inline void store(float* p, V v) {
    _mm256_storeu_ps(p, v.lo);
    _mm256_storeu_ps(p + 8, v.hi);
  }
  static inline void store_mask8(float* p, __m256 v, uint32_t bits) {
    if (bits == 0xFF) {
      _mm256_storeu_ps(p, v);
    } else if (bits != 0) {
      _mm256_maskstore_ps(p, mask8(bits), v);
    }
  }
  static inline void store_mask(float* p, V v, uint32_t bits) {
    store_mask8(p, v.lo, bits & 0xFF);
    store_mask8(p + 8, v.hi, (bits >> 8) & 0xFF);
  }
  static inline V add(V a, V b) { return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
  static inline V sub(V a, V b) { return {_mm256_sub_ps(a.lo, b.lo), _mm256_sub_ps(a.hi, b.hi)}; }
  static inline V mul(V a, V b) { return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
  // max(0, v) with 0 first: v when v is NaN or -0.0, as torch's clamp_min.
  static inline V relu(V v) {
    return {_mm256_max_ps(_mm256_setzero_ps(), v.lo), _mm256_max_ps(_mm256_setzero_ps(), v.hi)};
  }
  // a0 b0 ... a7 b7 from 8-lane halves a, b: unpack works within 128-bit lanes (a0 b0 a1 b1 | a4 b4 a5
  // b5 and a2 b2 a3 b3 | a6 b6 a7 b7), so the two results swap their middle 128-bit halves.
  static inline V interleave8(__m256 a, __m256 b) {
    const __m256 l = _mm256_unpacklo_ps(a, b), h = _mm256_unpackhi_ps(a, b);
    return {_mm256_permute2f128_ps(l, h, 0x20), _mm256_permute2f128_ps(l, h, 0x31)};
  }
  static inline V interleave_lo(V a, V b) { return interleave8(a.lo, b.lo); }
  static inline V interleave_hi(V a, V b) { return interleave8(a.hi, b.hi); }
  // Lanes 0, 2, ..., 14 (even) or 1, 3, ..., 15 (odd) of the 16 in (x, y): shuffle takes 0 2 8 10 |
  // 4 6 12 14 (per 128-bit lane), and a 64-bit permute puts the pairs in order.
  template <int Sel>
  static inline __m256 pick8(__m256 x, __m256 y) {
    const __m256 s = _mm256_shuffle_ps(x, y, Sel);
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(s), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  static inline V deinterleave_even(V lo, V hi) {
    return {pick8<_MM_SHUFFLE(2, 0, 2, 0)>(lo.lo, lo.hi), pick8<_MM_SHUFFLE(2, 0, 2, 0)>(hi.lo, hi.hi)};
  }
  static inline V deinterleave_odd(V lo, V hi) {
    return {pick8<_MM_SHUFFLE(3, 1, 3, 1)>(lo.lo, lo.hi), pick8<_MM_SHUFFLE(3, 1, 3, 1)>(hi.lo, hi.hi)};
  }
  static inline __m256 gather8(const float* base, int64_t stride, uint32_t bits) {
    if (bits == 0) return _mm256_setzero_ps();
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                           _mm256_set1_epi32(static_cast<int>(stride)));
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), base, idx, _mm256_castsi256_ps(mask8(bits)), 4);
  }
  static inline V gather(const float* base, int64_t stride, uint32_t bits) {
    return {gather8(base, stride, bits & 0xFF), gather8(base + 8 * stride, stride, (bits >> 8) & 0xFF)};
  }
  // g[r] lane l = p[9 l + r]: each half is 8 filters, 72 contiguous floats.
  static inline void taps16(const float* p, V* g) {
    __m256 z[9], lo[9], hi[9];
    for (int m = 0; m < 9; ++m) z[m] = _mm256_loadu_ps(p + 8 * m);
    taps8(z, lo, std::make_integer_sequence<int, 9>{});
    for (int m = 0; m < 9; ++m) z[m] = _mm256_loadu_ps(p + 72 + 8 * m);
    taps8(z, hi, std::make_integer_sequence<int, 9>{});
    for (int r = 0; r < 9; ++r) g[r] = {lo[r], hi[r]};
  }
  // (Streaming stores when p is 64-byte aligned: the 18 ymm are then 9 whole cache lines, and the
  // weight gradient is written once and not read back by this call.)
  static inline void untaps16(const V* g, float* p) {
    const bool stream = (reinterpret_cast<uintptr_t>(p) & 63) == 0;
    __m256 t[9], out[9];
    for (int half = 0; half < 2; ++half) {
      for (int r = 0; r < 9; ++r) t[r] = half ? g[r].hi : g[r].lo;
      untaps8(t, out, std::make_integer_sequence<int, 9>{});
      float* dst = p + 72 * half;
      for (int m = 0; m < 9; ++m) {
        if (stream) {
          _mm256_stream_ps(dst + 8 * m, out[m]);
        } else {
          _mm256_storeu_ps(dst + 8 * m, out[m]);
        }
      }
    }
  }
  static inline void fence() { _mm_sfence(); }
  // The 16 x 16 block as four 8 x 8 quarters: the diagonal ones transpose in place, the other two
  // transpose and swap.
  static inline void transpose16(V* r) {
    __m256 a[8], b[8], c[8], d[8];
    for (int i = 0; i < 8; ++i) a[i] = r[i].lo, b[i] = r[i].hi, c[i] = r[8 + i].lo, d[i] = r[8 + i].hi;
    transpose8(a), transpose8(b), transpose8(c), transpose8(d);
    for (int i = 0; i < 8; ++i) r[i] = {a[i], c[i]}, r[8 + i] = {b[i], d[i]};
  }
};

#include "cpu/conv2d/winograd_simd.inc"

}  // namespace
}  // namespace wino_avx2_impl

const WinoKernels& winograd_kernels_avx2() { return wino_avx2_impl::kKernels; }

}  // namespace cnnfast::cpu

#pragma GCC pop_options
