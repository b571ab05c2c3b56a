// ATen glue of the CPU kernels of cnnfast::conv2d_add_relu and conv2d_add_relu_backward: checks
// (csrc/checks.h), the outputs (from the output cache), the layout, one snapshot of the settings, and the
// call of conv2d's framework-free kernels (cpu/conv2d/conv2d.h), whose output paths add the residual
// before the ReLU. Layout as conv2d's glue: the kernels compute on contiguous NCHW (the residual is read
// in that layout too), and the result is copied out in the memory format torch would give the same call.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <optional>

#include "checks.h"
#include "cpu/common/dispatch.h"
#include "cpu/common/outputs.h"
#include "cpu/common/settings.h"
#include "cpu/conv2d/conv2d.h"
#include "cpu/relu/relu.h"

namespace cnnfast::cpu {
namespace {

constexpr const char* kConv2dAddRelu = "cnnfast::conv2d_add_relu";
constexpr const char* kConv2dAddReluBackward = "cnnfast::conv2d_add_relu_backward";

at::Tensor conv2d_add_relu_kernel(const at::Tensor& input, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias, const at::Tensor& residual,
                                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                  int64_t groups) {
  const Conv2dProblem p = make_conv2d_add_relu_problem(kConv2dAddRelu, input, weight, bias, residual, stride,
                                                       padding, dilation, groups, kCpuDtypes);
  const auto format = conv2d_memory_format(input, weight);
  at::Tensor y = new_output({p.N, p.K, p.P, p.Q}, input.scalar_type());
  if (y.numel() > 0) {
    const at::Tensor x = input.contiguous(), w = weight.contiguous(), r = residual.contiguous();
    const bool has_bias = bias.has_value() && bias->defined();
    const at::Tensor b = has_bias ? bias->contiguous() : at::Tensor();
    const Settings s = cpu_settings();
    dispatch_floating(input.scalar_type(), [&](auto zero) {
      using T = decltype(zero);
      const T* bp = has_bias ? b.const_data_ptr<T>() : nullptr;
      conv2d_forward<T>(p, x.const_data_ptr<T>(), w.const_data_ptr<T>(), bp, y.mutable_data_ptr<T>(),
                        /*relu=*/true, s, r.const_data_ptr<T>());
    });
  }
  return y.contiguous(format);
}

// grad_residual is grad_output masked by the output's ReLU; the convolution's gradients are conv2d's of
// that same masked gradient, so it is computed once and handed to conv2d_backward as its dy.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> conv2d_add_relu_backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
    std::array<bool, 4> output_mask) {
  const Conv2dProblem p = make_conv2d_backward_problem(kConv2dAddReluBackward, grad_output, output, input, weight,
                                                       stride, padding, dilation, groups, kCpuDtypes);
  at::Tensor grad_input, grad_weight, grad_bias, grad_residual;
  if (output_mask[0]) grad_input = new_output(input.sizes(), input.scalar_type());
  if (output_mask[1]) grad_weight = new_output(weight.sizes(), weight.scalar_type());
  if (output_mask[2]) grad_bias = new_output({p.K}, weight.scalar_type());
  if (output_mask[3]) grad_residual = new_output(output.sizes(), output.scalar_type());

  const at::Tensor dy = grad_output.contiguous(), y = output.contiguous();
  const at::Tensor x = input.contiguous(), w = weight.contiguous();
  const Settings s = cpu_settings();
  dispatch_floating(input.scalar_type(), [&](auto zero) {
    using T = decltype(zero);
    const auto data = [](at::Tensor& t) { return t.defined() && t.numel() > 0 ? t.mutable_data_ptr<T>() : nullptr; };
    T *dx = data(grad_input), *dw = data(grad_weight), *db = data(grad_bias), *dr = data(grad_residual);
    if (dr) relu_backward(dy.const_data_ptr<T>(), y.const_data_ptr<T>(), dr, p.output_numel(), s.capability);
    if (!(grad_input.defined() || grad_weight.defined() || grad_bias.defined())) return;
    // Without grad_residual, conv2d_backward masks dy by the output itself (on the way into its layout
    // where it has one).
    if (dr)
      conv2d_backward<T>(p, dr, nullptr, x.const_data_ptr<T>(), w.const_data_ptr<T>(), dx, dw, db, s);
    else
      conv2d_backward<T>(p, dy.const_data_ptr<T>(), y.const_data_ptr<T>(), x.const_data_ptr<T>(),
                         w.const_data_ptr<T>(), dx, dw, db, s);
  });
  if (grad_input.defined()) grad_input = grad_input.contiguous(input.suggest_memory_format());
  if (grad_weight.defined()) grad_weight = grad_weight.contiguous(weight.suggest_memory_format());
  if (grad_residual.defined()) grad_residual = grad_residual.contiguous(output.suggest_memory_format());
  return {grad_input, grad_weight, grad_bias, grad_residual};
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnfast, CPU, m) {
  m.impl("conv2d_add_relu", &conv2d_add_relu_kernel);
  m.impl("conv2d_add_relu_backward", &conv2d_add_relu_backward_kernel);
}

}  // namespace cnnfast::cpu
