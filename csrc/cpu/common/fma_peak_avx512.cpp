// fma_peak.h's chains on AVX-512 (a zmm of 16 floats or 8 doubles per chain, vfmadd). Only reached
// when capability.cpp found AVX-512 on the CPU; standard headers come before the target pragma.
#include <cstdint>

#include <immintrin.h>

#include "cpu/common/fma_peak.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")

namespace cnnfast::cpu {
namespace fma_peak_avx512_impl {
namespace {

constexpr Capability kCapability = Capability::kAvx512;
inline __m512 fused(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
inline __m512d fused(__m512d a, __m512d b, __m512d c) { return _mm512_fmadd_pd(a, b, c); }

#include "cpu/common/fma_peak_simd.inc"

}  // namespace
}  // namespace fma_peak_avx512_impl

const FmaChains kFmaChainsAvx512 = fma_peak_avx512_impl::kChains;

}  // namespace cnnfast::cpu

#pragma GCC pop_options
