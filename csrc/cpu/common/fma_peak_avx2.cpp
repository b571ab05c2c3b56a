// fma_peak.h's chains on AVX2 + FMA (a ymm of 8 floats or 4 doubles per chain, vfmadd). Only reached
// when capability.cpp found AVX2 and FMA on the CPU; standard headers come before the target pragma.
#include <cstdint>

#include <immintrin.h>

#include "cpu/common/fma_peak.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace cnnfast::cpu {
namespace fma_peak_avx2_impl {
namespace {

constexpr Capability kCapability = Capability::kAvx2;
inline __m256 fused(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
inline __m256d fused(__m256d a, __m256d b, __m256d c) { return _mm256_fmadd_pd(a, b, c); }

#include "cpu/common/fma_peak_simd.inc"

}  // namespace
}  // namespace fma_peak_avx2_impl

const FmaChains kFmaChainsAvx2 = fma_peak_avx2_impl::kChains;

}  // namespace cnnfast::cpu

#pragma GCC pop_options
