// ATen glue of the CUDA relu kernels (csrc/cuda/relu.h, relu_kernel.cuh): cnnfast::relu, relu_ and
// relu_backward. Checks shared with the CPU path (csrc/checks.h), a device guard, the current
// stream, an early return on empty tensors and a launch check.
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "cuda/common/glue.h"
#include "cuda/relu.h"

namespace cnnfast {
namespace cuda {
namespace {

// A dense view of `t` (itself when its elements already fill its storage span).
at::Tensor dense(const at::Tensor& t) {
  return t.is_non_overlapping_and_dense() ? t : t.contiguous(t.suggest_memory_format());
}

at::Tensor relu_kernel(const at::Tensor& input) {
  check_supported_dtype("cnnfast::relu", "input", input, kCudaDtypes);
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor x = dense(input);
  at::Tensor y = at::empty_like(x);
  if (y.numel() == 0) return y;
  C10_CUDA_CHECK(launch_relu(dtype_of(x), x.const_data_ptr(), y.mutable_data_ptr(), x.numel(), current_stream()));
  return y;
}

void relu__kernel(at::Tensor& input) {
  check_supported_dtype("cnnfast::relu_", "input", input, kCudaDtypes);
  if (input.numel() == 0) return;
  const c10::cuda::CUDAGuard guard(input.device());
  if (input.is_non_overlapping_and_dense()) {
    C10_CUDA_CHECK(launch_relu(dtype_of(input), input.const_data_ptr(), input.mutable_data_ptr(), input.numel(),
                               current_stream()));
  } else {
    at::Tensor y = input.contiguous(input.suggest_memory_format());
    C10_CUDA_CHECK(launch_relu(dtype_of(y), y.const_data_ptr(), y.mutable_data_ptr(), y.numel(), current_stream()));
    input.copy_(y);
  }
}

at::Tensor relu_backward_kernel(const at::Tensor& grad_output, const at::Tensor& output) {
  const char* op = "cnnfast::relu_backward";
  check_relu_backward(op, grad_output, output, kCudaDtypes);
  const c10::cuda::CUDAGuard guard(output.device());
  const at::Tensor out = dense(output);
  const at::Tensor dy = grad_output.strides() == out.strides() ? grad_output : at::empty_like(out).copy_(grad_output);
  at::Tensor dx = at::empty_like(out);
  if (dx.numel() == 0) return dx;
  C10_CUDA_CHECK(launch_relu_backward(dtype_of(out), dy.const_data_ptr(), out.const_data_ptr(), dx.mutable_data_ptr(),
                                      out.numel(), current_stream()));
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnfast, CUDA, m) {
  m.impl("relu", &relu_kernel);
  m.impl("relu_", &relu__kernel);
  m.impl("relu_backward", &relu_backward_kernel);
}

}  // namespace cuda
}  // namespace cnnfast
