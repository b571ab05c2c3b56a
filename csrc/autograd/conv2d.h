// Autograd of cnnfast::conv2d and cnnfast::conv2d_relu (their backward ops: conv2d_backward,
// conv2d_relu_backward).
#pragma once

#include "autograd/common.h"

namespace cnnfast::autograd {

struct Conv2dFunction : torch::autograd::Function<Conv2dFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                            at::IntArrayRef dilation, int64_t groups) {
    ctx->save_for_backward({input, weight});
    save_conv_args(ctx, bias, stride, padding, dilation, groups);
    return call_below_autograd(conv2d_op(), input, weight, bias, stride, padding, dilation, groups);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    auto& d = ctx->saved_data;
    return once_differentiable(
        "cnnfast::conv2d", ctx, grad_outputs,
        conv_grads(call_below_autograd(conv2d_backward_op(), grad_outputs[0], saved[0], saved[1],
                                       d["stride"].toIntVector(), d["padding"].toIntVector(),
                                       d["dilation"].toIntVector(), d["groups"].toInt(), conv_output_mask(ctx))));
  }
};

// The backward takes the ReLU mask from the output (not output <= 0), so the pre-activation is not kept.
struct Conv2dReluFunction : torch::autograd::Function<Conv2dReluFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                            at::IntArrayRef dilation, int64_t groups) {
    at::Tensor output = call_below_autograd(conv2d_relu_op(), input, weight, bias, stride, padding, dilation, groups);
    ctx->save_for_backward({output, input, weight});
    save_conv_args(ctx, bias, stride, padding, dilation, groups);
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    auto& d = ctx->saved_data;
    return once_differentiable(
        "cnnfast::conv2d_relu", ctx, grad_outputs,
        conv_grads(call_below_autograd(conv2d_relu_backward_op(), grad_outputs[0], saved[0], saved[1], saved[2],
                                       d["stride"].toIntVector(), d["padding"].toIntVector(),
                                       d["dilation"].toIntVector(), d["groups"].toInt(), conv_output_mask(ctx))));
  }
};


inline at::Tensor conv2d_autograd(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  if (!records_graph(input, weight, bias))
    return call_below_autograd(conv2d_op(), input, weight, bias, stride, padding, dilation, groups);
  return Conv2dFunction::apply(input, weight, bias, stride, padding, dilation, groups);
}

inline at::Tensor conv2d_relu_autograd(const at::Tensor& input, const at::Tensor& weight,
                                const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  if (!records_graph(input, weight, bias))
    return call_below_autograd(conv2d_relu_op(), input, weight, bias, stride, padding, dilation, groups);
  return Conv2dReluFunction::apply(input, weight, bias, stride, padding, dilation, groups);
}

}  // namespace cnnfast::autograd
