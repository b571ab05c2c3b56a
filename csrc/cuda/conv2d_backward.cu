// nvcc translation unit of the conv2d grad-input and grad-weight (split-K) implicit GEMMs, for
// float, half and bfloat16.
#include "conv2d_kernel.cuh"
#include "dispatch.cuh"

namespace cnnfast {
namespace cuda {

cudaError_t launch_conv2d_grad_input(Dtype t, const Conv2dProblem& p, bool nhwc, const void* dy,
                                     const void* relu_out, const void* w, void* dx, cudaStream_t stream) {
  with_type(t, [&](auto* tag) {
    using T = CNNFAST_TYPE_OF(tag);
    conv2d_grad_input(p, nhwc, static_cast<const T*>(dy), static_cast<const T*>(relu_out), static_cast<const T*>(w),
                      static_cast<T*>(dx), stream);
  });
  return cudaGetLastError();
}

int64_t conv2d_grad_weight_workspace(const Conv2dProblem& p) { return conv_wgrad_workspace(p); }

cudaError_t launch_conv2d_grad_weight(Dtype t, const Conv2dProblem& p, bool nhwc, const void* dy,
                                      const void* relu_out, const void* x, void* dw, float* workspace,
                                      cudaStream_t stream) {
  with_type(t, [&](auto* tag) {
    using T = CNNFAST_TYPE_OF(tag);
    conv2d_grad_weight(p, nhwc, static_cast<const T*>(dy), static_cast<const T*>(relu_out), static_cast<const T*>(x),
                       static_cast<T*>(dw), workspace, stream);
  });
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace cnnfast
