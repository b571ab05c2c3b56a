// Autograd of cnnfast::max_pool2d (its backward op: max_pool2d_backward).
#pragma once

#include "autograd/common.h"

namespace cnnfast::autograd {

struct MaxPool2dFunction : torch::autograd::Function<MaxPool2dFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input, at::IntArrayRef kernel_size,
                               at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                               bool ceil_mode) {
    auto [output, indices] =
        call_below_autograd(max_pool2d_op(), input, kernel_size, stride, padding, dilation, ceil_mode);
    ctx->mark_non_differentiable({indices});
    // The indices never get a gradient: without this, autograd would fill a zero tensor for them on
    // every backward (tens of microseconds for a small pool).
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({input, indices});
    save_pool_args(ctx, "", kernel_size, stride, padding, dilation, ceil_mode);
    return {output, indices};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    if (!grad_outputs[0].defined()) return variable_list(6);  // no gradient reached the output
    auto& d = ctx->saved_data;
    at::Tensor grad_input = call_below_autograd(
        max_pool2d_backward_op(), grad_outputs[0], saved[0], saved[1], d["kernel_size"].toIntVector(),
        d["stride"].toIntVector(), d["padding"].toIntVector(), d["dilation"].toIntVector(), d["ceil_mode"].toBool());
    return once_differentiable("cnnfast::max_pool2d", ctx, grad_outputs,
                               {grad_input, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()});
  }
};


inline std::tuple<at::Tensor, at::Tensor> max_pool2d_autograd(const at::Tensor& input, at::IntArrayRef kernel_size,
                                                       at::IntArrayRef stride, at::IntArrayRef padding,
                                                       at::IntArrayRef dilation, bool ceil_mode) {
  if (!records_graph(input))
    return call_below_autograd(max_pool2d_op(), input, kernel_size, stride, padding, dilation, ceil_mode);
  auto outputs = MaxPool2dFunction::apply(input, kernel_size, stride, padding, dilation, ceil_mode);
  return {outputs[0], outputs[1]};
}

}  // namespace cnnfast::autograd
