// CPU kernels of cnnfast::relu, cnnfast::relu_ and cnnfast::relu_backward: one pass over contiguous
// memory (any layout whose elements are dense, channels_last included), chunked over threads.
// A tensor with gaps or overlaps is computed through a contiguous copy.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "checks.h"
#include "cpu/capability.h"
#include "cpu/conv2d_gemm.h"
#include "cpu/gemm.h"
#include "cpu/output_cache.h"

namespace cnnfast::cpu {
namespace {

const DtypeList kCpuDtypes = {at::kFloat, at::kDouble};
constexpr int64_t kGrain = 32768;

template <typename F>
void dispatch(const at::Tensor& t, F&& f) {
  if (t.scalar_type() == at::kFloat) f(float{}); else f(double{});
}

// out[i] = relu(in[i]) over the dense storage of `in` (same strides for both).
void relu_dense(const at::Tensor& in, at::Tensor& out) {
  dispatch(in, [&](auto zero) {
    using T = decltype(zero);
    const T* x = in.const_data_ptr<T>();
    T* y = out.mutable_data_ptr<T>();
    const Capability cap = current_capability();
    at::parallel_for(0, in.numel(), kGrain, [&](int64_t b, int64_t e) { relu_span(cap, x + b, y + b, e - b); });
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
    dispatch(out, [&](auto zero) {
      using T = decltype(zero);
      const T* y = out.const_data_ptr<T>();
      const T* g = dy.const_data_ptr<T>();
      T* d = dx.mutable_data_ptr<T>();
      const Capability cap = current_capability();
      at::parallel_for(0, out.numel(), kGrain, [&](int64_t b, int64_t e) { relu_mask_span(cap, g + b, y + b, d + b, e - b); });
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
