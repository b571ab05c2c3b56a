// Small kernels that pin down the scheduler's rules for warp collectives (tests of the harness
// itself): what must complete, and how each misuse is reported.
#pragma once

#include "../../csrc/cuda/common/launch.cuh"

namespace cnnfast_test {
namespace scheduler {

// Correct: both halves of a divergent branch reach __syncwarp at different call sites
// (allowed since Volta), then exchange values across the halves.
__global__ void syncwarp_sites_kernel(int* out) {
  __shared__ int s[32];
  const int lane = threadIdx.x;
  if (lane < 16) {
    s[lane] = lane * 2;
    __syncwarp();
  } else {
    s[lane] = lane * 3;
    __syncwarp();
  }
  out[lane] = s[31 - lane];
}

// Correct: a block of 48 threads; the last warp has 16 lanes and names only them.
__global__ void partial_warp_kernel(int* out) {
  const int t = threadIdx.x;
  const unsigned mask = t < 32 ? 0xffffffffu : 0x0000ffffu;
  int v = t;
  for (int offset = (t < 32 ? 16 : 8); offset > 0; offset /= 2) v += __shfl_xor_sync(mask, v, offset);
  out[t] = v;
}

// Bug: the last warp has 16 lanes, but the reduction reads lanes 16..31 of it.
__global__ void partial_warp_full_mask_kernel(int* out) {
  int v = threadIdx.x;
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  out[threadIdx.x] = v;
}

// Bug: lane 0 goes to __syncthreads while the other lanes wait for it in a shuffle.
__global__ void warp_vs_barrier_kernel(int* out) {
  int v = threadIdx.x;
  if (threadIdx.x == 0) {
    __syncthreads();
  } else {
    v = __shfl_sync(0xffffffffu, v, 0);
  }
  out[threadIdx.x] = v;
}

// Bug: with the same mask, half the lanes call __ballot_sync and half __any_sync.
__global__ void different_collectives_kernel(int* out) {
  const int lane = threadIdx.x;
  out[lane] = lane % 2 ? static_cast<int>(__ballot_sync(0xffffffffu, 1)) : __any_sync(0xffffffffu, 1);
}

// Bug: lanes 0..15 use a half-warp mask, lanes 16..31 a full one: the full one never completes.
__global__ void mask_mismatch_kernel(int* out) {
  const int lane = threadIdx.x;
  const unsigned mask = lane < 16 ? 0x0000ffffu : 0xffffffffu;
  out[lane] = __shfl_sync(mask, lane, 0);
}

// Bug: only block 0 writes the static shared array; other blocks read what was there before.
template <int N>
__global__ void stale_static_shared_kernel(float* out) {
  __shared__ float s[N];
  if (blockIdx.x == 0) s[threadIdx.x] = 1.0f;
  __syncthreads();
  out[blockIdx.x * N + threadIdx.x] = s[threadIdx.x];
}

// Bug: a thread traps.
__global__ void trap_kernel(int* out) {
  if (threadIdx.x == 5) __trap();
  out[threadIdx.x] = 1;
}

}  // namespace scheduler
}  // namespace cnnfast_test
