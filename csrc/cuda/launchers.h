// The host entry points of cnnfast's CUDA kernels, compiled by nvcc (csrc/cuda/*.cu) and called
// by the ATen glue (csrc/cuda/*_glue.cpp). Framework-free: raw pointers, sizes, problem structs
// and a stream. Every function launches on `stream` and returns cudaGetLastError() after its
// launches; sizes are nonzero (the glue returns early on empty tensors).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "problem.h"

namespace cnnfast {
namespace cuda {

// Storage type of the tensors of one call.
enum class Dtype : int { f32 = 0, f16 = 1, bf16 = 2 };

// ---- relu (dense storage of n elements) -------------------------------------------------------
cudaError_t launch_relu(Dtype t, const void* x, void* y, int64_t n, cudaStream_t stream);
cudaError_t launch_relu_backward(Dtype t, const void* dy, const void* y, void* dx, int64_t n,
                                 cudaStream_t stream);

// ---- max_pool2d (NCHW or NHWC storage for every tensor of the call) ---------------------------
cudaError_t launch_max_pool2d_forward(Dtype t, const Pool2dProblem& p, bool nhwc, const void* x, void* y,
                                      int64_t* indices, cudaStream_t stream);
// gather: one thread per input element over its windows (needs every field of p); otherwise one
// thread per plane scattering in output order (needs only the sizes N, C, H, W, P, Q).
cudaError_t launch_max_pool2d_backward(Dtype t, const Pool2dProblem& p, bool nhwc, bool gather, const void* dy,
                                       const int64_t* indices, void* dx, cudaStream_t stream);

// ---- conv2d (implicit GEMM; every tensor NCHW, or every tensor NHWC with the weight as K R S C/G) --
// y = conv2d(x, w) + bias (bias may be null), then ReLU when relu. float16/bfloat16 on tensor cores;
// float on tensor cores as TF32 when allow_tf32, else FFMA (the same for the backward passes).
cudaError_t launch_conv2d_forward(Dtype t, const Conv2dProblem& p, bool nhwc, const void* x, const void* w,
                                  const void* bias, bool relu, bool allow_tf32, void* y, cudaStream_t stream);
// relu_out (may be null): the output of conv2d_relu; grad_output counts only where it is > 0.
// allow_tf32: as for the forward (float on tensor cores as TF32, else FFMA).
cudaError_t launch_conv2d_grad_input(Dtype t, const Conv2dProblem& p, bool nhwc, const void* dy,
                                     const void* relu_out, const void* w, bool allow_tf32, void* dx,
                                     cudaStream_t stream);
// Float elements of the scratch buffer launch_conv2d_grad_weight needs (split-K partials).
int64_t conv2d_grad_weight_workspace(const Conv2dProblem& p);
cudaError_t launch_conv2d_grad_weight(Dtype t, const Conv2dProblem& p, bool nhwc, const void* dy,
                                      const void* relu_out, const void* x, bool allow_tf32, void* dw,
                                      float* workspace, cudaStream_t stream);
// Float elements of the scratch buffer launch_conv2d_grad_bias needs.
int64_t conv2d_grad_bias_workspace(const Conv2dProblem& p);
cudaError_t launch_conv2d_grad_bias(Dtype t, const Conv2dProblem& p, bool nhwc, const void* dy,
                                    const void* relu_out, void* db, float* workspace, cudaStream_t stream);

}  // namespace cuda
}  // namespace cnnfast
