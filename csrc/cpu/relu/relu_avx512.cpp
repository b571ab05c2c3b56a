// The AVX-512 ReLU spans of relu.h (16 floats per vector, masked tail). Only reached when
// capability.cpp found AVX-512 on the CPU; standard headers come before the target pragma.
#include <algorithm>
#include <cstdint>

#include <immintrin.h>

#include "cpu/relu/relu.h"

// GCC 12 flags its own _mm512_undefined_ps idiom inside the masked-load intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")

namespace cnnfast::cpu {

// y[i] = max(0, x[i]) (NaN and -0.0 kept, as torch's clamp_min), 16 floats at a time, masked tail.
void relu_f32_avx512(const float* x, float* y, int64_t n) {
  const __m512 zero = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_max_ps(zero, _mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(y + i, m, _mm512_max_ps(zero, _mm512_maskz_loadu_ps(m, x + i)));
  }
}

// d[i] = g[i] where !(y[i] <= 0) (positive or NaN: torch's threshold_backward), else 0.
void relu_mask_f32_avx512(const float* g, const float* y, float* d, int64_t n) {
  const __m512 zero = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __mmask16 pos = _mm512_cmp_ps_mask(_mm512_loadu_ps(y + i), zero, _CMP_NLE_UQ);
    _mm512_storeu_ps(d + i, _mm512_maskz_mov_ps(pos, _mm512_loadu_ps(g + i)));
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __mmask16 pos = _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(m, y + i), zero, _CMP_NLE_UQ);
    _mm512_mask_storeu_ps(d + i, m, _mm512_maskz_mov_ps(pos, _mm512_maskz_loadu_ps(m, g + i)));
  }
}

}  // namespace cnnfast::cpu

#pragma GCC pop_options
