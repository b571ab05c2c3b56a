// Argument checks and problem construction for every cnnfast op, shared by the CPU and CUDA glue
// (and so by every backend): one place for the rules and the words of the errors. Every check runs
// before any output is allocated. Messages name the argument and its value, as torch's own do.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <initializer_list>
#include <optional>

#include "dtypes.h"
#include "problem.h"

namespace cnnfast {

// input, weight and bias: ranks, dtypes, devices, arguments, channel arithmetic, sizes.
Conv2dProblem make_conv2d_problem(const char* op, const at::Tensor& input, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                  DtypeList supported);

// conv2d_add_relu: the convolution's checks, then residual against its output [N, K, P, Q] (size,
// dtype and device).
Conv2dProblem make_conv2d_add_relu_problem(const char* op, const at::Tensor& input, const at::Tensor& weight,
                                           const std::optional<at::Tensor>& bias, const at::Tensor& residual,
                                           at::IntArrayRef stride, at::IntArrayRef padding,
                                           at::IntArrayRef dilation, int64_t groups, DtypeList supported);

// The names a pooling's window arguments have in an op's schema (the words of its errors).
struct PoolArgNames {
  const char* kernel_size = "kernel_size";
  const char* stride = "stride";
  const char* padding = "padding";
  const char* dilation = "dilation";
};
inline constexpr PoolArgNames kFusedPoolArgNames{"kernel_size", "pool_stride", "pool_padding", "pool_dilation"};

// A max pooling of an [N, C, H, W] input: the window arguments' checks and the output size.
Pool2dProblem make_pool2d_problem(const char* op, int64_t N, int64_t C, int64_t H, int64_t W,
                                  at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                                  at::IntArrayRef dilation, bool ceil_mode, const PoolArgNames& names);

// input and the window arguments of max_pool2d.
Pool2dProblem make_max_pool2d_problem(const char* op, const at::Tensor& input, at::IntArrayRef kernel_size,
                                      at::IntArrayRef stride, at::IntArrayRef padding,
                                      at::IntArrayRef dilation, bool ceil_mode, DtypeList supported);

// conv2d_relu_max_pool2d: the convolution and the pooling of its [N, K, P, Q] output.
ConvPoolProblem make_conv2d_relu_max_pool2d_problem(const char* op, const at::Tensor& input,
                                                    const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                                    at::IntArrayRef stride, at::IntArrayRef padding,
                                                    at::IntArrayRef dilation, int64_t groups,
                                                    at::IntArrayRef kernel_size, at::IntArrayRef pool_stride,
                                                    at::IntArrayRef pool_padding, at::IntArrayRef pool_dilation,
                                                    bool ceil_mode, DtypeList supported);

// conv2d_relu_max_pool2d_backward: the forward call's problems, with grad_output, the stored (pooled)
// output and its int64 indices checked against the pooling's output [N, K, P', Q'].
ConvPoolProblem make_conv2d_relu_max_pool2d_backward_problem(
    const char* op, const at::Tensor& grad_output, const at::Tensor& output, const at::Tensor& indices,
    const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef dilation, int64_t groups, at::IntArrayRef kernel_size, at::IntArrayRef pool_stride,
    at::IntArrayRef pool_padding, at::IntArrayRef pool_dilation, bool ceil_mode, DtypeList supported);

// conv2d_backward and conv2d_relu_backward: the forward call's problem, with grad_output (and the
// fused op's stored output, when given) checked against that call's output.
Conv2dProblem make_conv2d_backward_problem(const char* op, const at::Tensor& grad_output,
                                           const std::optional<at::Tensor>& output, const at::Tensor& input,
                                           const at::Tensor& weight, at::IntArrayRef stride,
                                           at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                           DtypeList supported);

// max_pool2d_backward: the forward call's problem, with grad_output and the int64 indices checked
// against that call's output [N, C, P, Q]. (The indices' values are checked by the kernels.)
Pool2dProblem make_max_pool2d_backward_problem(const char* op, const at::Tensor& grad_output,
                                               const at::Tensor& input, const at::Tensor& indices,
                                               at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                               at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode,
                                               DtypeList supported);

// relu_backward: grad_output against the forward's output.
void check_relu_backward(const char* op, const at::Tensor& grad_output, const at::Tensor& output,
                         DtypeList supported);

// A floating tensor with a kernel in `supported`, e.g. the input of relu.
void check_supported_dtype(const char* op, const char* arg, const at::Tensor& t, DtypeList supported);

// `t` has exactly the sizes `expected` (e.g. a gradient against the tensor it is the gradient of).
void check_same_size(const char* op, const char* arg, const at::Tensor& t, const char* ref_arg,
                     at::IntArrayRef expected);

// `t` has the dtype and device of `ref`.
void check_same_dtype_device(const char* op, const char* arg, const at::Tensor& t, const char* ref_arg,
                             const at::Tensor& ref);

// torch's rule for the layout of a convolution's output: channels_last when the input or the weight
// suggests it, NCHW otherwise.
at::MemoryFormat conv2d_memory_format(const at::Tensor& input, const at::Tensor& weight);

}  // namespace cnnfast
