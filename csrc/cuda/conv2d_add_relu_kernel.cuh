// conv2d_add_relu's tail on dense storage: y = relu(y + residual) in place, y the convolution's output
// (bias added) and residual in the same storage order. The arithmetic and the store are the conv
// epilogue's (common/epilogue.cuh), in float on the stored values, so the bits are those of torch's
// separate add and ReLU on the rounded convolution output. Vector path as relu_kernel.cuh's: 16 bytes
// per operand and step, grid-stride with 64-bit indices, a scalar tail; taken when both pointers are
// 16-byte aligned.
#pragma once

#include "common/epilogue.cuh"
#include "common/kernel_utils.cuh"
#include "relu_kernel.cuh"

namespace cnnfast {
namespace cuda {

template <class T>
__global__ void __launch_bounds__(kEltwiseThreads) add_relu_kernel(const T* residual, T* y, int64_t n, bool vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const BiasReluEpilogue<T> epilogue{nullptr, true};
  int64_t done = 0;
  if (vec) {
    constexpr int V = Vec16<T>::kSize;
    const int64_t nv = n / V;
    for (int64_t i = tid; i < nv; i += stride) {
      Vec16<T> v = load16(y + i * V);
      const Vec16<T> r = load16(residual + i * V);
#pragma unroll
      for (int j = 0; j < V; ++j) v.v[j] = from_float<T>(epilogue.apply(to_float(v.v[j]) + to_float(r.v[j]), 0));
      store16(y + i * V, v);
    }
    done = nv * V;
  }
  for (int64_t i = done + tid; i < n; i += stride) epilogue.store(y, i, to_float(y[i]) + to_float(residual[i]), 0);
}

// y = relu(y + residual) over n > 0 elements.
template <class T, class Stream>
void add_relu(const T* residual, T* y, int64_t n, Stream stream) {
  const bool vec = aligned_to(residual, 16) && aligned_to(y, 16);
  CNNFAST_LAUNCH(relu_config<T>(n), stream, add_relu_kernel<T>)(residual, y, n, vec);
}

}  // namespace cuda
}  // namespace cnnfast
