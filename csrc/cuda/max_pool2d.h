// Host launchers of the CUDA max_pool2d kernels (csrc/cuda/max_pool2d_kernel.cuh, compiled in
// max_pool2d.cu), NCHW or NHWC storage for every tensor of the call; the convention of
// csrc/cuda/common/launcher.h.
#pragma once

#include "common/launcher.h"

namespace cnnfast {
namespace cuda {

cudaError_t launch_max_pool2d_forward(Dtype t, const Pool2dProblem& p, bool nhwc, const void* x, void* y,
                                      int64_t* indices, cudaStream_t stream);
// gather: one thread per input element over its windows; otherwise one thread per plane scattering
// in output order, skipping windows with no input element. Both need every field of p.
cudaError_t launch_max_pool2d_backward(Dtype t, const Pool2dProblem& p, bool nhwc, bool gather, const void* dy,
                                       const int64_t* indices, void* dx, cudaStream_t stream);

}  // namespace cuda
}  // namespace cnnfast
