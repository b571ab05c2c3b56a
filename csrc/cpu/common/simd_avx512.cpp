// The AVX-512 data movers of simd.h: sixteen rows to lanes and back by 16 x 16 register transposes,
// stride-2 column splits and merges, and a vector add. Only reached when capability.cpp found AVX-512
// on the CPU; standard headers come before the target pragma.
#include <algorithm>
#include <cstdint>

#include <immintrin.h>

#include "cpu/common/simd.h"

// GCC 12 flags its own _mm512_undefined_ps idiom inside the masked-load intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")

#include "cpu/common/transpose_avx512.h"

namespace cnnfast::cpu {

namespace {
// Stores the m columns r[0..m) of rows_to_lanes16 from column j on (gemm.h): column j at
// dst + (j / sw) * ldd + (j % sw) * phase_ld, stepped without a division per column.
inline void store_lanes16_columns(const __m512* r, int64_t m, float* dst, int64_t ldd, int64_t sw, int64_t phase_ld,
                                  int64_t j) {
  if (sw == 1) {
    for (int64_t t = 0; t < m; ++t) _mm512_storeu_ps(dst + (j + t) * ldd, r[t]);
    return;
  }
  int64_t q = j / sw, ph = j % sw;
  for (int64_t t = 0; t < m; ++t) {
    _mm512_storeu_ps(dst + q * ldd + ph * phase_ld, r[t]);
    if (++ph == sw) ph = 0, ++q;
  }
}
}  // namespace

void rows_to_lanes16_avx512(const float* src, int64_t ld, float* dst, int64_t ldd, int64_t n, int64_t sw,
                            int64_t phase_ld, int64_t col0) {
  __m512 r[16];
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t m = std::min<int64_t>(16, n - i);
    const __mmask16 mask = static_cast<__mmask16>(m >= 16 ? 0xFFFF : (1u << m) - 1u);
    for (int l = 0; l < 16; ++l) r[l] = _mm512_maskz_loadu_ps(mask, src + l * ld + i);
    avx512::transpose16(r);
    store_lanes16_columns(r, m, dst, ldd, sw, phase_ld, col0 + i);
  }
}

void rows_to_lanes16_masked_avx512(const float* src, const float* keep, int64_t ld, float* dst, int64_t ldd,
                                   int64_t n, int64_t sw, int64_t phase_ld, int64_t col0) {
  __m512 r[16];
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t m = std::min<int64_t>(16, n - i);
    const __mmask16 mask = static_cast<__mmask16>(m >= 16 ? 0xFFFF : (1u << m) - 1u);
    for (int l = 0; l < 16; ++l) {
      const __mmask16 pos = _mm512_mask_cmp_ps_mask(mask, _mm512_maskz_loadu_ps(mask, keep + l * ld + i), zero,
                                                    _CMP_NLE_UQ);
      r[l] = _mm512_maskz_loadu_ps(pos, src + l * ld + i);
    }
    avx512::transpose16(r);
    store_lanes16_columns(r, m, dst, ldd, sw, phase_ld, col0 + i);
  }
}

void split_columns2_avx512(const float* src, int64_t n, float* even, float* odd) {
  const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  for (int64_t i = 0; i < n; i += 32) {
    const int64_t m = std::min<int64_t>(32, n - i);  // source columns in this step
    const __mmask16 lo = static_cast<__mmask16>(m >= 16 ? 0xFFFF : (1u << m) - 1u);
    const __mmask16 hi = static_cast<__mmask16>(m >= 32 ? 0xFFFF : m <= 16 ? 0u : (1u << (m - 16)) - 1u);
    const __m512 a = _mm512_maskz_loadu_ps(lo, src + i), b = _mm512_maskz_loadu_ps(hi, src + i + 16);
    const int64_t ne = (m + 1) / 2, no = m / 2;
    _mm512_mask_storeu_ps(even + i / 2, static_cast<__mmask16>((1u << ne) - 1u), _mm512_permutex2var_ps(a, ie, b));
    _mm512_mask_storeu_ps(odd + i / 2, static_cast<__mmask16>((1u << no) - 1u), _mm512_permutex2var_ps(a, io, b));
  }
}

void merge_columns2_avx512(const float* even, const float* odd, int64_t n, float* dst) {
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  for (int64_t i = 0; i < n; i += 32) {
    const int64_t m = std::min<int64_t>(32, n - i);  // destination elements in this step
    const int64_t ne = (m + 1) / 2, no = m / 2;
    const __m512 e = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << ne) - 1u), even + i / 2);
    const __m512 o = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << no) - 1u), odd + i / 2);
    const __mmask16 m0 = static_cast<__mmask16>(m >= 16 ? 0xFFFF : (1u << m) - 1u);
    const __mmask16 m1 = static_cast<__mmask16>(m >= 32 ? 0xFFFF : m <= 16 ? 0u : (1u << (m - 16)) - 1u);
    _mm512_mask_storeu_ps(dst + i, m0, _mm512_permutex2var_ps(e, lo, o));
    _mm512_mask_storeu_ps(dst + i + 16, m1, _mm512_permutex2var_ps(e, hi, o));
  }
}

void add_f32_avx512(const float* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, _mm512_add_ps(_mm512_loadu_ps(dst + i), _mm512_loadu_ps(src + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m512 sum = _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst + i), _mm512_maskz_loadu_ps(m, src + i));
    _mm512_mask_storeu_ps(dst + i, m, sum);
  }
}

void lanes16_to_rows_avx512(const float* src, float* dst, int64_t ld, int64_t n) {
  __m512 r[16];
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t m = std::min<int64_t>(16, n - i);
    const __mmask16 mask = static_cast<__mmask16>(m >= 16 ? 0xFFFF : (1u << m) - 1u);
    for (int t = 0; t < 16; ++t) r[t] = t < m ? _mm512_loadu_ps(src + (i + t) * 16) : _mm512_setzero_ps();
    avx512::transpose16(r);
    for (int l = 0; l < 16; ++l) _mm512_mask_storeu_ps(dst + l * ld + i, mask, r[l]);
  }
}

void lanes16_to_rows_i64_avx512(const int32_t* src, int64_t* dst, int64_t ld, int64_t n) {
  __m512 r[16];
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t m = std::min<int64_t>(16, n - i);
    // the int32 bits ride through the float transpose unchanged
    for (int t = 0; t < 16; ++t)
      r[t] = t < m ? _mm512_castsi512_ps(_mm512_loadu_si512(src + (i + t) * 16)) : _mm512_setzero_ps();
    avx512::transpose16(r);
    const __mmask8 lo_mask = static_cast<__mmask8>(m >= 8 ? 0xFF : (1u << m) - 1u);
    const __mmask8 hi_mask = static_cast<__mmask8>(m >= 16 ? 0xFF : m > 8 ? (1u << (m - 8)) - 1u : 0u);
    for (int l = 0; l < 16; ++l) {
      const __m512i v = _mm512_castps_si512(r[l]);
      int64_t* d = dst + l * ld + i;
      _mm512_mask_storeu_epi64(d, lo_mask, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(v)));
      if (hi_mask) _mm512_mask_storeu_epi64(d + 8, hi_mask, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(v, 1)));
    }
  }
}

void rows_i64_to_lanes16_avx512(const int64_t* src, int64_t ld, int32_t* dst, int64_t n) {
  __m512 r[16];
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t m = std::min<int64_t>(16, n - i);
    const __mmask8 lo_mask = static_cast<__mmask8>(m >= 8 ? 0xFF : (1u << m) - 1u);
    const __mmask8 hi_mask = static_cast<__mmask8>(m >= 16 ? 0xFF : m > 8 ? (1u << (m - 8)) - 1u : 0u);
    for (int l = 0; l < 16; ++l) {
      const int64_t* s = src + l * ld + i;
      const __m256i lo = _mm512_cvtsepi64_epi32(_mm512_maskz_loadu_epi64(lo_mask, s));
      const __m256i hi = _mm512_cvtsepi64_epi32(_mm512_maskz_loadu_epi64(hi_mask, s + 8));
      r[l] = _mm512_castsi512_ps(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
    }
    avx512::transpose16(r);
    for (int64_t t = 0; t < m; ++t) _mm512_storeu_ps(reinterpret_cast<float*>(dst + (i + t) * 16), r[t]);
  }
}

}  // namespace cnnfast::cpu

#pragma GCC pop_options
