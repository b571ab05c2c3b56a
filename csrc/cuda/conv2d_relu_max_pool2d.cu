// nvcc translation unit of cnnfast::conv2d_relu_max_pool2d's launchers (conv2d_relu_max_pool2d.h). The
// op composes the other ops' launches on scratch buffers the glue allocates: the conv2d kernels with
// their bias + ReLU epilogue write the convolution's output, which the max_pool2d kernels then pool
// (there is no pooling epilogue inside the convolution kernels yet). The backward, as on the CPU,
// starts from the pooled output and its indices: the relu_backward kernel masks the pooled gradient,
// the max_pool2d backward gathers it into the convolution's output gradient.
#include "conv2d.h"
#include "conv2d_relu_max_pool2d.h"
#include "max_pool2d.h"
#include "relu.h"

namespace cnnfast {
namespace cuda {

cudaError_t launch_conv2d_relu_max_pool2d_forward(Dtype t, const Conv2dProblem& p, const Pool2dProblem& q,
                                                  bool nhwc, const void* x, const void* w, const void* bias,
                                                  bool allow_tf32, void* conv, void* y, int64_t* indices,
                                                  void* workspace,
                                                  cudaStream_t stream) {
  const cudaError_t e =
      launch_conv2d_forward(t, p, nhwc, x, w, bias, /*relu=*/true, allow_tf32, conv, workspace, stream);
  if (e != cudaSuccess) return e;
  return launch_max_pool2d_forward(t, q, nhwc, conv, y, indices, stream);
}

cudaError_t launch_conv2d_relu_max_pool2d_grad_conv_output(Dtype t, const Pool2dProblem& q, bool nhwc,
                                                           const void* dy, const void* y,
                                                           const int64_t* indices, void* masked,
                                                           void* grad_conv, cudaStream_t stream) {
  const cudaError_t e = launch_relu_backward(t, dy, y, masked, q.output_numel(), stream);
  if (e != cudaSuccess) return e;
  return launch_max_pool2d_backward(t, q, nhwc, /*gather=*/true, masked, indices, grad_conv, stream);
}

}  // namespace cuda
}  // namespace cnnfast
