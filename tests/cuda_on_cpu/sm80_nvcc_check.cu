// The sm_80 primitives' test kernels, unchanged, through nvcc (every launcher instantiated).
#include "sm80_kernels.cuh"
#include "sm80_planted_bugs.cuh"

namespace k = cnnfast_test::sm80k;
namespace s80 = cnnfast::cuda::sm80;

template void k::mma_fragment<s80::MmaType::f16, cudaStream_t>(const void*, const void*, const float*, float*, cudaStream_t);
template void k::mma_fragment<s80::MmaType::bf16, cudaStream_t>(const void*, const void*, const float*, float*, cudaStream_t);
template void k::mma_fragment<s80::MmaType::tf32, cudaStream_t>(const void*, const void*, const float*, float*, cudaStream_t);
template void k::ldmatrix_test<1, false, cudaStream_t>(const uint16_t*, const int*, uint32_t*, cudaStream_t);
template void k::ldmatrix_test<2, true, cudaStream_t>(const uint16_t*, const int*, uint32_t*, cudaStream_t);
template void k::ldmatrix_test<4, true, cudaStream_t>(const uint16_t*, const int*, uint32_t*, cudaStream_t);
template void k::mma_gemm<true, cudaStream_t>(const __half*, const __half*, float*, cudaStream_t);
template void k::swizzle_test<k::RowSwizzle64, cudaStream_t>(const uint4*, uint32_t*, cudaStream_t);
template void k::cp_async_pipeline<3, 1, true, cudaStream_t>(const float*, float*, int, cudaStream_t);
template void cnnfast_test::sm80_planted::sm80_planted<cudaStream_t>(int, const float*, float*, cudaStream_t);
