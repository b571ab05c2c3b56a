// The one launch convention of cnnfast's CUDA kernels, shared by the CUDA build (nvcc) and the
// CPU harness (g++ with csrc/cuda_on_cpu/cuda_on_cpu.h). Framework-free: no torch, ATen or c10.
//
// A kernel's .cuh holds the device code and one host function that computes its launch
// configuration (grid, block, dynamic shared memory) from the problem; every launch goes through
// CNNFAST_LAUNCH with that configuration, so both builds launch the same way:
//
//   inline cnnfast::cuda::LaunchConfig scale_config(int n) {
//     return {dim3(cnnfast::cuda::ceil_div(n, 256)), dim3(256), 0};
//   }
//   template <class Stream> void scale(float* y, const float* x, int n, Stream stream) {
//     CNNFAST_LAUNCH(scale_config(n), stream, scale_kernel)(y, x, n);
//   }
//
// Under nvcc: scale_kernel<<<grid, block, shared_bytes, stream>>>(y, x, n) (check errors with
// cudaGetLastError as usual). On the CPU: the same grid runs in the harness, which throws
// cuda_on_cpu::KernelError on misuse. Dynamic shared memory is declared in the kernel with
// CNNFAST_DYNAMIC_SHARED(T, name), which gives `T* name` (16-byte aligned) in both builds.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#else
#include "../../cuda_on_cpu/cuda_on_cpu.h"
#endif

namespace cnnfast {
namespace cuda {

struct LaunchConfig {
  dim3 grid;
  dim3 block;
  size_t shared_bytes = 0;
};

#if defined(__CUDACC__)
__host__ __device__
#endif
inline unsigned ceil_div(int64_t a, int64_t b) {
  return static_cast<unsigned>((a + b - 1) / b);
}

}  // namespace cuda
}  // namespace cnnfast

#if defined(__CUDACC__)
#define CNNFAST_LAUNCH(config, stream, ...) \
  __VA_ARGS__<<<(config).grid, (config).block, (config).shared_bytes, (stream)>>>
#define CNNFAST_DYNAMIC_SHARED(T, name)                                   \
  extern __shared__ __align__(16) unsigned char cnnfast_dynamic_shared_[]; \
  T* name = reinterpret_cast<T*>(cnnfast_dynamic_shared_)
#else
#define CNNFAST_LAUNCH(config, stream, ...)                                                 \
  ::cuda_on_cpu::make_launch(#__VA_ARGS__, __FILE__, __LINE__, (config).grid, (config).block, \
                             ((void)(stream), (config).shared_bytes), __VA_ARGS__)
#define CNNFAST_DYNAMIC_SHARED(T, name) CUDA_ON_CPU_DYNAMIC_SHARED(T, name)
#endif
