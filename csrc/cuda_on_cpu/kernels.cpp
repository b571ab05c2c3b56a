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

#include "cuda/conv2d_mma_kernel.cuh"

extern "C" {

// The tensor-core forward's tile choice for an M x K output on sm_count SMs (cnnfast bench
// --predict): the tile id, its BM and BN, the CTAs and the CTAs resident per wave.
__attribute__((visibility("default"))) int coc_conv2d_mma_choice(long long M, long long K, int sm_count, int* bm,
                                                                 int* bn, long long* ctas, long long* slots) {
  const cnnfast::cuda::MmaChoice c = cnnfast::cuda::mma_forward_choice(M, K, sm_count);
  const cnnfast::cuda::MmaTileShape& t = cnnfast::cuda::kMmaTileShapes[c.tile];
  *bm = t.bm;
  *bn = t.bn;
  *ctas = c.ctas;
  *slots = static_cast<long long>(sm_count) * cnnfast::cuda::mma_resident_ctas(t);
  return c.tile;
}

}  // extern "C"
