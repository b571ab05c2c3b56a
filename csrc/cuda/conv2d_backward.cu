// nvcc translation unit of the conv2d grad-input and grad-weight (split-K) implicit GEMMs, for
// float (FFMA, or TF32 tensor cores), half and bfloat16 (tensor cores), and their depthwise kernels.
#include "common/dispatch.cuh"
#include "conv2d.h"
#include "conv2d_wmma_kernel.cuh"

namespace cnnfast {
namespace cuda {

cudaError_t launch_conv2d_grad_input(Dtype t, const Conv2dProblem& p, bool nhwc, const void* dy,
                                     const void* relu_out, const void* w, bool allow_tf32, void* dx,
                                     cudaStream_t stream) {
  with_type(t, [&](auto* tag) {
    using T = CNNFAST_TYPE_OF(tag);
    conv2d_grad_input(p, nhwc, static_cast<const T*>(dy), static_cast<const T*>(relu_out), static_cast<const T*>(w),
                      allow_tf32, static_cast<T*>(dx), stream);
  });
  return cudaGetLastError();
}

int64_t conv2d_grad_weight_workspace(const Conv2dProblem& p) { return conv_wgrad_workspace(p); }

cudaError_t launch_conv2d_grad_weight(Dtype t, const Conv2dProblem& p, bool nhwc, const void* dy,
                                      const void* relu_out, const void* x, bool allow_tf32, void* dw,
                                      float* workspace, cudaStream_t stream) {
  with_type(t, [&](auto* tag) {
    using T = CNNFAST_TYPE_OF(tag);
    conv2d_grad_weight(p, nhwc, static_cast<const T*>(dy), static_cast<const T*>(relu_out), static_cast<const T*>(x),
                       allow_tf32, static_cast<T*>(dw), workspace, stream);
  });
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace cnnfast
