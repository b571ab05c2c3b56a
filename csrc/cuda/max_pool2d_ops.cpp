// ATen glue of the CUDA max_pool2d kernels (csrc/cuda/max_pool2d.h, max_pool2d_kernel.cuh):
// cnnfast::max_pool2d and max_pool2d_backward. Checks shared with the CPU path (csrc/checks.h), a
// device guard, the current stream, the storage order, an early return on empty tensors and a
// launch check.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "cuda/common/glue.h"
#include "cuda/max_pool2d.h"

namespace cnnfast {
namespace cuda {
namespace {

constexpr const char* kMaxPool2dBackward = "cnnfast::max_pool2d_backward";

std::tuple<at::Tensor, at::Tensor> max_pool2d_kernel(const at::Tensor& input, at::IntArrayRef kernel_size,
                                                     at::IntArrayRef stride, at::IntArrayRef padding,
                                                     at::IntArrayRef dilation, bool ceil_mode) {
  const Pool2dProblem p = make_max_pool2d_problem("cnnfast::max_pool2d", input, kernel_size, stride, padding,
                                                  dilation, ceil_mode, kCudaDtypes);
  check_pool_sizes("cnnfast::max_pool2d", p.N, p.C, p.H, p.W);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto format = input.suggest_memory_format();
  const at::Tensor x = input.contiguous(format);
  at::Tensor y = at::empty({p.N, p.C, p.P, p.Q}, input.options().memory_format(format));
  at::Tensor idx = at::empty({p.N, p.C, p.P, p.Q}, input.options().dtype(at::kLong).memory_format(format));
  if (y.numel() == 0) return {y, idx};
  C10_CUDA_CHECK(launch_max_pool2d_forward(dtype_of(x), p, is_nhwc(format), x.const_data_ptr(), y.mutable_data_ptr(),
                                           idx.mutable_data_ptr<int64_t>(), current_stream()));
  return {y, idx};
}

at::Tensor max_pool2d_backward_kernel(const at::Tensor& grad_output, const at::Tensor& input,
                                      const at::Tensor& indices, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                      at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  const char* op = kMaxPool2dBackward;
  const Pool2dProblem p = make_max_pool2d_backward_problem(op, grad_output, input, indices, kernel_size, stride,
                                                           padding, dilation, ceil_mode, kCudaDtypes);
  const c10::cuda::CUDAGuard guard(input.device());
  check_pool_sizes(op, p.N, p.C, p.H, p.W);
  const auto format = input.suggest_memory_format();
  at::Tensor dx = at::empty(input.sizes(), input.options().memory_format(format));
  if (dx.numel() == 0) return dx;
  const at::Tensor dy = grad_output.contiguous(format), idx = indices.contiguous(format);
  C10_CUDA_CHECK(launch_max_pool2d_backward(dtype_of(dx), p, is_nhwc(format), /*gather=*/true, dy.const_data_ptr(),
                                            idx.const_data_ptr<int64_t>(), dx.mutable_data_ptr(), current_stream()));
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnfast, CUDA, m) {
  m.impl("max_pool2d", &max_pool2d_kernel);
  m.impl("max_pool2d_backward", &max_pool2d_backward_kernel);
}

}  // namespace cuda
}  // namespace cnnfast
