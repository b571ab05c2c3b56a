// ATen glue of the CUDA conv2d kernels (csrc/cuda/conv2d.h, conv2d_kernel.cuh): cnnfast::conv2d,
// conv2d_relu and their backwards. Argument checks are the CPU path's (csrc/checks.h); the glue
// adds the device guard, the current stream, the storage order (channels_last -> the NHWC
// kernels, weight as K R S C/G), the scratch buffers, the early return on empty tensors, the launch
// checks and the limits of the kernels' 32-bit intermediate indices.
#include <ATen/Context.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <vector>

#include "cuda/common/glue.h"
#include "cuda/conv2d.h"

namespace cnnfast {
namespace cuda {
namespace {

constexpr const char* kConv2d = "cnnfast::conv2d";
constexpr const char* kConv2dBackward = "cnnfast::conv2d_backward";
constexpr const char* kConv2dRelu = "cnnfast::conv2d_relu";
constexpr const char* kConv2dReluBackward = "cnnfast::conv2d_relu_backward";

at::Tensor forward(const char* op, bool relu, const at::Tensor& input, const at::Tensor& weight,
                   const std::optional<at::Tensor>& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                   at::IntArrayRef dilation, int64_t groups) {
  const Conv2dProblem p =
      make_conv2d_problem(op, input, weight, bias, stride, padding, dilation, groups, kCudaDtypes);
  check_conv_sizes(op, p);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto format = conv2d_memory_format(input, weight);
  at::Tensor y = at::empty({p.N, p.K, p.P, p.Q}, input.options().memory_format(format));
  if (y.numel() == 0) return y;
  const at::Tensor x = input.contiguous(format), w = weight.contiguous(format);
  const at::Tensor b = contiguous_if_given(bias);
  const bool tf32 = at::globalContext().allowTF32CuDNN();
  const at::Tensor work = at::empty({conv2d_forward_workspace(dtype_of(x), p, is_nhwc(format), tf32)},
                                    input.options().dtype(at::kByte));
  C10_CUDA_CHECK(launch_conv2d_forward(dtype_of(x), p, is_nhwc(format), x.const_data_ptr(), w.const_data_ptr(),
                                       data_or_null(b), relu, tf32, y.mutable_data_ptr(), work.mutable_data_ptr(),
                                       current_stream()));
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(const char* op, const at::Tensor& grad_output,
                                                        const std::optional<at::Tensor>& output,
                                                        const at::Tensor& input, const at::Tensor& weight,
                                                        at::IntArrayRef stride, at::IntArrayRef padding,
                                                        at::IntArrayRef dilation, int64_t groups,
                                                        std::array<bool, 3> output_mask) {
  const Conv2dProblem p = make_conv2d_backward_problem(op, grad_output, output, input, weight, stride, padding,
                                                       dilation, groups, kCudaDtypes);
  check_conv_sizes(op, p);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto format = conv2d_memory_format(input, weight);
  const bool nhwc = is_nhwc(format);
  const Dtype t = dtype_of(input);
  const cudaStream_t stream = current_stream();
  const bool allow_tf32 = at::globalContext().allowTF32CuDNN();
  at::Tensor grad_input, grad_weight, grad_bias;
  if (output_mask[0]) grad_input = at::empty(input.sizes(), input.options().memory_format(format));
  if (output_mask[1]) grad_weight = at::empty(weight.sizes(), weight.options().memory_format(format));
  if (output_mask[2]) grad_bias = at::empty({p.K}, weight.options());
  if (p.output_numel() == 0) {  // nothing flows back: zero gradients
    for (at::Tensor* g : {&grad_input, &grad_weight, &grad_bias})
      if (g->defined()) g->zero_();
  } else {
    const at::Tensor dy = grad_output.contiguous(format);
    const at::Tensor mask = output ? output->contiguous(format) : at::Tensor();
    const void* mask_ptr = output ? mask.const_data_ptr() : nullptr;
    if (grad_input.defined() && grad_input.numel() > 0) {
      const at::Tensor w = weight.contiguous(format);
      C10_CUDA_CHECK(launch_conv2d_grad_input(t, p, nhwc, dy.const_data_ptr(), mask_ptr, w.const_data_ptr(),
                                              allow_tf32, grad_input.mutable_data_ptr(), stream));
    }
    if (grad_weight.defined() && grad_weight.numel() > 0) {
      const at::Tensor x = input.contiguous(format);
      at::Tensor work = at::empty({conv2d_grad_weight_workspace(p)}, input.options().dtype(at::kFloat));
      C10_CUDA_CHECK(launch_conv2d_grad_weight(t, p, nhwc, dy.const_data_ptr(), mask_ptr, x.const_data_ptr(),
                                               allow_tf32, grad_weight.mutable_data_ptr(),
                                               work.mutable_data_ptr<float>(), stream));
    }
    if (grad_bias.defined() && grad_bias.numel() > 0) {
      at::Tensor work = at::empty({conv2d_grad_bias_workspace(p)}, input.options().dtype(at::kFloat));
      C10_CUDA_CHECK(launch_conv2d_grad_bias(t, p, nhwc, dy.const_data_ptr(), mask_ptr, grad_bias.mutable_data_ptr(),
                                             work.mutable_data_ptr<float>(), stream));
    }
  }
  // The layouts the CPU kernels give their gradients (torch's suggestion for each tensor).
  if (grad_input.defined()) grad_input = grad_input.contiguous(input.suggest_memory_format());
  if (grad_weight.defined()) grad_weight = grad_weight.contiguous(weight.suggest_memory_format());
  return {grad_input, grad_weight, grad_bias};
}

at::Tensor conv2d_kernel(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  return forward(kConv2d, false, input, weight, bias, stride, padding, dilation, groups);
}

at::Tensor conv2d_relu_kernel(const at::Tensor& input, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                              at::IntArrayRef dilation, int64_t groups) {
  return forward(kConv2dRelu, true, input, weight, bias, stride, padding, dilation, groups);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, std::array<bool, 3> output_mask) {
  return backward(kConv2dBackward, grad_output, std::nullopt, input, weight, stride, padding, dilation, groups,
                  output_mask);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_relu_backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
    std::array<bool, 3> output_mask) {
  return backward(kConv2dReluBackward, grad_output, output, input, weight, stride, padding, dilation, groups,
                  output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnfast, CUDA, m) {
  m.impl("conv2d", &conv2d_kernel);
  m.impl("conv2d_backward", &conv2d_backward_kernel);
  m.impl("conv2d_relu", &conv2d_relu_kernel);
  m.impl("conv2d_relu_backward", &conv2d_relu_backward_kernel);
}

}  // namespace cuda
}  // namespace cnnfast
