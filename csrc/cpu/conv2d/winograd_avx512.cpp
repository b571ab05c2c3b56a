// winograd.h's transforms for AVX-512: 16 tiles (or 16 filters) per zmm. Only reached when
// capability.cpp found AVX-512 F/BW/VL/DQ on the CPU. Standard headers come before the target pragma
// so that none of their inline functions is compiled for AVX-512 here.
#include <algorithm>
#include <array>
#include <cstdint>

#include <immintrin.h>

#include "cpu/conv2d/winograd.h"

// GCC 12 flags its own _mm512_undefined_ps idiom inside the masked-load intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")

#include "cpu/common/transpose_avx512.h"

namespace cnnfast::cpu {
namespace wino_avx512_impl {
namespace {

// kTapMask[r][m]: the lanes l with (9 l + r) / 32 == m (Isa::taps16).
constexpr auto kTapMask = [] {
  std::array<std::array<__mmask16, 5>, 9> t{};
  for (int r = 0; r < 9; ++r)
    for (int l = 0; l < 16; ++l) t[r][(9 * l + r) / 32] = static_cast<__mmask16>(t[r][(9 * l + r) / 32] | (1u << l));
  return t;
}();

// kUntapIdx[m][a], kUntapMask[m][a]: output vector m of Isa::untaps16 (floats 16 m .. 16 m + 15 of
// 16 filters x 9 taps, filter (16 m + e) / 9, tap (16 m + e) % 9) takes from the pair of tap vectors
// (2a, 2a + 1) the lanes whose tap is in the pair, at index (tap - 2a) * 16 + filter.
struct UntapTables {
  int32_t idx[9][5][16];
  __mmask16 mask[9][5];
};
constexpr UntapTables kUntap = [] {
  UntapTables t{};
  for (int m = 0; m < 9; ++m)
    for (int e = 0; e < 16; ++e) {
      const int p = 16 * m + e, f = p / 9, r = p % 9, a = r / 2;
      t.idx[m][a][e] = (r - 2 * a) * 16 + f;
      t.mask[m][a] = static_cast<__mmask16>(t.mask[m][a] | (1u << e));
    }
  return t;
}();

struct Isa {
  using V = __m512;
  static inline V zero() { return _mm512_setzero_ps(); }
  static inline V set1(float x) { return _mm512_set1_ps(x); }
  static inline V load(const float* p) { return _mm512_loadu_ps(p); }
  static inline V load_mask(V prev, const float* p, uint32_t bits) {
    return _mm512_mask_loadu_ps(prev, static_cast<__mmask16>(bits), p);
  }
  static inline void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static inline void store_mask(float* p, V v, uint32_t bits) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>(bits), v);
  }
  static inline V add(V a, V b) { return _mm512_add_ps(a, b); }
  static inline V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static inline V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  // max(0, v) with 0 first: v when v is NaN or -0.0, as torch's clamp_min.
  static inline V relu(V v) { return _mm512_max_ps(_mm512_setzero_ps(), v); }
  static inline V interleave_lo(V a, V b) {
    const __m512i idx = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutex2var_ps(a, idx, b);
  }
  static inline V interleave_hi(V a, V b) {
    const __m512i idx = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    return _mm512_permutex2var_ps(a, idx, b);
  }
  static inline V gather(const float* base, int64_t stride, uint32_t bits) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32(static_cast<int>(stride)));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), static_cast<__mmask16>(bits), idx, base, 4);
  }
  // g[r] lane l = p[9 * l + r] from 9 contiguous vectors: lane l's element lies in the pair of vectors
  // (2m, 2m + 1) with m = (9 l + r) / 32, at (9 l + r) mod 32, which is what a two-source permute
  // reads from the low 5 bits of an index 9 l + r: one permute per pair and tap, merged by masks.
  static inline void taps16(const float* p, V* g) {
    V z[10];
    for (int m = 0; m < 9; ++m) z[m] = _mm512_loadu_ps(p + 16 * m);
    z[9] = z[8];
    const __m512i nine = _mm512_set_epi32(135, 126, 117, 108, 99, 90, 81, 72, 63, 54, 45, 36, 27, 18, 9, 0);
    for (int r = 0; r < 9; ++r) {
      const __m512i idx = _mm512_add_epi32(nine, _mm512_set1_epi32(r));
      V acc = _mm512_permutex2var_ps(z[0], idx, z[1]);
      for (int m = 1; m < 5; ++m) {
        // Lanes whose element is in pair m: 32 m <= 9 l + r < 32 (m + 1).
        acc = _mm512_mask_mov_ps(acc, kTapMask[r][m], _mm512_permutex2var_ps(z[2 * m], idx, z[2 * m + 1]));
      }
      g[r] = acc;
    }
  }
  // (Streaming stores when p is 64-byte aligned: the 9 vectors are then 9 whole cache lines, and the
  // weight gradient is written once and not read back by this call.)
  static inline void untaps16(const V* g, float* p) {
    const bool stream = (reinterpret_cast<uintptr_t>(p) & 63) == 0;
    for (int m = 0; m < 9; ++m) {
      V acc = _mm512_setzero_ps();
      for (int a = 0; a < 5; ++a) {
        const __m512i idx = _mm512_loadu_si512(kUntap.idx[m][a]);
        const V hi = a < 4 ? g[2 * a + 1] : g[8];
        acc = _mm512_mask_mov_ps(acc, kUntap.mask[m][a], _mm512_permutex2var_ps(g[2 * a], idx, hi));
      }
      if (stream) {
        _mm512_stream_ps(p + 16 * m, acc);
      } else {
        _mm512_storeu_ps(p + 16 * m, acc);
      }
    }
  }
  static inline void fence() { _mm_sfence(); }
  static inline void transpose16(V* r) { avx512::transpose16(r); }
  static inline V deinterleave_even(V lo, V hi) {
    const __m512i idx = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    return _mm512_permutex2var_ps(lo, idx, hi);
  }
  static inline V deinterleave_odd(V lo, V hi) {
    const __m512i idx = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    return _mm512_permutex2var_ps(lo, idx, hi);
  }
};

#include "cpu/conv2d/winograd_simd.inc"

}  // namespace
}  // namespace wino_avx512_impl

const WinoKernels& winograd_kernels_avx512() { return wino_avx512_impl::kKernels; }

}  // namespace cnnfast::cpu

#pragma GCC pop_options
