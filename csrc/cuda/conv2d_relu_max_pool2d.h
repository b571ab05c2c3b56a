// Host launchers of cnnfast::conv2d_relu_max_pool2d on CUDA (compiled in conv2d_relu_max_pool2d.cu);
// the convention of csrc/cuda/common/launcher.h. Every tensor of a call is in one storage order
// (NCHW, or NHWC with the weight as K R S C/G). p is the convolution, q the pooling of its output.
#pragma once

#include "common/launcher.h"

namespace cnnfast {
namespace cuda {

// conv = relu(conv2d(x, w) + bias) (bias may be null) into `conv`, a scratch buffer of
// p.output_numel() elements of the storage type; then y, indices = max_pool2d(conv). allow_tf32: as
// for launch_conv2d_forward.
cudaError_t launch_conv2d_relu_max_pool2d_forward(Dtype t, const Conv2dProblem& p, const Pool2dProblem& q,
                                                  bool nhwc, const void* x, const void* w, const void* bias,
                                                  bool allow_tf32, void* conv, void* y, int64_t* indices,
                                                  void* workspace,
                                                  cudaStream_t stream);
// The backward as far as the convolution's output: grad_conv = the pooling's gather of dy masked
// where the pooled output y is not > 0. `masked` is a scratch buffer of q.output_numel() elements of
// the storage type; the convolution's own backward (launch_conv2d_grad_*) takes grad_conv from there.
cudaError_t launch_conv2d_relu_max_pool2d_grad_conv_output(Dtype t, const Pool2dProblem& q, bool nhwc,
                                                           const void* dy, const void* y,
                                                           const int64_t* indices, void* masked,
                                                           void* grad_conv, cudaStream_t stream);

}  // namespace cuda
}  // namespace cnnfast
