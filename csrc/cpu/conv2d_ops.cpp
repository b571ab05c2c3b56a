// ATen glue of the CPU kernels of cnnfast::conv2d, conv2d_backward, conv2d_relu and
// conv2d_relu_backward: checks (csrc/checks.h), the outputs (from the output cache), the layout, one
// snapshot of the settings, and the call of the framework-free kernels (cpu/conv2d/conv2d.h).
// Layout: the kernels compute on contiguous NCHW; a channels_last or strided tensor is copied in and
// the result copied out in the memory format torch would give the same call.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <optional>

#include "checks.h"
#include "cpu/common/dispatch.h"
#include "cpu/common/outputs.h"
#include "cpu/common/settings.h"
#include "cpu/conv2d/conv2d.h"

namespace cnnfast::cpu {
namespace {

constexpr const char* kConv2d = "cnnfast::conv2d";
constexpr const char* kConv2dBackward = "cnnfast::conv2d_backward";
constexpr const char* kConv2dRelu = "cnnfast::conv2d_relu";
constexpr const char* kConv2dReluBackward = "cnnfast::conv2d_relu_backward";

at::Tensor forward_op(const char* op, bool relu, const at::Tensor& input, const at::Tensor& weight,
                      const std::optional<at::Tensor>& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                      at::IntArrayRef dilation, int64_t groups) {
  const Conv2dProblem p =
      make_conv2d_problem(op, input, weight, bias, stride, padding, dilation, groups, kCpuDtypes);
  const auto format = conv2d_memory_format(input, weight);
  at::Tensor y = new_output({p.N, p.K, p.P, p.Q}, input.scalar_type());
  if (y.numel() > 0) {
    const at::Tensor x = input.contiguous(), w = weight.contiguous();
    const bool has_bias = bias.has_value() && bias->defined();
    const at::Tensor b = has_bias ? bias->contiguous() : at::Tensor();
    const Settings s = cpu_settings();
    dispatch_floating(input.scalar_type(), [&](auto zero) {
      using T = decltype(zero);
      const T* bp = has_bias ? b.const_data_ptr<T>() : nullptr;
      conv2d_forward<T>(p, x.const_data_ptr<T>(), w.const_data_ptr<T>(), bp, y.mutable_data_ptr<T>(), relu, s);
    });
  }
  return y.contiguous(format);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_op(
    const char* op, const at::Tensor& grad_output, const std::optional<at::Tensor>& output,
    const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef dilation, int64_t groups, std::array<bool, 3> output_mask) {
  const Conv2dProblem p = make_conv2d_backward_problem(op, grad_output, output, input, weight, stride, padding,
                                                       dilation, groups, kCpuDtypes);
  at::Tensor grad_input, grad_weight, grad_bias;
  if (output_mask[0]) grad_input = new_output(input.sizes(), input.scalar_type());
  if (output_mask[1]) grad_weight = new_output(weight.sizes(), weight.scalar_type());
  if (output_mask[2]) grad_bias = new_output({p.K}, weight.scalar_type());

  const at::Tensor dy = grad_output.contiguous(), x = input.contiguous(), w = weight.contiguous();
  const at::Tensor relu_out = output ? output->contiguous() : at::Tensor();
  const Settings s = cpu_settings();
  dispatch_floating(input.scalar_type(), [&](auto zero) {
    using T = decltype(zero);
    const auto data = [](at::Tensor& t) { return t.defined() && t.numel() > 0 ? t.mutable_data_ptr<T>() : nullptr; };
    conv2d_backward<T>(p, dy.const_data_ptr<T>(), output ? relu_out.const_data_ptr<T>() : nullptr,
                       x.const_data_ptr<T>(), w.const_data_ptr<T>(), data(grad_input), data(grad_weight),
                       data(grad_bias), s);
  });
  if (grad_input.defined()) grad_input = grad_input.contiguous(input.suggest_memory_format());
  if (grad_weight.defined()) grad_weight = grad_weight.contiguous(weight.suggest_memory_format());
  return {grad_input, grad_weight, grad_bias};
}

at::Tensor conv2d_kernel(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                         int64_t groups) {
  return forward_op(kConv2d, false, input, weight, bias, stride, padding, dilation, groups);
}

at::Tensor conv2d_relu_kernel(const at::Tensor& input, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  return forward_op(kConv2dRelu, true, input, weight, bias, stride, padding, dilation, groups);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, std::array<bool, 3> output_mask) {
  return backward_op(kConv2dBackward, grad_output, std::nullopt, input, weight, stride, padding, dilation,
                         groups, output_mask);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_relu_backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
    std::array<bool, 3> output_mask) {
  return backward_op(kConv2dReluBackward, grad_output, output, input, weight, stride, padding, dilation,
                         groups, output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnfast, CPU, m) {
  m.impl("conv2d", &conv2d_kernel);
  m.impl("conv2d_backward", &conv2d_backward_kernel);
  m.impl("conv2d_relu", &conv2d_relu_kernel);
  m.impl("conv2d_relu_backward", &conv2d_relu_backward_kernel);
}

}  // namespace cnnfast::cpu
