// CUDA glue of cnnfast::conv2d_add_relu and its backward (the launcher of csrc/cuda/conv2d_add_relu.h):
// the checks shared with the CPU path, a device guard, the storage order (channels_last -> the NHWC
// kernels, the residual read in the output's order), the early return on empty tensors and the launch
// checks. The backward masks grad_output once (the residual's gradient, relu_backward's kernel) and
// hands the convolution's gradients to cnnfast::conv2d_backward on it, or, when the residual needs
// none, to cnnfast::conv2d_relu_backward, whose kernels mask as they read.
#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <array>
#include <optional>

#include "cuda/common/glue.h"
#include "cuda/conv2d.h"
#include "cuda/conv2d_add_relu.h"
#include "cuda/relu.h"

namespace cnnfast {
namespace cuda {
namespace {

constexpr const char* kOp = "cnnfast::conv2d_add_relu";
constexpr const char* kBackwardOp = "cnnfast::conv2d_add_relu_backward";

using Grads3 = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using ConvBackwardSig = Grads3(const at::Tensor&, const at::Tensor&, const at::Tensor&, at::IntArrayRef,
                               at::IntArrayRef, at::IntArrayRef, int64_t, std::array<bool, 3>);
using ConvReluBackwardSig = Grads3(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                   at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t, std::array<bool, 3>);

at::Tensor conv2d_add_relu_kernel(const at::Tensor& input, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias, const at::Tensor& residual,
                                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                  int64_t groups) {
  const Conv2dProblem p = make_conv2d_add_relu_problem(kOp, input, weight, bias, residual, stride, padding,
                                                       dilation, groups, kCudaDtypes);
  check_conv_sizes(kOp, p);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto format = conv2d_memory_format(input, weight);
  at::Tensor y = at::empty({p.N, p.K, p.P, p.Q}, input.options().memory_format(format));
  if (y.numel() == 0) return y;
  const at::Tensor x = input.contiguous(format), w = weight.contiguous(format), r = residual.contiguous(format);
  const at::Tensor b = contiguous_if_given(bias);
  const bool tf32 = at::globalContext().allowTF32CuDNN();
  const at::Tensor work = at::empty({conv2d_forward_workspace(dtype_of(x), p, is_nhwc(format), tf32)},
                                    input.options().dtype(at::kByte));
  C10_CUDA_CHECK(launch_conv2d_add_relu_forward(dtype_of(x), p, is_nhwc(format), x.const_data_ptr(),
                                                w.const_data_ptr(), data_or_null(b), r.const_data_ptr(), tf32,
                                                y.mutable_data_ptr(), work.mutable_data_ptr(), current_stream()));
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> conv2d_add_relu_backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
    std::array<bool, 4> output_mask) {
  const Conv2dProblem p = make_conv2d_backward_problem(kBackwardOp, grad_output, output, input, weight, stride,
                                                       padding, dilation, groups, kCudaDtypes);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto format = output.suggest_memory_format();
  at::Tensor grad_residual;
  if (output_mask[3]) {
    grad_residual = at::empty(output.sizes(), output.options().memory_format(format));
    if (grad_residual.numel() > 0) {
      const at::Tensor dy = grad_output.contiguous(format), y = output.contiguous(format);
      C10_CUDA_CHECK(launch_relu_backward(dtype_of(y), dy.const_data_ptr(), y.const_data_ptr(),
                                          grad_residual.mutable_data_ptr(), p.output_numel(), current_stream()));
    }
  }
  const std::array<bool, 3> conv_mask{output_mask[0], output_mask[1], output_mask[2]};
  Grads3 g;
  if (conv_mask[0] || conv_mask[1] || conv_mask[2]) {
    if (grad_residual.defined()) {
      static const auto conv_backward =
          c10::Dispatcher::singleton().findSchemaOrThrow("cnnfast::conv2d_backward", "").typed<ConvBackwardSig>();
      g = conv_backward.call(grad_residual, input, weight, stride, padding, dilation, groups, conv_mask);
    } else {
      static const auto conv_relu_backward = c10::Dispatcher::singleton()
                                                 .findSchemaOrThrow("cnnfast::conv2d_relu_backward", "")
                                                 .typed<ConvReluBackwardSig>();
      g = conv_relu_backward.call(grad_output, output, input, weight, stride, padding, dilation, groups, conv_mask);
    }
  }
  return {std::get<0>(g), std::get<1>(g), std::get<2>(g), grad_residual};
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnfast, CUDA, m) {
  m.impl("conv2d_add_relu", &conv2d_add_relu_kernel);
  m.impl("conv2d_add_relu_backward", &conv2d_add_relu_backward_kernel);
}

}  // namespace cuda
}  // namespace cnnfast
