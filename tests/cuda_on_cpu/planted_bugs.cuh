// Planted-bug kernels: each carries one bug a GPU would show, which the harness must catch.
// Device code and launch configuration only: no torch header; nvcc compiles them too.
#pragma once

#include "../../csrc/cuda/common/launch.cuh"

namespace cnnfast_test {
namespace planted {

using cnnfast::cuda::ceil_div;
using cnnfast::cuda::LaunchConfig;

inline LaunchConfig one_dim(int n, int threads, size_t shared = 0) {
  return {dim3(ceil_div(n, threads)), dim3(threads), shared};
}

// Bug: no barrier between the shared write and the read of another thread's element.
// Caught by: different results under different thread orders.
__global__ void missing_barrier_kernel(const float* __restrict__ x, float* __restrict__ y, int n) {
  __shared__ float s[256];
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const int t = threadIdx.x;
  s[t] = i < n ? x[i] : 0.0f;
  // __syncthreads() belongs here
  if (i < n) y[i] = s[blockDim.x - 1 - t];  // reverses each block's chunk
}

// Bug: odd and even threads wait at different __syncthreads.
__global__ void divergent_barrier_kernel(float* __restrict__ y) {
  __shared__ float s[64];
  const int t = threadIdx.x;
  if (t % 2) {
    s[t] = 1.0f;
    __syncthreads();
  } else {
    s[t] = 2.0f;
    __syncthreads();
  }
  y[t] = s[blockDim.x - 1 - t];
}

// Bug: threads past n return early while the others wait at the barrier.
__global__ void exit_before_barrier_kernel(const float* __restrict__ x, float* __restrict__ y, int n) {
  __shared__ float s[128];
  const int t = threadIdx.x;
  if (t >= n) return;
  s[t] = x[t];
  __syncthreads();
  y[t] = s[n - 1 - t];
}

// Bug: a half-warp mask in a reduction all 32 lanes execute.
__global__ void wrong_mask_shuffle_kernel(const float* __restrict__ x, float* __restrict__ y) {
  float v = x[blockIdx.x * blockDim.x + threadIdx.x];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0x0000ffffu, v, offset);
  if (threadIdx.x % 32 == 0) y[(blockIdx.x * blockDim.x + threadIdx.x) / 32] = v;
}

// Bug: the last lane skips a full-mask shuffle (it is named in the mask but never arrives).
__global__ void missing_lane_shuffle_kernel(const float* __restrict__ x, float* __restrict__ y) {
  const int lane = threadIdx.x % 32;
  float v = x[threadIdx.x];
  if (lane < 31) v += __shfl_down_sync(0xffffffffu, v, 1);
  y[threadIdx.x] = v;
}

// Bug: every thread writes s[t + 1]: the last one writes past the end of dynamic shared memory.
__global__ void shared_oob_write_kernel(const float* __restrict__ x, float* __restrict__ y, int n) {
  CNNFAST_DYNAMIC_SHARED(float, s);
  const int t = threadIdx.x;
  const int i = blockIdx.x * blockDim.x + t;
  s[t + 1] = i < n ? x[i] : 0.0f;
  __syncthreads();
  if (i < n) y[i] = s[t];
}

// Bug: reads x[i + 1] for every i < n: the last thread reads one element past the input.
__global__ void global_oob_read_kernel(const float* __restrict__ x, float* __restrict__ y, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i + 1];
}

// Bug: block b reads what block b - 1 writes in the same launch (no order between blocks).
// Caught by: different results under different block orders.
__global__ void inter_block_race_kernel(const float* __restrict__ x, float* __restrict__ y, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float left = blockIdx.x > 0 && threadIdx.x == 0 ? y[i - 1] : 0.0f;
  y[i] = x[i] + left;
}

template <class Stream>
void inter_block_race(const float* x, float* y, int n, Stream s) {
  CNNFAST_LAUNCH(one_dim(n, 64), s, inter_block_race_kernel)(x, y, n);
}

template <class Stream>
void missing_barrier(const float* x, float* y, int n, Stream s) {
  CNNFAST_LAUNCH(one_dim(n, 256), s, missing_barrier_kernel)(x, y, n);
}
template <class Stream>
void divergent_barrier(float* y, int threads, Stream s) {
  CNNFAST_LAUNCH(one_dim(threads, threads), s, divergent_barrier_kernel)(y);
}
template <class Stream>
void exit_before_barrier(const float* x, float* y, int n, int threads, Stream s) {
  CNNFAST_LAUNCH(one_dim(threads, threads), s, exit_before_barrier_kernel)(x, y, n);
}
template <class Stream>
void wrong_mask_shuffle(const float* x, float* y, int n, Stream s) {
  CNNFAST_LAUNCH(one_dim(n, 64), s, wrong_mask_shuffle_kernel)(x, y);
}
template <class Stream>
void missing_lane_shuffle(const float* x, float* y, Stream s) {
  CNNFAST_LAUNCH(one_dim(32, 32), s, missing_lane_shuffle_kernel)(x, y);
}
template <class Stream>
void shared_oob_write(const float* x, float* y, int n, int threads, Stream s) {
  CNNFAST_LAUNCH(one_dim(n, threads, size_t(threads) * sizeof(float)), s, shared_oob_write_kernel)(x, y, n);
}
template <class Stream>
void global_oob_read(const float* x, float* y, int n, Stream s) {
  CNNFAST_LAUNCH(one_dim(n, 64), s, global_oob_read_kernel)(x, y, n);
}

}  // namespace planted
}  // namespace cnnfast_test
