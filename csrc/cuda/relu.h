// Host launchers of the CUDA relu kernels (csrc/cuda/relu_kernel.cuh, compiled in relu.cu), on dense
// storage of n elements in any layout; the convention of csrc/cuda/common/launcher.h.
#pragma once

#include "common/launcher.h"

namespace cnnfast {
namespace cuda {

// y = relu(x); y may be x (in place).
cudaError_t launch_relu(Dtype t, const void* x, void* y, int64_t n, cudaStream_t stream);
// dx = dy where y is not <= 0, else 0.
cudaError_t launch_relu_backward(Dtype t, const void* dy, const void* y, void* dx, int64_t n,
                                 cudaStream_t stream);

}  // namespace cuda
}  // namespace cnnfast
