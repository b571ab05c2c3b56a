// ReLU forward (also in place: y == x) and backward on dense storage, any layout.
// Vector path: each thread moves 16 bytes per step (4 floats or 8 halves) with one 128-bit load
// per operand, grid-stride with 64-bit indices; the last n % (16 / sizeof(T)) elements are a
// scalar tail. The host picks the vector path when every pointer is 16-byte aligned.
// relu(NaN) = NaN as torch; backward: dx = dy where !(y <= 0) (positive or NaN, as torch's
// threshold_backward), else 0.
#pragma once

#include "common/kernel_utils.cuh"

namespace cnnfast {
namespace cuda {

constexpr int kEltwiseThreads = 256;
constexpr int64_t kEltwiseMaxBlocks = 4096;

CNNFAST_DEVICE float relu_f(float v) { return v < 0.0f ? 0.0f : v; }

template <class T>
__global__ void __launch_bounds__(kEltwiseThreads) relu_kernel(const T* x, T* y, int64_t n, bool vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (vec) {
    constexpr int V = Vec16<T>::kSize;
    const int64_t nv = n / V;
    for (int64_t i = tid; i < nv; i += stride) {
      Vec16<T> v = load16(x + i * V);
#pragma unroll
      for (int j = 0; j < V; ++j) v.v[j] = from_float<T>(relu_f(to_float(v.v[j])));
      store16(y + i * V, v);
    }
    done = nv * V;
  }
  for (int64_t i = done + tid; i < n; i += stride) y[i] = from_float<T>(relu_f(to_float(x[i])));
}

template <class T>
__global__ void __launch_bounds__(kEltwiseThreads)
    relu_backward_kernel(const T* dy, const T* y, T* dx, int64_t n, bool vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (vec) {
    constexpr int V = Vec16<T>::kSize;
    const int64_t nv = n / V;
    for (int64_t i = tid; i < nv; i += stride) {
      const Vec16<T> g = load16(dy + i * V);
      const Vec16<T> o = load16(y + i * V);
      Vec16<T> d;
#pragma unroll
      for (int j = 0; j < V; ++j) d.v[j] = from_float<T>(relu_passes(to_float(g.v[j]), to_float(o.v[j])));
      store16(dx + i * V, d);
    }
    done = nv * V;
  }
  for (int64_t i = done + tid; i < n; i += stride)
    dx[i] = from_float<T>(relu_passes(to_float(dy[i]), to_float(y[i])));
}

template <class T>
inline LaunchConfig relu_config(int64_t n) {
  const int64_t units = (n + Vec16<T>::kSize - 1) / Vec16<T>::kSize;
  int64_t blocks = (units + kEltwiseThreads - 1) / kEltwiseThreads;
  if (blocks > kEltwiseMaxBlocks) blocks = kEltwiseMaxBlocks;
  if (blocks < 1) blocks = 1;
  return {dim3(static_cast<unsigned>(blocks)), dim3(kEltwiseThreads), 0};
}

// y = relu(x); y may be x. n > 0.
template <class T, class Stream>
void relu(const T* x, T* y, int64_t n, Stream stream) {
  const bool vec = aligned_to(x, 16) && aligned_to(y, 16);
  CNNFAST_LAUNCH(relu_config<T>(n), stream, relu_kernel<T>)(x, y, n, vec);
}

// dx = !(y <= 0) ? dy : 0. n > 0.
template <class T, class Stream>
void relu_backward(const T* dy, const T* y, T* dx, int64_t n, Stream stream) {
  const bool vec = aligned_to(dy, 16) && aligned_to(y, 16) && aligned_to(dx, 16);
  CNNFAST_LAUNCH(relu_config<T>(n), stream, relu_backward_kernel<T>)(dy, y, dx, n, vec);
}

}  // namespace cuda
}  // namespace cnnfast
