// torch.autocast on CUDA for cnnfast::conv2d and cnnfast::conv2d_relu: floating CUDA arguments
// (except float64) are cast to the autocast dtype, as torch does for torch.nn.functional.conv2d
// (a "lower precision" op), then the op is called again with autocast excluded; autograd records
// the casts, so gradients reach the original dtypes. relu and max_pool2d run in their input dtype,
// as torch's do.
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

constexpr char kConv2d[] = "cnnfast::conv2d";
constexpr char kConv2dRelu[] = "cnnfast::conv2d_relu";

}  // namespace

TORCH_LIBRARY_IMPL(cnnfast, AutocastCUDA, m) {
  m.impl("conv2d", &conv_autocast<kConv2d>);
  m.impl("conv2d_relu", &conv_autocast<kConv2dRelu>);
}

}  // namespace cuda
}  // namespace cnnfast
