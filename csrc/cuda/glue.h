// Shared pieces of the ATen glue of the CUDA kernels (g++ only, thin headers: no
// torch/extension.h, no ATen/cuda/CUDAContext.h).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "checks.h"
#include "cuda/launchers.h"

namespace cnnfast {
namespace cuda {

inline Dtype dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return Dtype::f32;
    case at::kHalf: return Dtype::f16;
    case at::kBFloat16: return Dtype::bf16;
    default: TORCH_CHECK(false, "cnnfast: no CUDA kernel for dtype ", t.scalar_type());
  }
}

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// Channels-last storage (NHWC) when torch suggests it for `t`.
inline bool is_nhwc(at::MemoryFormat f) { return f == at::MemoryFormat::ChannelsLast; }

// The pooling kernels index planes and pixels within a plane with 32-bit integers.
inline void check_pool_sizes(const char* op, int64_t N, int64_t C, int64_t H, int64_t W) {
  constexpr int64_t kMax = int64_t{1} << 31;
  TORCH_CHECK(N * C < kMax && H * W < kMax, op, ": the CUDA kernel needs N * C and H * W below 2^31, but got ",
              "N * C = ", N * C, " and H * W = ", H * W);
}

}  // namespace cuda
}  // namespace cnnfast
