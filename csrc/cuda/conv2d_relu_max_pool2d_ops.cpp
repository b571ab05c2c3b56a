// CUDA glue of cnnfast::conv2d_relu_max_pool2d and its backward (the launchers of
// csrc/cuda/conv2d_relu_max_pool2d.h): the checks shared with the CPU path, a device guard, the
// output and scratch allocations, and the launches. The backward's last step is
// cnnfast::conv2d_backward on the convolution's output gradient, as on the CPU.
#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <array>
#include <optional>

#include "cuda/common/glue.h"
#include "cuda/conv2d.h"
#include "cuda/conv2d_relu_max_pool2d.h"

namespace cnnfast {
namespace cuda {
namespace {

constexpr const char* kOp = "cnnfast::conv2d_relu_max_pool2d";
constexpr const char* kBackwardOp = "cnnfast::conv2d_relu_max_pool2d_backward";

using ConvBackwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, at::IntArrayRef, at::IntArrayRef, at::IntArrayRef,
    int64_t, std::array<bool, 3>);

std::tuple<at::Tensor, at::Tensor> conv2d_relu_max_pool2d_kernel(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, at::IntArrayRef kernel_size,
    at::IntArrayRef pool_stride, at::IntArrayRef pool_padding, at::IntArrayRef pool_dilation, bool ceil_mode,
    bool return_indices) {
  const ConvPoolProblem cp =
      make_conv2d_relu_max_pool2d_problem(kOp, input, weight, bias, stride, padding, dilation, groups, kernel_size,
                                          pool_stride, pool_padding, pool_dilation, ceil_mode, kCudaDtypes);
  const Conv2dProblem& p = cp.conv;
  const Pool2dProblem& q = cp.pool;
  check_conv_sizes(kOp, p);
  check_pool_sizes(kOp, q.N, q.C, q.H, q.W);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto format = conv2d_memory_format(input, weight);
  at::Tensor y = at::empty({q.N, q.C, q.P, q.Q}, input.options().memory_format(format));
  // (the pooling kernel always writes indices: without return_indices they go to a temporary)
  at::Tensor idx = at::empty({q.N, q.C, q.P, q.Q}, input.options().dtype(at::kLong).memory_format(format));
  if (y.numel() > 0) {
    const at::Tensor x = input.contiguous(format), w = weight.contiguous(format);
    const at::Tensor b = contiguous_if_given(bias);
    at::Tensor conv = at::empty({p.N, p.K, p.P, p.Q}, input.options().memory_format(format));
    const bool tf32 = at::globalContext().allowTF32CuDNN();
    const at::Tensor work = at::empty({conv2d_forward_workspace(dtype_of(x), p, is_nhwc(format), tf32)},
                                      input.options().dtype(at::kByte));
    C10_CUDA_CHECK(launch_conv2d_relu_max_pool2d_forward(
        dtype_of(x), p, q, is_nhwc(format), x.const_data_ptr(), w.const_data_ptr(), data_or_null(b), tf32,
        conv.mutable_data_ptr(), y.mutable_data_ptr(), idx.mutable_data_ptr<int64_t>(), work.mutable_data_ptr(),
        current_stream()));
  }
  if (!return_indices) return {y, at::empty({0}, input.options().dtype(at::kLong))};
  return {y, idx};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_relu_max_pool2d_backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& output, const at::Tensor& indices, const at::Tensor& input,
    const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
    int64_t groups, at::IntArrayRef kernel_size, at::IntArrayRef pool_stride, at::IntArrayRef pool_padding,
    at::IntArrayRef pool_dilation, bool ceil_mode, std::array<bool, 3> output_mask) {
  const ConvPoolProblem cp = make_conv2d_relu_max_pool2d_backward_problem(
      kBackwardOp, grad_output, output, indices, input, weight, stride, padding, dilation, groups, kernel_size,
      pool_stride, pool_padding, pool_dilation, ceil_mode, kCudaDtypes);
  const Conv2dProblem& p = cp.conv;
  const Pool2dProblem& q = cp.pool;
  check_pool_sizes(kBackwardOp, q.N, q.C, q.H, q.W);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto format = conv2d_memory_format(input, weight);
  at::Tensor g = at::empty({p.N, p.K, p.P, p.Q}, input.options().memory_format(format));
  if (g.numel() > 0) {
    const at::Tensor dy = grad_output.contiguous(format), y = output.contiguous(format);
    const at::Tensor idx = indices.contiguous(format);
    at::Tensor masked = at::empty_like(y);
    C10_CUDA_CHECK(launch_conv2d_relu_max_pool2d_grad_conv_output(
        dtype_of(y), q, is_nhwc(format), dy.const_data_ptr(), y.const_data_ptr(), idx.const_data_ptr<int64_t>(),
        masked.mutable_data_ptr(), g.mutable_data_ptr(), current_stream()));
  }
  static const auto conv_backward =
      c10::Dispatcher::singleton().findSchemaOrThrow("cnnfast::conv2d_backward", "").typed<ConvBackwardSig>();
  return conv_backward.call(g, input, weight, stride, padding, dilation, groups, output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnfast, CUDA, m) {
  m.impl("conv2d_relu_max_pool2d", &conv2d_relu_max_pool2d_kernel);
  m.impl("conv2d_relu_max_pool2d_backward", &conv2d_relu_max_pool2d_backward_kernel);
}

}  // namespace cuda
}  // namespace cnnfast
