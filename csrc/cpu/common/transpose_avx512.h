// A 16 x 16 float transpose in AVX-512 registers, shared by simd_avx512.cpp (the images-per-vector layout's
// copies) and winograd_avx512.cpp (its transforms). Include it only after the including file's
// `#pragma GCC target("avx512f,...")`, with <immintrin.h> already included: it is compiled for AVX-512.
#pragma once

namespace cnnfast::cpu::avx512 {
namespace {

// r[i][j] <- r[j][i] for a 16 x 16 block of floats (3 rounds of shuffles).
inline void transpose16(__m512* r) {
  __m512 t[16];
  for (int j = 0; j < 16; j += 4) {
    t[j] = _mm512_unpacklo_ps(r[j], r[j + 1]);
    t[j + 1] = _mm512_unpackhi_ps(r[j], r[j + 1]);
    t[j + 2] = _mm512_unpacklo_ps(r[j + 2], r[j + 3]);
    t[j + 3] = _mm512_unpackhi_ps(r[j + 2], r[j + 3]);
  }
  for (int j = 0; j < 16; j += 4) {
    r[j] = _mm512_shuffle_ps(t[j], t[j + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[j + 1] = _mm512_shuffle_ps(t[j], t[j + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[j + 2] = _mm512_shuffle_ps(t[j + 1], t[j + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[j + 3] = _mm512_shuffle_ps(t[j + 1], t[j + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int h = 0; h < 16; h += 8)
    for (int j = 0; j < 4; ++j) {
      t[h + j] = _mm512_shuffle_f32x4(r[h + j], r[h + j + 4], 0x88);
      t[h + j + 4] = _mm512_shuffle_f32x4(r[h + j], r[h + j + 4], 0xdd);
    }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
  }
}

}  // namespace
}  // namespace cnnfast::cpu::avx512
