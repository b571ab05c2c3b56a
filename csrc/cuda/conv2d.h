// Host launchers of the CUDA conv2d kernels (implicit GEMM, csrc/cuda/conv2d_kernel.cuh,
// conv2d_wmma_kernel.cuh, conv2d_depthwise_kernel.cuh; compiled in conv2d_forward.cu and
// conv2d_backward.cu): every tensor NCHW, or every tensor NHWC with the weight as K R S C/G; the
// convention of csrc/cuda/common/launcher.h.
#pragma once

#include "common/launcher.h"

namespace cnnfast {
namespace cuda {

// Bytes of the scratch buffer launch_conv2d_forward needs (0 or more; 16-byte aligned).
int64_t conv2d_forward_workspace(Dtype t, const Conv2dProblem& p, bool nhwc, bool allow_tf32);
// y = conv2d(x, w) + bias (bias may be null), then ReLU when relu. float16/bfloat16 on tensor cores;
// float on tensor cores as TF32 when allow_tf32, else FFMA (the same for the backward passes).
cudaError_t launch_conv2d_forward(Dtype t, const Conv2dProblem& p, bool nhwc, const void* x, const void* w,
                                  const void* bias, bool relu, bool allow_tf32, void* y, void* workspace,
                                  cudaStream_t stream);
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
