#include "checks.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <vector>

namespace cnnfast {
namespace {

std::string dtype_list(DtypeList supported) {
  std::string s;
  for (auto t : supported) {
    if (!s.empty()) s += ", ";
    s += c10::toString(t);
  }
  return s;
}

void check_pair(const char* op, const char* arg, at::IntArrayRef v) {
  TORCH_CHECK(v.size() == 2, op, ": expected ", arg, " to have 2 elements (height, width), but got ", arg, "=",
              v);
}

void check_positive(const char* op, const char* arg, at::IntArrayRef v) {
  check_pair(op, arg, v);
  TORCH_CHECK(v[0] > 0 && v[1] > 0, op, ": ", arg, " should be greater than zero, but got ", arg, "=", v);
}

void check_non_negative(const char* op, const char* arg, at::IntArrayRef v) {
  check_pair(op, arg, v);
  TORCH_CHECK(v[0] >= 0 && v[1] >= 0, op, ": negative ", arg, " is not supported, but got ", arg, "=", v);
}

// int64 indices of a pooling's output (out_size), on input's device.
void check_indices(const char* op, const at::Tensor& indices, const at::Tensor& input, at::IntArrayRef out_size) {
  TORCH_CHECK(indices.scalar_type() == at::kLong, op, ": expected indices of dtype Long, but got ",
              indices.scalar_type());
  TORCH_CHECK(indices.device() == input.device(), op, ": expected indices on ", input.device(), ", but got ",
              indices.device());
  check_same_size(op, "indices", indices, "the pooling's output", out_size);
}

}  // namespace

void check_supported_dtype(const char* op, const char* arg, const at::Tensor& t, DtypeList supported) {
  TORCH_CHECK(t.defined(), op, ": ", arg, " is an undefined tensor");
  const auto dt = t.scalar_type();
  TORCH_CHECK(std::find(supported.begin(), supported.end(), dt) != supported.end(), op, ": ", arg,
              " has dtype ", dt, ", but cnnfast's ", t.device().type(), " kernels support only ",
              dtype_list(supported));
}

void check_same_dtype_device(const char* op, const char* arg, const at::Tensor& t, const char* ref_arg,
                             const at::Tensor& ref) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": expected ", arg, " and ", ref_arg,
              " to have the same dtype, but got ", arg, ".dtype=", t.scalar_type(), " and ", ref_arg,
              ".dtype=", ref.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), op, ": expected ", arg, " and ", ref_arg,
              " to be on the same device, but got ", arg, ".device=", t.device(), " and ", ref_arg,
              ".device=", ref.device());
}

void check_same_size(const char* op, const char* arg, const at::Tensor& t, const char* ref_arg,
                     at::IntArrayRef expected) {
  TORCH_CHECK(t.sizes() == expected, op, ": expected ", arg, " to have the size of ", ref_arg, ", ", expected,
              ", but got ", arg, " of size ", t.sizes());
}

Conv2dProblem make_conv2d_problem(const char* op, const at::Tensor& input, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                  DtypeList supported) {
  TORCH_CHECK(input.dim() == 4, op, ": expected 4D (batched) input (N, C, H, W), but got input of size: ",
              input.sizes());
  TORCH_CHECK(weight.dim() == 4, op, ": expected 4D weight (out_channels, in_channels/groups, kH, kW), ",
              "but got weight of size: ", weight.sizes());
  check_supported_dtype(op, "input", input, supported);
  check_same_dtype_device(op, "weight", weight, "input", input);
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias) check_same_dtype_device(op, "bias", *bias, "input", input);
  check_positive(op, "stride", stride);
  check_non_negative(op, "padding", padding);
  check_positive(op, "dilation", dilation);
  TORCH_CHECK(groups > 0, op, ": non-positive groups is not supported, but got groups=", groups);

  Conv2dProblem p;
  p.N = input.size(0), p.C = input.size(1), p.H = input.size(2), p.W = input.size(3);
  p.K = weight.size(0), p.R = weight.size(2), p.S = weight.size(3);
  p.stride_h = stride[0], p.stride_w = stride[1];
  p.pad_h = padding[0], p.pad_w = padding[1];
  p.dilation_h = dilation[0], p.dilation_w = dilation[1];
  p.groups = groups;

  TORCH_CHECK(p.K % groups == 0, op, ": given groups=", groups, ", expected weight to be divisible by ", groups,
              " at dimension 0 (out_channels), but got weight of size ", weight.sizes(), " instead");
  TORCH_CHECK(p.C == weight.size(1) * groups, op, ": given groups=", groups, ", weight of size ", weight.sizes(),
              ", expected input", input.sizes(), " to have ", weight.size(1) * groups,
              " channels, but got ", p.C, " channels instead");
  if (has_bias) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == p.K, op, ": given weight of size ", weight.sizes(),
                ", expected bias to be 1-dimensional with ", p.K, " elements, but got bias of size ",
                bias->sizes(), " instead");
  }
  const int64_t span_h = p.dilation_h * (p.R - 1) + 1, span_w = p.dilation_w * (p.S - 1) + 1;
  TORCH_CHECK(p.H + 2 * p.pad_h >= span_h && p.W + 2 * p.pad_w >= span_w, op,
              ": calculated padded input size per channel: (", p.H + 2 * p.pad_h, " x ", p.W + 2 * p.pad_w,
              "). Kernel size (dilated): (", span_h, " x ", span_w,
              "). Kernel size can't be greater than actual input size");
  p.compute_output_size();
  return p;
}

Pool2dProblem make_pool2d_problem(const char* op, int64_t N, int64_t C, int64_t H, int64_t W,
                                  at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                                  at::IntArrayRef dilation, bool ceil_mode, const PoolArgNames& names) {
  check_positive(op, names.kernel_size, kernel_size);
  check_positive(op, names.stride, stride);
  check_non_negative(op, names.padding, padding);
  check_positive(op, names.dilation, dilation);

  Pool2dProblem p;
  p.N = N, p.C = C, p.H = H, p.W = W;
  p.kernel_h = kernel_size[0], p.kernel_w = kernel_size[1];
  p.stride_h = stride[0], p.stride_w = stride[1];
  p.pad_h = padding[0], p.pad_w = padding[1];
  p.dilation_h = dilation[0], p.dilation_w = dilation[1];
  p.ceil_mode = ceil_mode;
  // torch's rule: padding at most half the dilated window.
  for (int d = 0; d < 2; ++d) {
    const int64_t span = dilation[d] * (kernel_size[d] - 1) + 1;
    TORCH_CHECK(padding[d] <= span / 2, op, ": pad should be at most half of effective kernel size, but got ",
                names.padding, "=", padding, ", ", names.kernel_size, "=", kernel_size, " and ", names.dilation,
                "=", dilation);
  }
  p.compute_output_size();
  TORCH_CHECK(p.P >= 1 && p.Q >= 1, op, ": given input size: (", p.C, "x", p.H, "x", p.W,
              "). Calculated output size: (", p.C, "x", p.P, "x", p.Q, "). Output size is too small (",
              names.kernel_size, "=", kernel_size, ", ", names.stride, "=", stride, ", ", names.padding, "=",
              padding, ", ", names.dilation, "=", dilation, ")");
  // A window may still fall entirely in the padding (with dilation or ceil_mode): torch accepts it and
  // so do the kernels (Pool2dProblem::window_empty).
  return p;
}

Pool2dProblem make_max_pool2d_problem(const char* op, const at::Tensor& input, at::IntArrayRef kernel_size,
                                      at::IntArrayRef stride, at::IntArrayRef padding,
                                      at::IntArrayRef dilation, bool ceil_mode, DtypeList supported) {
  TORCH_CHECK(input.dim() == 4 && input.size(1) > 0 && input.size(2) > 0 && input.size(3) > 0, op,
              ": expected 4D (batched) input (N, C, H, W) with non-zero C, H and W, but got input of size: ",
              input.sizes());
  check_supported_dtype(op, "input", input, supported);
  return make_pool2d_problem(op, input.size(0), input.size(1), input.size(2), input.size(3), kernel_size, stride,
                             padding, dilation, ceil_mode, PoolArgNames{});
}

ConvPoolProblem make_conv2d_relu_max_pool2d_problem(const char* op, const at::Tensor& input,
                                                    const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                                    at::IntArrayRef stride, at::IntArrayRef padding,
                                                    at::IntArrayRef dilation, int64_t groups,
                                                    at::IntArrayRef kernel_size, at::IntArrayRef pool_stride,
                                                    at::IntArrayRef pool_padding, at::IntArrayRef pool_dilation,
                                                    bool ceil_mode, DtypeList supported) {
  ConvPoolProblem cp;
  cp.conv = make_conv2d_problem(op, input, weight, bias, stride, padding, dilation, groups, supported);
  TORCH_CHECK(cp.conv.K > 0, op, ": the pooling needs a non-zero number of output channels, but got weight of size ",
              weight.sizes());
  cp.pool = make_pool2d_problem(op, cp.conv.N, cp.conv.K, cp.conv.P, cp.conv.Q, kernel_size, pool_stride,
                                pool_padding, pool_dilation, ceil_mode, kFusedPoolArgNames);
  return cp;
}

ConvPoolProblem make_conv2d_relu_max_pool2d_backward_problem(
    const char* op, const at::Tensor& grad_output, const at::Tensor& output, const at::Tensor& indices,
    const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef dilation, int64_t groups, at::IntArrayRef kernel_size, at::IntArrayRef pool_stride,
    at::IntArrayRef pool_padding, at::IntArrayRef pool_dilation, bool ceil_mode, DtypeList supported) {
  const ConvPoolProblem cp =
      make_conv2d_relu_max_pool2d_problem(op, input, weight, std::nullopt, stride, padding, dilation, groups,
                                          kernel_size, pool_stride, pool_padding, pool_dilation, ceil_mode, supported);
  const std::vector<int64_t> out_size{cp.pool.N, cp.pool.C, cp.pool.P, cp.pool.Q};
  check_same_dtype_device(op, "grad_output", grad_output, "input", input);
  check_same_size(op, "grad_output", grad_output, "the pooling's output", out_size);
  check_same_dtype_device(op, "output", output, "input", input);
  check_same_size(op, "output", output, "the pooling's output", out_size);
  check_indices(op, indices, input, out_size);
  return cp;
}

Conv2dProblem make_conv2d_add_relu_problem(const char* op, const at::Tensor& input, const at::Tensor& weight,
                                           const std::optional<at::Tensor>& bias, const at::Tensor& residual,
                                           at::IntArrayRef stride, at::IntArrayRef padding,
                                           at::IntArrayRef dilation, int64_t groups, DtypeList supported) {
  const Conv2dProblem p =
      make_conv2d_problem(op, input, weight, bias, stride, padding, dilation, groups, supported);
  TORCH_CHECK(residual.defined(), op, ": residual is an undefined tensor");
  check_same_dtype_device(op, "residual", residual, "input", input);
  check_same_size(op, "residual", residual, "the convolution's output", {p.N, p.K, p.P, p.Q});
  return p;
}

Conv2dProblem make_conv2d_backward_problem(const char* op, const at::Tensor& grad_output,
                                           const std::optional<at::Tensor>& output, const at::Tensor& input,
                                           const at::Tensor& weight, at::IntArrayRef stride,
                                           at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                           DtypeList supported) {
  const Conv2dProblem p =
      make_conv2d_problem(op, input, weight, std::nullopt, stride, padding, dilation, groups, supported);
  const std::vector<int64_t> out_size{p.N, p.K, p.P, p.Q};
  check_same_dtype_device(op, "grad_output", grad_output, "input", input);
  check_same_size(op, "grad_output", grad_output, "the convolution's output", out_size);
  if (output) {
    check_same_dtype_device(op, "output", *output, "input", input);
    check_same_size(op, "output", *output, "the convolution's output", out_size);
  }
  return p;
}

Pool2dProblem make_max_pool2d_backward_problem(const char* op, const at::Tensor& grad_output,
                                               const at::Tensor& input, const at::Tensor& indices,
                                               at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                               at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode,
                                               DtypeList supported) {
  const Pool2dProblem p =
      make_max_pool2d_problem(op, input, kernel_size, stride, padding, dilation, ceil_mode, supported);
  const std::vector<int64_t> out_size{p.N, p.C, p.P, p.Q};
  check_same_dtype_device(op, "grad_output", grad_output, "input", input);
  check_same_size(op, "grad_output", grad_output, "the pooling's output", out_size);
  check_indices(op, indices, input, out_size);
  return p;
}

void check_relu_backward(const char* op, const at::Tensor& grad_output, const at::Tensor& output,
                         DtypeList supported) {
  check_supported_dtype(op, "output", output, supported);
  check_same_dtype_device(op, "grad_output", grad_output, "output", output);
  check_same_size(op, "grad_output", grad_output, "output", output.sizes());
}

at::MemoryFormat conv2d_memory_format(const at::Tensor& input, const at::Tensor& weight) {
  const bool cl = input.suggest_memory_format() == at::MemoryFormat::ChannelsLast ||
                  weight.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  return cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

}  // namespace cnnfast
