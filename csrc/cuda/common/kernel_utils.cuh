// Small device helpers shared by cnnfast's CUDA kernels: float conversion of the storage types
// (float, __half, __nv_bfloat16) and 16-byte vector loads and stores. Framework-free: builds under
// nvcc and under g++ with the CPU harness (csrc/cuda/common/launch.cuh picks which).
#pragma once

#include <cstdint>
#include <cstring>

#include "launch.cuh"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#define CNNFAST_DEVICE __device__ __forceinline__
#else
#define CNNFAST_DEVICE inline
#endif

namespace cnnfast {
namespace cuda {

// Storage type <-> float (all arithmetic is done in float).
CNNFAST_DEVICE float to_float(float v) { return v; }
CNNFAST_DEVICE float to_float(__half v) { return __half2float(v); }
CNNFAST_DEVICE float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
CNNFAST_DEVICE T from_float(float v);
template <>
CNNFAST_DEVICE float from_float<float>(float v) { return v; }
template <>
CNNFAST_DEVICE __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
CNNFAST_DEVICE __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// A NaN test that survives nvcc's and g++'s fast paths alike.
CNNFAST_DEVICE bool is_nan(float v) { return v != v; }

// 16 bytes of T: 4 floats or 8 halves, moved with one 128-bit load or store.
template <class T>
struct alignas(16) Vec16 {
  static constexpr int kSize = 16 / sizeof(T);
  T v[kSize];
};

template <class T>
CNNFAST_DEVICE Vec16<T> load16(const T* p) {
  Vec16<T> r;
#if defined(__CUDACC__)
  const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
  memcpy(&r, &u, 16);
#else
  std::memcpy(&r, p, 16);
#endif
  return r;
}

template <class T>
CNNFAST_DEVICE void store16(T* p, const Vec16<T>& r) {
#if defined(__CUDACC__)
  uint4 u;
  memcpy(&u, &r, 16);
  *reinterpret_cast<uint4*>(p) = u;
#else
  std::memcpy(p, &r, 16);
#endif
}

// 4 consecutive elements of T (16 bytes of float, 8 bytes of a half type), one load.
template <class T>
CNNFAST_DEVICE void load4(const T* p, float out[4]) {
  if constexpr (sizeof(T) == 4) {
#if defined(__CUDACC__)
    const float4 u = __ldg(reinterpret_cast<const float4*>(p));
#else
    float4 u;
    std::memcpy(&u, p, 16);
#endif
    out[0] = u.x; out[1] = u.y; out[2] = u.z; out[3] = u.w;
  } else {
    T h[4];
#if defined(__CUDACC__)
    const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
    memcpy(h, &u, 8);
#else
    std::memcpy(h, p, 8);
#endif
#pragma unroll
    for (int i = 0; i < 4; ++i) out[i] = to_float(h[i]);
  }
}

// Linear index i of an [N, C, A, B] tensor in NCHW or NHWC storage -> (n, c, a, b): one 64-bit
// division, the rest in 32 bits (the host checks N * C, A * B and C are below 2^31).
template <bool NHWC>
CNNFAST_DEVICE void split_index(int64_t i, int64_t C, int64_t A, int64_t B, int64_t& n, int& c, int& a, int& b) {
  int ab;
  if (NHWC) {
    const int64_t pixel = i / C;  // n * A * B + ab
    c = static_cast<int>(i - pixel * C);
    const int64_t AB = A * B;
    n = pixel / AB;
    ab = static_cast<int>(pixel - n * AB);
  } else {
    const int AB = static_cast<int>(A * B);
    const int64_t plane = i / AB;  // n * C + c, below 2^31
    ab = static_cast<int>(i - plane * AB);
    const int pl = static_cast<int>(plane), Ci = static_cast<int>(C);
    n = pl / Ci;
    c = pl - static_cast<int>(n) * Ci;
  }
  a = ab / static_cast<int>(B);
  b = ab - a * static_cast<int>(B);
}

// grad_output element i, counted only where the ReLU output (when given) is not <= 0 (positive or NaN,
// as torch's threshold_backward).
CNNFAST_DEVICE float relu_passes(float g, float y) { return !(y <= 0.0f) ? g : 0.0f; }
template <class T>
CNNFAST_DEVICE float masked(const T* dy, const T* mask, int64_t i) {
  const float g = to_float(dy[i]);
  return mask == nullptr ? g : relu_passes(g, to_float(mask[i]));
}
// The same for elements i .. i + 3 (one aligned 4-element load each: load4's conditions).
template <class T>
CNNFAST_DEVICE void masked4(const T* dy, const T* mask, int64_t i, float v[4]) {
  load4(dy + i, v);
  if (mask == nullptr) return;
  float mv[4];
  load4(mask + i, mv);
#pragma unroll
  for (int j = 0; j < 4; ++j) v[j] = relu_passes(v[j], mv[j]);
}

// out[i] = sum over s of partial[s * n + i], s in increasing order (deterministic split-K).
constexpr int kSplitkThreads = 256;
constexpr unsigned kSplitkMaxBlocks = 4096;

template <class T>
__global__ void __launch_bounds__(kSplitkThreads)
    splitk_reduce_kernel(const float* partial, int splits, int64_t n, T* out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float s = 0.0f;
    for (int k = 0; k < splits; ++k) s += partial[k * n + i];
    out[i] = from_float<T>(s);
  }
}

template <class T, class Stream>
void splitk_reduce(const float* partial, int splits, int64_t n, T* out, Stream stream) {
  const unsigned wanted = ceil_div(n, kSplitkThreads);
  const unsigned blocks = wanted < kSplitkMaxBlocks ? wanted : kSplitkMaxBlocks;
  CNNFAST_LAUNCH((LaunchConfig{dim3(blocks), dim3(kSplitkThreads), 0}), stream, splitk_reduce_kernel<T>)(
      partial, splits, n, out);
}

// Whether a pointer is aligned to `bytes` (host side, to choose the vector path).
inline bool aligned_to(const void* p, int bytes) {
  return (reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes)) == 0;
}

}  // namespace cuda
}  // namespace cnnfast
