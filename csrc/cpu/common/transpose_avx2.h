// An 8 x 8 float transpose in AVX2 registers, shared by the AVX2 data movers (simd_avx2.cpp) and the
// AVX2 Winograd transforms (winograd_avx2.cpp). Include it only after the including file's
// `#pragma GCC target("avx2,...")`, with <immintrin.h> and <cstdint> already included.
#pragma once

namespace cnnfast::cpu::avx2 {
namespace {

// r[i][j] <- r[j][i] for an 8 x 8 block of floats (unpacks, 4-lane shuffles, then 128-bit halves).
inline void transpose8(__m256* r) {
  __m256 t[8];
  for (int j = 0; j < 8; j += 2) {
    t[j] = _mm256_unpacklo_ps(r[j], r[j + 1]);
    t[j + 1] = _mm256_unpackhi_ps(r[j], r[j + 1]);
  }
  __m256 u[8];
  for (int j = 0; j < 8; j += 4) {
    u[j] = _mm256_shuffle_ps(t[j], t[j + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[j + 1] = _mm256_shuffle_ps(t[j], t[j + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[j + 2] = _mm256_shuffle_ps(t[j + 1], t[j + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[j + 3] = _mm256_shuffle_ps(t[j + 1], t[j + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm256_permute2f128_ps(u[j], u[j + 4], 0x20);
    r[j + 4] = _mm256_permute2f128_ps(u[j], u[j + 4], 0x31);
  }
}

// Lanes [0, m) set, for maskload / maskstore.
inline __m256i lanes8(int64_t m) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(m)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

}  // namespace
}  // namespace cnnfast::cpu::avx2
