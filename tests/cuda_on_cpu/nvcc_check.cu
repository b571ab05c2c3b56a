// The harness tests' kernels, unchanged, through nvcc: proves they build both ways.
// Every launcher is instantiated, so every kernel is compiled for the device.
#include "kernels.cuh"
#include "planted_bugs.cuh"
#include "scheduler_cases.cuh"

namespace t = cnnfast_test;
namespace pb = cnnfast_test::planted;

template void t::tiled_matmul<cudaStream_t>(const float*, const float*, float*, int, int, int, cudaStream_t);
template void t::warp_sum<cudaStream_t>(const float*, float*, int, int, cudaStream_t);
template void t::collectives<cudaStream_t>(int*, int, int, cudaStream_t);
template void t::block_reverse<cudaStream_t>(const float*, float*, int, int, cudaStream_t);
template void t::atomics<cudaStream_t>(const int*, int, int*, float*, double*, __half*, int*, int*, int*, cudaStream_t);
template void t::wmma_gemm_half<cudaStream_t>(const __half*, const __half*, float*, int, int, int, cudaStream_t);
template void t::wmma_gemm_bf16<cudaStream_t>(const __nv_bfloat16*, const __nv_bfloat16*, float*, int, int, int, cudaStream_t);
template void t::wmma_gemm_tf32<cudaStream_t>(const float*, const float*, float*, int, int, int, cudaStream_t);
template void t::wmma_layouts<cudaStream_t>(const __half*, const __half*, const float*, float*, int, int, int, cudaStream_t);
template void t::conv2d_direct<cudaStream_t>(const float*, const float*, const float*, float*, const cnnfast::Conv2dProblem&, cudaStream_t);
template void t::vector_copy<cudaStream_t>(const float4*, float4*, int, int*, cudaStream_t);
template __global__ void cnnfast_test::scheduler::stale_static_shared_kernel<32>(float*);
template void pb::missing_barrier<cudaStream_t>(const float*, float*, int, cudaStream_t);
template void pb::divergent_barrier<cudaStream_t>(float*, int, cudaStream_t);
template void pb::exit_before_barrier<cudaStream_t>(const float*, float*, int, int, cudaStream_t);
template void pb::wrong_mask_shuffle<cudaStream_t>(const float*, float*, int, cudaStream_t);
template void pb::missing_lane_shuffle<cudaStream_t>(const float*, float*, cudaStream_t);
template void pb::shared_oob_write<cudaStream_t>(const float*, float*, int, int, cudaStream_t);
template void pb::inter_block_race<cudaStream_t>(const float*, float*, int, cudaStream_t);
template void pb::global_oob_read<cudaStream_t>(const float*, float*, int, cudaStream_t);
