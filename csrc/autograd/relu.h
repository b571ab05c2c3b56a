// Autograd of cnnfast::relu (its backward op: relu_backward).
#pragma once

#include "autograd/common.h"

namespace cnnfast::autograd {

struct ReluFunction : torch::autograd::Function<ReluFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input) {
    at::Tensor output = call_below_autograd(relu_op(), input);
    ctx->save_for_backward({output});
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const at::Tensor output = ctx->get_saved_variables()[0];
    return once_differentiable("cnnfast::relu", ctx, grad_outputs,
                               {call_below_autograd(relu_backward_op(), grad_outputs[0], output)});
  }
};


inline at::Tensor relu_autograd(const at::Tensor& input) {
  if (!records_graph(input)) return call_below_autograd(relu_op(), input);
  return ReluFunction::apply(input);
}

}  // namespace cnnfast::autograd
