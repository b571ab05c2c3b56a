// Autograd of cnnfast::conv2d_add_relu (its backward op: conv2d_add_relu_backward).
#pragma once

#include "autograd/common.h"

namespace cnnfast::autograd {

// As conv2d_relu's: the backward takes the ReLU mask from the output, so neither the pre-activation
// nor the residual is kept.
struct Conv2dAddReluFunction : torch::autograd::Function<Conv2dAddReluFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, const at::Tensor& residual,
                            at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                            int64_t groups) {
    at::Tensor output = call_below_autograd(conv2d_add_relu_op(), input, weight, bias, residual, stride, padding,
                                            dilation, groups);
    ctx->save_for_backward({output, input, weight});
    save_conv_args(ctx, bias, stride, padding, dilation, groups);
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    auto& d = ctx->saved_data;
    const auto conv_mask = conv_output_mask(ctx);
    // needs_input_grad counts the tensor arguments given: without a bias the residual is the third.
    const bool residual_grad = ctx->needs_input_grad(d["has_bias"].toBool() ? 3 : 2);
    const std::array<bool, 4> mask{conv_mask[0], conv_mask[1], conv_mask[2], residual_grad};
    const auto g = call_below_autograd(conv2d_add_relu_backward_op(), grad_outputs[0], saved[0], saved[1], saved[2],
                                       d["stride"].toIntVector(), d["padding"].toIntVector(),
                                       d["dilation"].toIntVector(), d["groups"].toInt(), mask);
    // (input, weight, bias, residual), then no gradient for stride, padding, dilation, groups.
    variable_list grads(8);
    grads[0] = std::get<0>(g), grads[1] = std::get<1>(g), grads[2] = std::get<2>(g), grads[3] = std::get<3>(g);
    return once_differentiable("cnnfast::conv2d_add_relu", ctx, grad_outputs, std::move(grads));
  }
};

inline at::Tensor conv2d_add_relu_autograd(const at::Tensor& input, const at::Tensor& weight,
                                           const std::optional<at::Tensor>& bias, const at::Tensor& residual,
                                           at::IntArrayRef stride, at::IntArrayRef padding,
                                           at::IntArrayRef dilation, int64_t groups) {
  const bool residual_grad = at::GradMode::is_enabled() && residual.defined() && residual.requires_grad();
  if (!records_graph(input, weight, bias) && !residual_grad)
    return call_below_autograd(conv2d_add_relu_op(), input, weight, bias, residual, stride, padding, dilation,
                               groups);
  return Conv2dAddReluFunction::apply(input, weight, bias, residual, stride, padding, dilation, groups);
}

}  // namespace cnnfast::autograd
