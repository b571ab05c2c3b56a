// nvcc translation unit of cnnfast::conv2d_add_relu's launcher (conv2d_add_relu.h). The op composes the
// conv2d kernels (bias in their epilogue, no ReLU) with one elementwise pass that adds the residual
// and applies the ReLU (conv2d_add_relu_kernel.cuh); the conv epilogue has no residual operand yet.
// The backward needs no kernel of its own: the relu_backward kernel masks grad_output (the residual's
// gradient) and conv2d's backward kernels take the same mask.
#include "common/dispatch.cuh"
#include "conv2d.h"
#include "conv2d_add_relu.h"
#include "conv2d_add_relu_kernel.cuh"

namespace cnnfast {
namespace cuda {

cudaError_t launch_conv2d_add_relu_forward(Dtype t, const Conv2dProblem& p, bool nhwc, const void* x,
                                           const void* w, const void* bias, const void* residual,
                                           bool allow_tf32, void* y, void* workspace,
                                           cudaStream_t stream) {
  const cudaError_t e = launch_conv2d_forward(t, p, nhwc, x, w, bias, /*relu=*/false, allow_tf32, y, workspace, stream);
  if (e != cudaSuccess) return e;
  with_type(t, [&](auto* tag) {
    using T = CNNFAST_TYPE_OF(tag);
    add_relu(static_cast<const T*>(residual), static_cast<T*>(y), p.output_numel(), stream);
  });
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace cnnfast
