// The AVX2 ReLU spans of relu.h (8 floats per vector, scalar tail). Only reached when capability.cpp
// found AVX2 and FMA on the CPU; standard headers come before the target pragma.
#include <algorithm>
#include <cstdint>

#include <immintrin.h>

#include "cpu/relu/relu.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace cnnfast::cpu {

// y[i] = max(0, x[i]) (NaN and -0.0 kept, as torch's clamp_min), 8 floats at a time, scalar tail.
void relu_f32_avx2(const float* x, float* y, int64_t n) {
  const __m256 zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_max_ps(zero, _mm256_loadu_ps(x + i)));
  for (; i < n; ++i) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

// d[i] = g[i] where !(y[i] <= 0) (positive or NaN: torch's threshold_backward), else 0.
void relu_mask_f32_avx2(const float* g, const float* y, float* d, int64_t n) {
  const __m256 zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 pos = _mm256_cmp_ps(_mm256_loadu_ps(y + i), zero, _CMP_NLE_UQ);
    _mm256_storeu_ps(d + i, _mm256_and_ps(pos, _mm256_loadu_ps(g + i)));
  }
  for (; i < n; ++i) {
    const float gi = g[i];
    d[i] = !(y[i] <= 0.0f) ? gi : 0.0f;
  }
}

}  // namespace cnnfast::cpu

#pragma GCC pop_options
