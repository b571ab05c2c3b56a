// Shared pieces of the ops' autograd (csrc/autograd/<op>.h): dispatcher handles, the call below the
// autograd keys, the saved arguments, and the once-differentiable rule. Included only by autograd.cpp.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <string>
#include <vector>

namespace cnnfast::autograd {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using Ints = std::vector<int64_t>;


using ConvSig = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, at::IntArrayRef,
                           at::IntArrayRef, at::IntArrayRef, int64_t);
using Grads3 = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using ConvBackwardSig = Grads3(const at::Tensor&, const at::Tensor&, const at::Tensor&, at::IntArrayRef,
                               at::IntArrayRef, at::IntArrayRef, int64_t, std::array<bool, 3>);
using ConvReluBackwardSig = Grads3(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                   at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t, std::array<bool, 3>);
using ConvAddSig = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                              const at::Tensor&, at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t);
using ConvAddBackwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, at::IntArrayRef, at::IntArrayRef,
    at::IntArrayRef, int64_t, std::array<bool, 4>);
using PoolSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, at::IntArrayRef, at::IntArrayRef,
                                                    at::IntArrayRef, at::IntArrayRef, bool);
using PoolBackwardSig = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, at::IntArrayRef,
                                   at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, bool);
using ConvPoolSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                        const std::optional<at::Tensor>&, at::IntArrayRef,
                                                        at::IntArrayRef, at::IntArrayRef, int64_t, at::IntArrayRef,
                                                        at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, bool, bool);
using ConvPoolBackwardSig = Grads3(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                   const at::Tensor&, at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t,
                                   at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, bool,
                                   std::array<bool, 3>);
using ReluSig = at::Tensor(const at::Tensor&);
using ReluBackwardSig = at::Tensor(const at::Tensor&, const at::Tensor&);

// The dispatcher handle of cnnfast::<name>, looked up once per op.
template <typename Signature>
c10::TypedOperatorHandle<Signature> op_handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

#define CNNFAST_OP(fn, Signature, name)                      \
  inline const c10::TypedOperatorHandle<Signature>& fn() {          \
    static const auto op = op_handle<Signature>(name);       \
    return op;                                               \
  }
CNNFAST_OP(conv2d_op, ConvSig, "cnnfast::conv2d")
CNNFAST_OP(conv2d_relu_op, ConvSig, "cnnfast::conv2d_relu")
CNNFAST_OP(conv2d_backward_op, ConvBackwardSig, "cnnfast::conv2d_backward")
CNNFAST_OP(conv2d_relu_backward_op, ConvReluBackwardSig, "cnnfast::conv2d_relu_backward")
CNNFAST_OP(conv2d_add_relu_op, ConvAddSig, "cnnfast::conv2d_add_relu")
CNNFAST_OP(conv2d_add_relu_backward_op, ConvAddBackwardSig, "cnnfast::conv2d_add_relu_backward")
CNNFAST_OP(conv2d_relu_max_pool2d_op, ConvPoolSig, "cnnfast::conv2d_relu_max_pool2d")
CNNFAST_OP(conv2d_relu_max_pool2d_backward_op, ConvPoolBackwardSig, "cnnfast::conv2d_relu_max_pool2d_backward")
CNNFAST_OP(max_pool2d_op, PoolSig, "cnnfast::max_pool2d")
CNNFAST_OP(max_pool2d_backward_op, PoolBackwardSig, "cnnfast::max_pool2d_backward")
CNNFAST_OP(relu_op, ReluSig, "cnnfast::relu")
CNNFAST_OP(relu_backward_op, ReluBackwardSig, "cnnfast::relu_backward")
#undef CNNFAST_OP

// An op with the autograd keys excluded: the backend's kernel runs (CPU, CUDA, Meta, autocast).
template <typename Signature, typename... Args>
auto call_below_autograd(const c10::TypedOperatorHandle<Signature>& op, const Args&... args) {
  const at::AutoDispatchBelowADInplaceOrView below_autograd;
  return op.call(args...);
}

// Whether autograd records this call: grad mode on and some tensor argument requiring grad. Otherwise
// the op goes straight to its kernel, without building a graph node.
inline bool records_graph(const at::Tensor& a, const at::Tensor& b = {}, const std::optional<at::Tensor>& c = {}) {
  return at::GradMode::is_enabled() &&
         (a.requires_grad() || (b.defined() && b.requires_grad()) || (c && c->defined() && c->requires_grad()));
}

// The pooling arguments a backward needs, under keys prefix + "kernel_size", "stride", ... (the fused op
// keeps its convolution's stride, padding and dilation under the plain keys, so its pooling's take "pool_").
inline void save_pool_args(AutogradContext* ctx, const std::string& prefix, at::IntArrayRef kernel_size,
                    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  ctx->saved_data["kernel_size"] = kernel_size.vec();
  ctx->saved_data[prefix + "stride"] = stride.vec();
  ctx->saved_data[prefix + "padding"] = padding.vec();
  ctx->saved_data[prefix + "dilation"] = dilation.vec();
  ctx->saved_data["ceil_mode"] = ceil_mode;
}

// What a backward returns. Under create_graph=True (grad mode on in the backward) with a tensor that
// requires grad, the gradients (computed below autograd, so without history) come back as outputs of
// torch's DelayedError: the same values, and an error naming the op if anything differentiates them
// (as torch.autograd.function.once_differentiable does).
inline variable_list once_differentiable(const char* op, AutogradContext* ctx, const variable_list& grad_outputs,
                                  variable_list grads) {
  if (!at::GradMode::is_enabled()) return grads;
  bool requires_grad = false;
  for (const auto& g : grad_outputs) requires_grad = requires_grad || (g.defined() && g.requires_grad());
  for (const auto& v : ctx->get_saved_variables()) requires_grad = requires_grad || (v.defined() && v.requires_grad());
  if (!requires_grad) return grads;
  for (auto& g : grads)
    if (g.defined()) g = g.detach().requires_grad_(true);
  auto error = std::make_shared<torch::autograd::DelayedError>(
      std::string(op) + ": second derivatives (double backward) are not implemented; this gradient was computed "
                        "with create_graph=True and cannot be differentiated again",
      static_cast<int64_t>(grads.size()));
  return error->apply(std::move(grads));
}

// The convolution arguments a backward needs besides its tensors.
inline void save_conv_args(AutogradContext* ctx, const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  ctx->saved_data["stride"] = stride.vec();
  ctx->saved_data["padding"] = padding.vec();
  ctx->saved_data["dilation"] = dilation.vec();
  ctx->saved_data["groups"] = groups;
  ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
}

// Which of (grad_input, grad_weight, grad_bias) autograd needs; forward inputs 0, 1, 2 are input, weight, bias.
inline std::array<bool, 3> conv_output_mask(AutogradContext* ctx) {
  return {ctx->needs_input_grad(0), ctx->needs_input_grad(1),
          ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)};
}

// (grad_input, grad_weight, grad_bias) followed by no gradient for stride, padding, dilation, groups.
inline variable_list conv_grads(const Grads3& g) {
  return {std::get<0>(g), std::get<1>(g), std::get<2>(g), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
}

}  // namespace cnnfast::autograd
