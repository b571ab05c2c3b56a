// The AVX2 vector add of simd.h. Only reached when capability.cpp found AVX2 and FMA on the CPU.
#include <algorithm>
#include <cstdint>

#include <immintrin.h>

#include "cpu/common/simd.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace cnnfast::cpu {

void add_f32_avx2(const float* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(dst + i), _mm256_loadu_ps(src + i)));
  for (; i < n; ++i) dst[i] += src[i];
}

}  // namespace cnnfast::cpu

#pragma GCC pop_options
