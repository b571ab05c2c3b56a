// The cnnfast op library: every schema in one place. Kernels are registered per backend with
// TORCH_LIBRARY_IMPL in csrc/cpu/<op>_ops.cpp and csrc/cuda/<op>_ops.cpp; autograd in
// csrc/autograd/<op>.cpp; fake kernels are registered from Python (cnnfast/ops/<op>.py). Only compute
// ops live here: the settings and the output cache are plain functions of cnnfast._C (module.cpp).
#include <torch/library.h>

TORCH_LIBRARY(cnnfast, m) {
  const std::vector<at::Tag> tags{at::Tag::pt2_compliant_tag};
  // conv2d: input [N, C, H, W], weight [K, C/groups, R, S], bias [K] or None -> [N, K, P, Q].
  m.def("conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, "
        "int[2] dilation, int groups) -> Tensor",
        tags);
  // Gradients of conv2d; output_mask selects (grad_input, grad_weight, grad_bias), the others are None.
  m.def("conv2d_backward(Tensor grad_output, Tensor input, Tensor weight, int[2] stride, int[2] padding, "
        "int[2] dilation, int groups, bool[3] output_mask) -> (Tensor, Tensor, Tensor)",
        tags);
  // conv2d + bias + ReLU in one pass.
  m.def("conv2d_relu(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, "
        "int[2] dilation, int groups) -> Tensor",
        tags);
  // Gradients of conv2d_relu from its output (the ReLU mask: output not <= 0, i.e. positive or NaN).
  m.def("conv2d_relu_backward(Tensor grad_output, Tensor output, Tensor input, Tensor weight, int[2] stride, "
        "int[2] padding, int[2] dilation, int groups, bool[3] output_mask) -> (Tensor, Tensor, Tensor)",
        tags);
  // relu(conv2d(...) + residual) in one pass (a ResNet block's tail): residual has the convolution's
  // output size, dtype and device.
  m.def("conv2d_add_relu(Tensor input, Tensor weight, Tensor? bias, Tensor residual, int[2] stride, "
        "int[2] padding, int[2] dilation, int groups) -> Tensor",
        tags);
  // Gradients of conv2d_add_relu from its output (the ReLU mask, as conv2d_relu_backward's); output_mask
  // selects (grad_input, grad_weight, grad_bias, grad_residual). grad_residual is the masked grad_output.
  m.def("conv2d_add_relu_backward(Tensor grad_output, Tensor output, Tensor input, Tensor weight, "
        "int[2] stride, int[2] padding, int[2] dilation, int groups, bool[4] output_mask) "
        "-> (Tensor, Tensor, Tensor, Tensor)",
        tags);
  // max_pool2d(relu(conv2d(...))) in one op: (output, indices), the indices into the planes of the
  // convolution's [N, K, P, Q] output (h * Q + w), as max_pool2d would give on that output. Without
  // return_indices the indices are an empty int64 tensor (none written: inference needs none; under
  // autograd the op keeps them for its backward all the same).
  m.def("conv2d_relu_max_pool2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, "
        "int[2] dilation, int groups, int[2] kernel_size, int[2] pool_stride, int[2] pool_padding, "
        "int[2] pool_dilation, bool ceil_mode, bool return_indices=True) -> (Tensor, Tensor)",
        tags);
  // Gradients of conv2d_relu_max_pool2d from its pooled output and indices (the ReLU mask of a chosen
  // element is output not <= 0), so the convolution's full output is never stored.
  m.def("conv2d_relu_max_pool2d_backward(Tensor grad_output, Tensor output, Tensor indices, Tensor input, "
        "Tensor weight, int[2] stride, int[2] padding, int[2] dilation, int groups, int[2] kernel_size, "
        "int[2] pool_stride, int[2] pool_padding, int[2] pool_dilation, bool ceil_mode, bool[3] output_mask) "
        "-> (Tensor, Tensor, Tensor)",
        tags);
  // max_pool2d: (output, indices); an index is h * W + w inside the input plane, as torch.
  m.def("max_pool2d(Tensor input, int[2] kernel_size, int[2] stride, int[2] padding, int[2] dilation, "
        "bool ceil_mode) -> (Tensor, Tensor)",
        tags);
  // With the forward's window arguments, so a kernel can gather (each input element sums the gradients
  // of the windows that chose it) instead of scattering.
  m.def("max_pool2d_backward(Tensor grad_output, Tensor input, Tensor indices, int[2] kernel_size, int[2] stride, "
        "int[2] padding, int[2] dilation, bool ceil_mode) -> Tensor",
        tags);
  m.def("relu(Tensor input) -> Tensor", tags);
  // In place; returns nothing (a custom op may not return an alias, so torch.compile can functionalize it).
  m.def("relu_(Tensor(a!) input) -> ()", tags);
  // Gradient of relu from its output: grad_output where output is not <= 0 (positive or NaN),
  // else 0, as torch's threshold_backward.
  m.def("relu_backward(Tensor grad_output, Tensor output) -> Tensor", tags);
}
