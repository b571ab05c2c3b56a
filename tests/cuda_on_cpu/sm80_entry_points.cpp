// C entry points of the sm_80 primitives' test kernels (tests/test_cuda_on_cpu_sm80.py), built with
// g++ and the CPU harness; no torch header.
#include "sm80_kernels.cuh"
#include "sm80_planted_bugs.cuh"

#include "../../csrc/cuda_on_cpu/c_api.h"

using cuda_on_cpu::c_api::guarded;
namespace k = cnnfast_test::sm80k;
namespace s80 = cnnfast::cuda::sm80;

extern "C" {

// dtype: 0 float16, 1 bfloat16, 2 TF32 (float storage).
int coc_mma_fragment(int dtype, const void* A, const void* B, const float* C, float* D) {
  return guarded([&] {
    if (dtype == 0) k::mma_fragment<s80::MmaType::f16>(A, B, C, D, nullptr);
    else if (dtype == 1) k::mma_fragment<s80::MmaType::bf16>(A, B, C, D, nullptr);
    else k::mma_fragment<s80::MmaType::tf32>(A, B, C, D, nullptr);
  });
}

int coc_ldmatrix(int n, int trans, const uint16_t* in, const int* rows, uint32_t* out) {
  return guarded([&] {
    if (n == 1) trans ? k::ldmatrix_test<1, true>(in, rows, out, nullptr) : k::ldmatrix_test<1, false>(in, rows, out, nullptr);
    else if (n == 2) trans ? k::ldmatrix_test<2, true>(in, rows, out, nullptr) : k::ldmatrix_test<2, false>(in, rows, out, nullptr);
    else trans ? k::ldmatrix_test<4, true>(in, rows, out, nullptr) : k::ldmatrix_test<4, false>(in, rows, out, nullptr);
  });
}

int coc_mma_gemm(int trans_b, const void* A, const void* B, float* D) {
  return guarded([&] {
    const auto* a = static_cast<const __half*>(A);
    const auto* b = static_cast<const __half*>(B);
    trans_b ? k::mma_gemm<true>(a, b, D, nullptr) : k::mma_gemm<false>(a, b, D, nullptr);
  });
}

// layout: 0 unswizzled, 1 RowSwizzle<64>, 2 a swizzle of one bit.
int coc_swizzle(int layout, const void* in, uint32_t* out) {
  return guarded([&] {
    const auto* v = static_cast<const uint4*>(in);
    if (layout == 0) k::swizzle_test<k::NoSwizzle>(v, out, nullptr);
    else if (layout == 1) k::swizzle_test<k::RowSwizzle64>(v, out, nullptr);
    else k::swizzle_test<k::HalfSwizzle>(v, out, nullptr);
  });
}

// variant: 0 right (3 stages, wait 1), 1 right (4 stages, wait 2), 2 wait N too large (3 stages,
// wait 2), 3 no wait.
int coc_cp_async_pipeline(int variant, const float* in, float* out, int n) {
  return guarded([&] {
    if (variant == 0) k::cp_async_pipeline<3, 1, true>(in, out, n, nullptr);
    else if (variant == 1) k::cp_async_pipeline<4, 2, true>(in, out, n, nullptr);
    else if (variant == 2) k::cp_async_pipeline<3, 2, true>(in, out, n, nullptr);
    else k::cp_async_pipeline<3, 1, false>(in, out, n, nullptr);
  });
}

int coc_sm80_planted(int which, const float* in, float* out) {
  return guarded([&] { cnnfast_test::sm80_planted::sm80_planted(which, in, out, nullptr); });
}

// FastDivmod against the hardware divide: q[i], r[i] of n[i] / d.
void coc_fast_divmod(int d, const int* n, int count, int* q, int* r) {
  const cnnfast::cuda::FastDivmod f(d);
  for (int i = 0; i < count; ++i) f.divmod(n[i], q[i], r[i]);
}

}  // extern "C"
