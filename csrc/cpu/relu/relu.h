// ReLU over spans of memory, framework-free: the kernels of relu (forward, backward) and the ReLU
// gradient mask of the fused ops (conv2d_relu, conv2d_relu_max_pool2d). SIMD paths for float on
// AVX-512 (relu_avx512.cpp) and AVX2 (relu_avx2.cpp), portable loops otherwise.
#pragma once

#include <cstdint>

#include "cpu/common/capability.h"

namespace cnnfast::cpu {

// Elements per thread's chunk of the parallel passes below (memory-bound: large chunks).
constexpr int64_t kReluGrain = 32768;

// y = relu(x) over n elements, split over threads (relu.cpp); x may equal y (in place).
template <typename T>
void relu_forward(const T* x, T* y, int64_t n, Capability cap);
// d = g where !(y <= 0), else 0, over n elements, split over threads: the gradient of a ReLU from its
// output y (of relu, and of the fused ops' ReLU).
template <typename T>
void relu_backward(const T* g, const T* y, T* d, int64_t n, Capability cap);

// Elementwise ReLU kernels of the same ISA files: y = clamp_min(x, 0) and d = (!(y <= 0) ? g : 0).
void relu_f32_avx512(const float* x, float* y, int64_t n);
void relu_f32_avx2(const float* x, float* y, int64_t n);
void relu_mask_f32_avx512(const float* g, const float* y, float* d, int64_t n);
void relu_mask_f32_avx2(const float* g, const float* y, float* d, int64_t n);

// ReLU forward over n elements: the SIMD path for float, else portable (clamp_min semantics).
inline void relu_span(Capability cap, const float* x, float* y, int64_t n) {
  if (cap == Capability::kAvx512) return relu_f32_avx512(x, y, n);
  if (cap == Capability::kAvx2) return relu_f32_avx2(x, y, n);
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}
inline void relu_span(Capability, const double* x, double* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.0 ? 0.0 : x[i];
}
// ReLU's gradient from its output: d = g where !(y <= 0) (positive or NaN, as torch's threshold_backward),
// else 0 (both loads unconditional: branch-free).
inline void relu_mask_span(Capability cap, const float* g, const float* y, float* d, int64_t n) {
  if (cap == Capability::kAvx512) return relu_mask_f32_avx512(g, y, d, n);
  if (cap == Capability::kAvx2) return relu_mask_f32_avx2(g, y, d, n);
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    d[i] = !(y[i] <= 0.0f) ? gi : 0.0f;
  }
}
inline void relu_mask_span(Capability, const double* g, const double* y, double* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double gi = g[i];
    d[i] = !(y[i] <= 0.0) ? gi : 0.0;
  }
}

}  // namespace cnnfast::cpu
