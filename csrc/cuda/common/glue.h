// Shared pieces of the ATen glue of the CUDA kernels (csrc/cuda/<op>_ops.cpp; g++ only, thin
// headers: no torch/extension.h, no ATen/cuda/CUDAContext.h).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <optional>

#include "checks.h"
#include "cuda/common/launcher.h"

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

// A contiguous optional argument (an undefined tensor when it is absent) and its data (or null).
inline at::Tensor contiguous_if_given(const std::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t->contiguous() : at::Tensor();
}
inline const void* data_or_null(const at::Tensor& t) { return t.defined() ? t.const_data_ptr() : nullptr; }

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// Channels-last storage (NHWC) when torch suggests it for `t`.
inline bool is_nhwc(at::MemoryFormat f) { return f == at::MemoryFormat::ChannelsLast; }

// The pooling kernels index planes and pixels within a plane with 32-bit integers.
inline void check_pool_sizes(const char* op, int64_t N, int64_t C, int64_t H, int64_t W) {
  constexpr int64_t kMax = int64_t{1} << 31;
  TORCH_CHECK(N * C < kMax && H * W < kMax, op, ": the CUDA kernel needs N * C and H * W below 2^31, but got ",
              "N * C = ", N * C, " and H * W = ", H * W);
}

// Element offsets are 64-bit throughout; these products are held in 32 bits inside the conv2d
// kernels (or bound a grid dimension).
inline void check_conv_sizes(const char* op, const Conv2dProblem& p) {
  constexpr int64_t kMax = (int64_t{1} << 31) - 1;
  const int64_t RS = p.R * p.S;
  TORCH_CHECK(p.H * p.W <= kMax && p.P * p.Q <= kMax && p.C_per_group() * RS <= kMax &&
                  p.K_per_group() * RS <= kMax,
              op, ": the CUDA kernels need H*W, P*Q, C/groups*kH*kW and K/groups*kH*kW below 2^31");
  TORCH_CHECK(p.N * p.C <= kMax && p.N * p.K <= kMax, op, ": the CUDA kernels need N*C and N*K below 2^31");
  TORCH_CHECK(p.groups <= 65535, op, ": the CUDA kernels support at most 65535 groups, but got groups=", p.groups);
  constexpr int64_t kTileN = 64;  // the GEMM column tile of both engines (grid.y = ceil(columns / kTileN))
  const int64_t wgrad_tiles = (p.C_per_group() * RS + kTileN - 1) / kTileN;
  const int64_t fprop_tiles = (p.K_per_group() + kTileN - 1) / kTileN;
  TORCH_CHECK(wgrad_tiles <= 65535 && fprop_tiles <= 65535, op,
              ": the CUDA kernels need C/groups*kH*kW and K/groups below 65535*64");
}

}  // namespace cuda
}  // namespace cnnfast
