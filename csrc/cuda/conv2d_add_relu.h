// Host launchers of cnnfast::conv2d_add_relu's CUDA kernels (compiled in conv2d_add_relu.cu): every
// tensor NCHW, or every tensor NHWC with the weight as K R S C/G; the convention of
// csrc/cuda/common/launcher.h.
#pragma once

#include "common/launcher.h"

namespace cnnfast {
namespace cuda {

// y = relu(conv2d(x, w) + bias + residual), bias may be null, residual in y's storage order.
// allow_tf32 as for launch_conv2d_forward.
cudaError_t launch_conv2d_add_relu_forward(Dtype t, const Conv2dProblem& p, bool nhwc, const void* x,
                                           const void* w, const void* bias, const void* residual,
                                           bool allow_tf32, void* y, void* workspace,
                                           cudaStream_t stream);

}  // namespace cuda
}  // namespace cnnfast
