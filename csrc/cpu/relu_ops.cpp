// ATen glue of the CPU kernels of cnnfast::relu, cnnfast::relu_ and cnnfast::relu_backward
// (cpu/relu/relu.h): one pass over contiguous memory (any layout whose elements are dense,
// channels_last included), chunked over threads. A tensor with gaps or overlaps is computed through a
// contiguous copy.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "checks.h"
#include "cpu/common/dispatch.h"
#include "cpu/common/outputs.h"
#include "cpu/common/settings.h"
#include "cpu/relu/relu.h"

namespace cnnfast::cpu {
namespace {

// out[i] = relu(in[i]) over the dense storage of `in` (same strides for both).
void relu_dense(const at::Tensor& in, at::Tensor& out) {
  const Capability cap = cpu_settings().capability;
  dispatch_floating(in.scalar_type(), [&](auto zero) {
    using T = decltype(zero);
    relu_forward(in.const_data_ptr<T>(), out.mutable_data_ptr<T>(), in.numel(), cap);
  });
}

at::Tensor relu_kernel(const at::Tensor& input) {
  check_supported_dtype("cnnfast::relu", "input", input, kCpuDtypes);
  const at::Tensor x = input.is_non_overlapping_and_dense() ? input : input.contiguous(input.suggest_memory_format());
  at::Tensor y = new_output_like(x);
  if (y.numel() > 0) relu_dense(x, y);
  return y;
}

void relu__kernel(at::Tensor& input) {
  check_supported_dtype("cnnfast::relu_", "input", input, kCpuDtypes);
  if (input.numel() == 0) return;
  if (input.is_non_overlapping_and_dense()) {
    relu_dense(input, input);
  } else {
    at::Tensor y = input.contiguous(input.suggest_memory_format());
    relu_dense(y, y);
    input.copy_(y);
  }
}

at::Tensor relu_backward_kernel(const at::Tensor& grad_output, const at::Tensor& output) {
  const char* op = "cnnfast::relu_backward";
  check_relu_backward(op, grad_output, output, kCpuDtypes);
  // Both read through one layout: the output's when dense, else contiguous.
  const at::Tensor out = output.is_non_overlapping_and_dense() ? output : output.contiguous(output.suggest_memory_format());
  const at::Tensor dy = grad_output.strides() == out.strides() ? grad_output : new_output_like(out).copy_(grad_output);
  at::Tensor dx = new_output_like(out);
  if (dx.numel() > 0) {
    const Capability cap = cpu_settings().capability;
    dispatch_floating(out.scalar_type(), [&](auto zero) {
      using T = decltype(zero);
      relu_backward(dy.const_data_ptr<T>(), out.const_data_ptr<T>(), dx.mutable_data_ptr<T>(), out.numel(), cap);
    });
  }
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnfast, CPU, m) {
  m.impl("relu", &relu_kernel);
  m.impl("relu_", &relu__kernel);
  m.impl("relu_backward", &relu_backward_kernel);
}

}  // namespace cnnfast::cpu
