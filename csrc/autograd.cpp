// Autograd of the differentiable cnnfast ops, one torch::autograd::Function per op, registered for every
// device at the Autograd key. Each forward calls the op again with the autograd keys excluded (so the
// CPU, CUDA, Meta/fake or autocast kernel runs), saves what its backward op needs and the backward calls that op
// (cnnfast::<op>_backward, schemas in csrc/ops.cpp). Being C++, a call costs a few microseconds of
// dispatch instead of the tens that a Python autograd registration takes per forward and backward.
// Backward ops have no autograd of their own: second derivatives are not supported (README). A gradient
// computed with create_graph=True is handed out through torch's DelayedError node (once_differentiable
// below), so that differentiating it again raises instead of silently giving zero.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <string>
#include <vector>

namespace cnnfast {
namespace {

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
  const c10::TypedOperatorHandle<Signature>& fn() {          \
    static const auto op = op_handle<Signature>(name);       \
    return op;                                               \
  }
CNNFAST_OP(conv2d_op, ConvSig, "cnnfast::conv2d")
CNNFAST_OP(conv2d_relu_op, ConvSig, "cnnfast::conv2d_relu")
CNNFAST_OP(conv2d_backward_op, ConvBackwardSig, "cnnfast::conv2d_backward")
CNNFAST_OP(conv2d_relu_backward_op, ConvReluBackwardSig, "cnnfast::conv2d_relu_backward")
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
bool records_graph(const at::Tensor& a, const at::Tensor& b = {}, const std::optional<at::Tensor>& c = {}) {
  return at::GradMode::is_enabled() &&
         (a.requires_grad() || (b.defined() && b.requires_grad()) || (c && c->defined() && c->requires_grad()));
}

// The pooling arguments a backward needs, under keys prefix + "kernel_size", "stride", ... (the fused op
// keeps its convolution's stride, padding and dilation under the plain keys, so its pooling's take "pool_").
void save_pool_args(AutogradContext* ctx, const std::string& prefix, at::IntArrayRef kernel_size,
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
variable_list once_differentiable(const char* op, AutogradContext* ctx, const variable_list& grad_outputs,
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
void save_conv_args(AutogradContext* ctx, const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  ctx->saved_data["stride"] = stride.vec();
  ctx->saved_data["padding"] = padding.vec();
  ctx->saved_data["dilation"] = dilation.vec();
  ctx->saved_data["groups"] = groups;
  ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
}

// Which of (grad_input, grad_weight, grad_bias) autograd needs; forward inputs 0, 1, 2 are input, weight, bias.
std::array<bool, 3> conv_output_mask(AutogradContext* ctx) {
  return {ctx->needs_input_grad(0), ctx->needs_input_grad(1),
          ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)};
}

// (grad_input, grad_weight, grad_bias) followed by no gradient for stride, padding, dilation, groups.
variable_list conv_grads(const Grads3& g) {
  return {std::get<0>(g), std::get<1>(g), std::get<2>(g), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
}

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

// Saves the pooled output and its indices (not the convolution's output): the backward rebuilds the
// convolution's output gradient from them (csrc/cpu/conv2d_relu_max_pool2d_kernel.cpp). The indices are
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

at::Tensor conv2d_autograd(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  if (!records_graph(input, weight, bias))
    return call_below_autograd(conv2d_op(), input, weight, bias, stride, padding, dilation, groups);
  return Conv2dFunction::apply(input, weight, bias, stride, padding, dilation, groups);
}

at::Tensor conv2d_relu_autograd(const at::Tensor& input, const at::Tensor& weight,
                                const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  if (!records_graph(input, weight, bias))
    return call_below_autograd(conv2d_relu_op(), input, weight, bias, stride, padding, dilation, groups);
  return Conv2dReluFunction::apply(input, weight, bias, stride, padding, dilation, groups);
}

std::tuple<at::Tensor, at::Tensor> conv2d_relu_max_pool2d_autograd(
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

std::tuple<at::Tensor, at::Tensor> max_pool2d_autograd(const at::Tensor& input, at::IntArrayRef kernel_size,
                                                       at::IntArrayRef stride, at::IntArrayRef padding,
                                                       at::IntArrayRef dilation, bool ceil_mode) {
  if (!records_graph(input))
    return call_below_autograd(max_pool2d_op(), input, kernel_size, stride, padding, dilation, ceil_mode);
  auto outputs = MaxPool2dFunction::apply(input, kernel_size, stride, padding, dilation, ceil_mode);
  return {outputs[0], outputs[1]};
}

at::Tensor relu_autograd(const at::Tensor& input) {
  if (!records_graph(input)) return call_below_autograd(relu_op(), input);
  return ReluFunction::apply(input);
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnfast, Autograd, m) {
  m.impl("conv2d", &conv2d_autograd);
  m.impl("conv2d_relu", &conv2d_relu_autograd);
  m.impl("conv2d_relu_max_pool2d", &conv2d_relu_max_pool2d_autograd);
  m.impl("max_pool2d", &max_pool2d_autograd);
  m.impl("relu", &relu_autograd);
}

}  // namespace cnnfast
