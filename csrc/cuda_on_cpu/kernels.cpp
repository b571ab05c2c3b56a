// cnnfast's CUDA kernels on the CPU: C entry points taking raw pointers and sizes, built with
// g++ and the harness into a plain shared library by cnnfast/_cuda_on_cpu.py (load_kernels) and
// called from the tests with CPU tensors. No torch header; not part of the main extension.
//
// Each CUDA kernel header csrc/cuda/<op>_kernel.cuh adds its launcher here, e.g.
//   #include "cuda/relu_kernel.cuh"
//   extern "C" int coc_relu(const float* x, float* y, long long n) {
//     return cuda_on_cpu::c_api::guarded([&] { cnnfast::cuda::relu(x, y, n, nullptr); });
//   }
#include "c_api.h"
