// ATen glue of the CPU kernels of cnnfast::max_pool2d and max_pool2d_backward (cpu/max_pool2d/):
// checks (csrc/checks.h), the outputs, the layout and the capability in use. Channels-last and strided
// tensors are copied in and out (the output takes the input's suggested memory format, as torch's
// max_pool2d does).
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "checks.h"
#include "cpu/common/dispatch.h"
#include "cpu/common/outputs.h"
#include "cpu/common/settings.h"
#include "cpu/max_pool2d/max_pool2d.h"

namespace cnnfast::cpu {
namespace {

constexpr const char* kMaxPool2d = "cnnfast::max_pool2d";
constexpr const char* kMaxPool2dBackward = "cnnfast::max_pool2d_backward";

std::tuple<at::Tensor, at::Tensor> max_pool2d_kernel(const at::Tensor& input, at::IntArrayRef kernel_size,
                                                     at::IntArrayRef stride, at::IntArrayRef padding,
                                                     at::IntArrayRef dilation, bool ceil_mode) {
  const Pool2dProblem p =
      make_max_pool2d_problem(kMaxPool2d, input, kernel_size, stride, padding, dilation, ceil_mode, kCpuDtypes);
  const auto format = input.suggest_memory_format();
  at::Tensor y = new_output({p.N, p.C, p.P, p.Q}, input.scalar_type());
  at::Tensor idx = new_output({p.N, p.C, p.P, p.Q}, at::kLong);
  if (y.numel() > 0) {
    const at::Tensor x = input.contiguous();
    const Capability cap = cpu_settings().capability;
    const auto run = [&](auto zero) {
      using T = decltype(zero);
      max_pool2d_forward<T>(p, x.const_data_ptr<T>(), y.mutable_data_ptr<T>(), idx.mutable_data_ptr<int64_t>(), cap);
    };
    dispatch_floating(input.scalar_type(), run);
  }
  return {y.contiguous(format), idx.contiguous(format)};
}

at::Tensor max_pool2d_backward_kernel(const at::Tensor& grad_output, const at::Tensor& input,
                                      const at::Tensor& indices, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                      at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  const char* op = kMaxPool2dBackward;
  const Pool2dProblem p = make_max_pool2d_backward_problem(op, grad_output, input, indices, kernel_size, stride,
                                                           padding, dilation, ceil_mode, kCpuDtypes);
  at::Tensor dx = new_output(input.sizes(), input.scalar_type());
  if (dx.numel() > 0) {
    const at::Tensor dy = grad_output.contiguous(), idx = indices.contiguous();
    const Capability cap = cpu_settings().capability;
    bool in_range = true;
    const auto run = [&](auto zero) {
      using T = decltype(zero);
      in_range = max_pool2d_backward<T>(p, dy.const_data_ptr<T>(), idx.const_data_ptr<int64_t>(),
                                        dx.mutable_data_ptr<T>(), cap);
    };
    dispatch_floating(input.scalar_type(), run);
    // dx, still private to this call, is dropped.
    TORCH_CHECK(in_range, op, ": indices must lie in [0, H*W) = [0, ", p.H * p.W, ") of the input plane");
  }
  return dx.contiguous(input.suggest_memory_format());
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnfast, CPU, m) {
  m.impl("max_pool2d", &max_pool2d_kernel);
  m.impl("max_pool2d_backward", &max_pool2d_backward_kernel);
}

}  // namespace cnnfast::cpu