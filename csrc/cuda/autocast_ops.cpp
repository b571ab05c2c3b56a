// torch.autocast on CUDA for cnnfast::conv2d, conv2d_relu, conv2d_add_relu and conv2d_relu_max_pool2d:
// floating CUDA arguments (except float64; conv2d_add_relu's residual included) are cast to the autocast
// dtype, as torch does for torch.nn.functional.conv2d (a "lower precision" op), then the op is called
// again with autocast excluded; autograd records the casts, so gradients reach the original dtypes.
// relu and max_pool2d run in their input dtype, as torch's do.
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include <optional>

// Declared as in ATen/autocast_mode.h, which would pull in ATen/ATen.h (minutes of compile time).
namespace at::autocast {
TORCH_API at::ScalarType get_autocast_dtype(at::DeviceType device_type);
}  // namespace at::autocast

namespace cnnfast {
namespace cuda {
namespace {

using ConvSignature = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                 at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t);

at::Tensor cast(const at::Tensor& t, at::ScalarType dtype) {
  const bool eligible = t.defined() && t.is_cuda() && t.is_floating_point() && t.scalar_type() != at::kDouble;
  return eligible && t.scalar_type() != dtype ? t.to(dtype) : t;
}

template <const char* kName>
at::Tensor conv_autocast(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCUDA);
  const at::ScalarType dtype = at::autocast::get_autocast_dtype(at::kCUDA);
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow(kName, "").typed<ConvSignature>();
  std::optional<at::Tensor> b = bias;
  if (b && b->defined()) b = cast(*b, dtype);
  return op.call(cast(input, dtype), cast(weight, dtype), b, stride, padding, dilation, groups);
}

at::Tensor conv_add_relu_autocast(const at::Tensor& input, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias, const at::Tensor& residual,
                                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                  int64_t groups) {
  using Signature = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                               const at::Tensor&, at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t);
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCUDA);
  const at::ScalarType dtype = at::autocast::get_autocast_dtype(at::kCUDA);
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("cnnfast::conv2d_add_relu", "").typed<Signature>();
  std::optional<at::Tensor> b = bias;
  if (b && b->defined()) b = cast(*b, dtype);
  return op.call(cast(input, dtype), cast(weight, dtype), b, cast(residual, dtype), stride, padding, dilation,
                 groups);
}

std::tuple<at::Tensor, at::Tensor> conv_pool_autocast(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, at::IntArrayRef kernel_size,
    at::IntArrayRef pool_stride, at::IntArrayRef pool_padding, at::IntArrayRef pool_dilation, bool ceil_mode,
    bool return_indices) {
  using Signature = std::tuple<at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, at::IntArrayRef, at::IntArrayRef,
      at::IntArrayRef, int64_t, at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, bool, bool);
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCUDA);
  const at::ScalarType dtype = at::autocast::get_autocast_dtype(at::kCUDA);
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("cnnfast::conv2d_relu_max_pool2d", "").typed<Signature>();
  std::optional<at::Tensor> b = bias;
  if (b && b->defined()) b = cast(*b, dtype);
  return op.call(cast(input, dtype), cast(weight, dtype), b, stride, padding, dilation, groups, kernel_size,
                 pool_stride, pool_padding, pool_dilation, ceil_mode, return_indices);
}

constexpr char kConv2d[] = "cnnfast::conv2d";
constexpr char kConv2dRelu[] = "cnnfast::conv2d_relu";

}  // namespace

TORCH_LIBRARY_IMPL(cnnfast, AutocastCUDA, m) {
  m.impl("conv2d", &conv_autocast<kConv2d>);
  m.impl("conv2d_relu", &conv_autocast<kConv2dRelu>);
  m.impl("conv2d_add_relu", &conv_add_relu_autocast);
  m.impl("conv2d_relu_max_pool2d", &conv_pool_autocast);
}

}  // namespace cuda
}  // namespace cnnfast
