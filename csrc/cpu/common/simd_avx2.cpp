// The AVX2 data movers of simd.h: sixteen rows to lanes and back by pairs of 8 x 8 register transposes
// (a lane group of 16 is two ymm), stride-2 column splits and merges, and a vector add. Only reached
// when capability.cpp found AVX2 and FMA on the CPU; standard headers come before the target pragma.
#include <algorithm>
#include <cstdint>

#include <immintrin.h>

#include "cpu/common/simd.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#include "cpu/common/transpose_avx2.h"

namespace cnnfast::cpu {

namespace {
using avx2::lanes8;
using avx2::transpose8;

inline __m256 load8(const float* p, int64_t m, __m256i mask) {
  return m >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask);
}
inline void store8(float* p, __m256 v, int64_t m, __m256i mask) {
  if (m >= 8) {
    _mm256_storeu_ps(p, v);
  } else {
    _mm256_maskstore_ps(p, mask, v);
  }
}

// Stores the m columns (lo[t], hi[t]) of rows_to_lanes16 from column j on, as the AVX-512 version.
inline void store_lanes16_columns(const __m256* lo, const __m256* hi, int64_t m, float* dst, int64_t ldd, int64_t sw,
                                  int64_t phase_ld, int64_t j) {
  int64_t q = j / sw, ph = j % sw;
  for (int64_t t = 0; t < m; ++t) {
    float* d = dst + q * ldd + ph * phase_ld;
    _mm256_storeu_ps(d, lo[t]);
    _mm256_storeu_ps(d + 8, hi[t]);
    if (++ph == sw) ph = 0, ++q;
  }
}

// Rows 0..15 of src from column i, m <= 8 columns, as two 8 x 8 blocks transposed: lo[t] / hi[t] hold
// column i + t of rows 0..7 / 8..15. `row(l, mask)` loads row l's 8 columns.
template <typename Row>
inline void columns16(__m256* lo, __m256* hi, Row row) {
  for (int l = 0; l < 8; ++l) lo[l] = row(l), hi[l] = row(l + 8);
  transpose8(lo);
  transpose8(hi);
}
}  // namespace

void rows_to_lanes16_avx2(const float* src, int64_t ld, float* dst, int64_t ldd, int64_t n, int64_t sw,
                          int64_t phase_ld, int64_t col0) {
  __m256 lo[8], hi[8];
  for (int64_t i = 0; i < n; i += 8) {
    const int64_t m = std::min<int64_t>(8, n - i);
    const __m256i mask = lanes8(m);
    columns16(lo, hi, [&](int l) { return load8(src + l * ld + i, m, mask); });
    store_lanes16_columns(lo, hi, m, dst, ldd, sw, phase_ld, col0 + i);
  }
}

void rows_to_lanes16_masked_avx2(const float* src, const float* keep, int64_t ld, float* dst, int64_t ldd,
                                 int64_t n, int64_t sw, int64_t phase_ld, int64_t col0) {
  __m256 lo[8], hi[8];
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; i += 8) {
    const int64_t m = std::min<int64_t>(8, n - i);
    const __m256i mask = lanes8(m);
    columns16(lo, hi, [&](int l) {
      // !(keep <= 0): keep > 0 or NaN; the lanes past m load as 0 and are never stored.
      const __m256 pos = _mm256_cmp_ps(load8(keep + l * ld + i, m, mask), zero, _CMP_NLE_UQ);
      return _mm256_and_ps(pos, load8(src + l * ld + i, m, mask));
    });
    store_lanes16_columns(lo, hi, m, dst, ldd, sw, phase_ld, col0 + i);
  }
}

void lanes16_to_rows_avx2(const float* src, float* dst, int64_t ld, int64_t n) {
  __m256 lo[8], hi[8];
  for (int64_t i = 0; i < n; i += 8) {
    const int64_t m = std::min<int64_t>(8, n - i);
    const __m256i mask = lanes8(m);
    for (int t = 0; t < 8; ++t) {
      lo[t] = t < m ? _mm256_loadu_ps(src + (i + t) * 16) : _mm256_setzero_ps();
      hi[t] = t < m ? _mm256_loadu_ps(src + (i + t) * 16 + 8) : _mm256_setzero_ps();
    }
    transpose8(lo);
    transpose8(hi);
    for (int l = 0; l < 8; ++l) {
      store8(dst + l * ld + i, lo[l], m, mask);
      store8(dst + (l + 8) * ld + i, hi[l], m, mask);
    }
  }
}

void lanes16_to_rows_i64_avx2(const int32_t* src, int64_t* dst, int64_t ld, int64_t n) {
  __m256 lo[8], hi[8];
  for (int64_t i = 0; i < n; i += 8) {
    const int64_t m = std::min<int64_t>(8, n - i);
    // the int32 bits ride through the float transpose unchanged
    for (int t = 0; t < 8; ++t) {
      const float* s = reinterpret_cast<const float*>(src + (i + t) * 16);
      lo[t] = t < m ? _mm256_loadu_ps(s) : _mm256_setzero_ps();
      hi[t] = t < m ? _mm256_loadu_ps(s + 8) : _mm256_setzero_ps();
    }
    transpose8(lo);
    transpose8(hi);
    const __m256i mask0 = _mm256_cvtepi32_epi64(_mm_set1_epi32(-1)), none = _mm256_setzero_si256();
    const __m256i mlo = m >= 4 ? mask0 : _mm256_cvtepi32_epi64(_mm256_castsi256_si128(lanes8(m)));
    const __m256i mhi = m >= 8 ? mask0 : m <= 4 ? none : _mm256_cvtepi32_epi64(_mm256_castsi256_si128(lanes8(m - 4)));
    for (int l = 0; l < 16; ++l) {
      const __m256i v = _mm256_castps_si256(l < 8 ? lo[l] : hi[l - 8]);
      long long* d = reinterpret_cast<long long*>(dst + l * ld + i);
      _mm256_maskstore_epi64(d, mlo, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(v)));
      if (m > 4) _mm256_maskstore_epi64(d + 4, mhi, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(v, 1)));
    }
  }
}

namespace {
// Four int64 clamped to the int32 range (signed saturation, as the AVX-512 narrowing), low halves packed
// into the low 128 bits.
inline __m128i narrow4(__m256i v) {
  const __m256i hi = _mm256_set1_epi64x(INT32_MAX), lo = _mm256_set1_epi64x(INT32_MIN);
  v = _mm256_blendv_epi8(v, hi, _mm256_cmpgt_epi64(v, hi));
  v = _mm256_blendv_epi8(v, lo, _mm256_cmpgt_epi64(lo, v));
  return _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7)));
}
}  // namespace

void rows_i64_to_lanes16_avx2(const int64_t* src, int64_t ld, int32_t* dst, int64_t n) {
  __m256 lo[8], hi[8];
  for (int64_t i = 0; i < n; i += 8) {
    const int64_t m = std::min<int64_t>(8, n - i);
    const __m256i mask0 = _mm256_cvtepi32_epi64(_mm_set1_epi32(-1)), none = _mm256_setzero_si256();
    const __m256i mlo = m >= 4 ? mask0 : _mm256_cvtepi32_epi64(_mm256_castsi256_si128(lanes8(m)));
    const __m256i mhi = m >= 8 ? mask0 : m <= 4 ? none : _mm256_cvtepi32_epi64(_mm256_castsi256_si128(lanes8(m - 4)));
    columns16(lo, hi, [&](int l) {
      const long long* s = reinterpret_cast<const long long*>(src + l * ld + i);
      const __m128i a = narrow4(_mm256_maskload_epi64(s, mlo));
      const __m128i b = m > 4 ? narrow4(_mm256_maskload_epi64(s + 4, mhi)) : _mm_setzero_si128();
      return _mm256_castsi256_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1));
    });
    for (int64_t t = 0; t < m; ++t) {
      float* d = reinterpret_cast<float*>(dst + (i + t) * 16);
      _mm256_storeu_ps(d, lo[t]);
      _mm256_storeu_ps(d + 8, hi[t]);
    }
  }
}

void split_columns2_avx2(const float* src, int64_t n, float* even, float* odd) {
  // Within each 128-bit half: evens then odds; the halves of a and b then pair up.
  const __m256i evens_first = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t m = std::min<int64_t>(16, n - i);  // source columns in this step
    const int64_t ma = std::min<int64_t>(8, m), mb = m - ma;
    const __m256 a = _mm256_permutevar8x32_ps(load8(src + i, ma, lanes8(ma)), evens_first);
    const __m256 b = mb > 0 ? _mm256_permutevar8x32_ps(load8(src + i + 8, mb, lanes8(mb)), evens_first)
                            : _mm256_setzero_ps();
    const int64_t ne = (m + 1) / 2, no = m / 2;
    store8(even + i / 2, _mm256_permute2f128_ps(a, b, 0x20), ne, lanes8(ne));
    store8(odd + i / 2, _mm256_permute2f128_ps(a, b, 0x31), no, lanes8(no));
  }
}

void merge_columns2_avx2(const float* even, const float* odd, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t m = std::min<int64_t>(16, n - i);  // destination elements in this step
    const int64_t ne = (m + 1) / 2, no = m / 2;
    const __m256 e = load8(even + i / 2, ne, lanes8(ne)), o = load8(odd + i / 2, no, lanes8(no));
    const __m256 lo = _mm256_unpacklo_ps(e, o), hi = _mm256_unpackhi_ps(e, o);
    const int64_t m0 = std::min<int64_t>(8, m), m1 = m - m0;
    store8(dst + i, _mm256_permute2f128_ps(lo, hi, 0x20), m0, lanes8(m0));
    if (m1 > 0) store8(dst + i + 8, _mm256_permute2f128_ps(lo, hi, 0x31), m1, lanes8(m1));
  }
}

void add_f32_avx2(const float* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(dst + i), _mm256_loadu_ps(src + i)));
  for (; i < n; ++i) dst[i] += src[i];
}

}  // namespace cnnfast::cpu

#pragma GCC pop_options
