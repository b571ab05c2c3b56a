// nvcc translation unit of the conv2d forward (implicit GEMM with the bias + ReLU epilogue: FFMA for
// float, WMMA tensor cores for half, bfloat16 and TF32) and of grad-bias, for float, half and bfloat16.
#include "common/dispatch.cuh"
#include "conv2d.h"
#include "conv2d_wmma_kernel.cuh"

namespace cnnfast {
namespace cuda {

cudaError_t launch_conv2d_forward(Dtype t, const Conv2dProblem& p, bool nhwc, const void* x, const void* w,
                                  const void* bias, bool relu, bool allow_tf32, void* y, cudaStream_t stream) {
  with_type(t, [&](auto* tag) {
    using T = CNNFAST_TYPE_OF(tag);
    conv2d_forward(p, nhwc, static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias), relu,
                   allow_tf32, static_cast<T*>(y), stream);
  });
  return cudaGetLastError();
}

int64_t conv2d_grad_bias_workspace(const Conv2dProblem& p) { return pixel_splits(p) * p.K; }

cudaError_t launch_conv2d_grad_bias(Dtype t, const Conv2dProblem& p, bool nhwc, const void* dy,
                                    const void* relu_out, void* db, float* workspace, cudaStream_t stream) {
  with_type(t, [&](auto* tag) {
    using T = CNNFAST_TYPE_OF(tag);
    conv2d_grad_bias(p, nhwc, static_cast<const T*>(dy), static_cast<const T*>(relu_out), static_cast<T*>(db),
                     workspace, stream);
  });
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace cnnfast
