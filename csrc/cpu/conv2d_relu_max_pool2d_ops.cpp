// ATen glue of the CPU kernels of cnnfast::conv2d_relu_max_pool2d and its backward
// (cpu/conv2d_relu_max_pool2d/): checks (csrc/checks.h), the outputs, the layout and one snapshot of
// the settings. The kernels compute on contiguous NCHW; the outputs take the memory format torch would
// give the same calls.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <optional>

#include "checks.h"
#include "cpu/common/dispatch.h"
#include "cpu/common/outputs.h"
#include "cpu/common/settings.h"
#include "cpu/conv2d_relu_max_pool2d/conv2d_relu_max_pool2d.h"

namespace cnnfast::cpu {
namespace {

constexpr const char* kOp = "cnnfast::conv2d_relu_max_pool2d";
constexpr const char* kBackwardOp = "cnnfast::conv2d_relu_max_pool2d_backward";

std::tuple<at::Tensor, at::Tensor> conv2d_relu_max_pool2d_kernel(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, at::IntArrayRef kernel_size,
    at::IntArrayRef pool_stride, at::IntArrayRef pool_padding, at::IntArrayRef pool_dilation, bool ceil_mode,
    bool return_indices) {
  const ConvPoolProblem cp =
      make_conv2d_relu_max_pool2d_problem(kOp, input, weight, bias, stride, padding, dilation, groups, kernel_size,
                                          pool_stride, pool_padding, pool_dilation, ceil_mode, kCpuDtypes);
  const Pool2dProblem& q = cp.pool;
  const auto format = conv2d_memory_format(input, weight);
  at::Tensor y = new_output({q.N, q.C, q.P, q.Q}, input.scalar_type());
  at::Tensor indices = return_indices ? new_output({q.N, q.C, q.P, q.Q}, at::kLong)
                                      : input.new_empty({0}, input.options().dtype(at::kLong));
  if (y.numel() > 0) {
    const at::Tensor x = input.contiguous(), w = weight.contiguous();
    const bool has_bias = bias.has_value() && bias->defined();
    const at::Tensor b = has_bias ? bias->contiguous() : at::Tensor();
    const Settings s = cpu_settings();
    dispatch_floating(input.scalar_type(), [&](auto zero) {
      using T = decltype(zero);
      conv2d_relu_max_pool2d_forward<T>(cp, x.const_data_ptr<T>(), w.const_data_ptr<T>(),
                                        has_bias ? b.const_data_ptr<T>() : nullptr, y.mutable_data_ptr<T>(),
                                        return_indices ? indices.mutable_data_ptr<int64_t>() : nullptr, s);
    });
  }
  if (!return_indices) return {y.contiguous(format), indices};
  return {y.contiguous(format), indices.contiguous(format)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_relu_max_pool2d_backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& output, const at::Tensor& indices, const at::Tensor& input,
    const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
    int64_t groups, at::IntArrayRef kernel_size, at::IntArrayRef pool_stride, at::IntArrayRef pool_padding,
    at::IntArrayRef pool_dilation, bool ceil_mode, std::array<bool, 3> output_mask) {
  const ConvPoolProblem cp = make_conv2d_relu_max_pool2d_backward_problem(
      kBackwardOp, grad_output, output, indices, input, weight, stride, padding, dilation, groups, kernel_size,
      pool_stride, pool_padding, pool_dilation, ceil_mode, kCpuDtypes);
  const Conv2dProblem& p = cp.conv;
  at::Tensor grad_input, grad_weight, grad_bias;
  if (output_mask[0]) grad_input = new_output(input.sizes(), input.scalar_type());
  if (output_mask[1]) grad_weight = new_output(weight.sizes(), weight.scalar_type());
  if (output_mask[2]) grad_bias = new_output({p.K}, weight.scalar_type());

  const at::Tensor dy = grad_output.contiguous(), y = output.contiguous(), idx = indices.contiguous();
  const at::Tensor x = input.contiguous(), w = weight.contiguous();
  const Settings s = cpu_settings();
  bool in_range = true;
  dispatch_floating(input.scalar_type(), [&](auto zero) {
    using T = decltype(zero);
    const auto data = [](at::Tensor& t) { return t.defined() && t.numel() > 0 ? t.mutable_data_ptr<T>() : nullptr; };
    in_range = conv2d_relu_max_pool2d_backward<T>(
        cp, dy.const_data_ptr<T>(), y.const_data_ptr<T>(), idx.const_data_ptr<int64_t>(), x.const_data_ptr<T>(),
        w.const_data_ptr<T>(), data(grad_input), data(grad_weight), data(grad_bias), s);
  });
  // The gradients, still private to this call, are dropped.
  TORCH_CHECK(in_range, kBackwardOp, ": indices must lie in [0, P*Q) = [0, ", cp.pool.H * cp.pool.W,
              ") of the convolution's output plane");
  if (grad_input.defined()) grad_input = grad_input.contiguous(input.suggest_memory_format());
  if (grad_weight.defined()) grad_weight = grad_weight.contiguous(weight.suggest_memory_format());
  return {grad_input, grad_weight, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnfast, CPU, m) {
  m.impl("conv2d_relu_max_pool2d", &conv2d_relu_max_pool2d_kernel);
  m.impl("conv2d_relu_max_pool2d_backward", &conv2d_relu_max_pool2d_backward_kernel);
}

}  // namespace cnnfast::cpu
