// Autograd of cnnfast::conv2d_relu_max_pool2d (its backward op: conv2d_relu_max_pool2d_backward).
#pragma once

#include "autograd/common.h"

namespace cnnfast::autograd {

// Saves the pooled output and its indices (not the convolution's output): the backward rebuilds the
// convolution's output gradient from them (csrc/cpu/conv2d_relu_max_pool2d/). The indices are
// computed whatever return_indices says; the caller gets them only when it asked.
struct Conv2dReluMaxPool2dFunction : torch::autograd::Function<Conv2dReluMaxPool2dFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                               const std::optional<at::Tensor>& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, int64_t groups, at::IntArrayRef kernel_size,
                               at::IntArrayRef pool_stride, at::IntArrayRef pool_padding,
                               at::IntArrayRef pool_dilation, bool ceil_mode, bool return_indices) {
    auto [output, indices] = call_below_autograd(conv2d_relu_max_pool2d_op(), input, weight, bias, stride, padding,
                                                 dilation, groups, kernel_size, pool_stride, pool_padding,
                                                 pool_dilation, ceil_mode, true);
    at::Tensor returned = return_indices ? indices : indices.new_empty({0});
    ctx->mark_non_differentiable({returned});
    ctx->set_materialize_grads(false);  // as MaxPool2dFunction: no zero gradient for the indices
    ctx->save_for_backward({output, indices, input, weight});
    save_conv_args(ctx, bias, stride, padding, dilation, groups);
    save_pool_args(ctx, "pool_", kernel_size, pool_stride, pool_padding, pool_dilation, ceil_mode);
    return {output, returned};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    constexpr int kArgs = 13;
    if (!grad_outputs[0].defined()) return variable_list(kArgs);  // no gradient reached the output
    const auto saved = ctx->get_saved_variables();
    auto& d = ctx->saved_data;
    const Grads3 g = call_below_autograd(
        conv2d_relu_max_pool2d_backward_op(), grad_outputs[0], saved[0], saved[1], saved[2], saved[3],
        d["stride"].toIntVector(), d["padding"].toIntVector(), d["dilation"].toIntVector(), d["groups"].toInt(),
        d["kernel_size"].toIntVector(), d["pool_stride"].toIntVector(), d["pool_padding"].toIntVector(),
        d["pool_dilation"].toIntVector(), d["ceil_mode"].toBool(), conv_output_mask(ctx));
    variable_list grads(kArgs);
    grads[0] = std::get<0>(g), grads[1] = std::get<1>(g), grads[2] = std::get<2>(g);
    return once_differentiable("cnnfast::conv2d_relu_max_pool2d", ctx, grad_outputs, std::move(grads));
  }
};


inline std::tuple<at::Tensor, at::Tensor> conv2d_relu_max_pool2d_autograd(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, at::IntArrayRef kernel_size,
    at::IntArrayRef pool_stride, at::IntArrayRef pool_padding, at::IntArrayRef pool_dilation, bool ceil_mode,
    bool return_indices) {
  if (!records_graph(input, weight, bias))
    return call_below_autograd(conv2d_relu_max_pool2d_op(), input, weight, bias, stride, padding, dilation, groups,
                               kernel_size, pool_stride, pool_padding, pool_dilation, ceil_mode, return_indices);
  auto outputs = Conv2dReluMaxPool2dFunction::apply(input, weight, bias, stride, padding, dilation, groups,
                                                    kernel_size, pool_stride, pool_padding, pool_dilation, ceil_mode,
                                                    return_indices);
  return {outputs[0], outputs[1]};
}

}  // namespace cnnfast::autograd
