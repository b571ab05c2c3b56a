// CPU kernels of cnnfast::max_pool2d and cnnfast::max_pool2d_backward.
// Work items are (sample, channel) planes of contiguous NCHW, one thread per plane; the backward
// scatters each plane's gradients into its own input plane in output order, so overlapping windows
// sum deterministically and without atomics. Channels-last and strided tensors are copied in and out
// (the output takes the input's suggested memory format, as torch's max_pool2d does).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cmath>
#include <limits>

#include "checks.h"

namespace cnnfast::cpu {
namespace {

constexpr const char* kMaxPool2d = "cnnfast::max_pool2d";
constexpr const char* kMaxPool2dBackward = "cnnfast::max_pool2d_backward";
const DtypeList kCpuDtypes = {at::kFloat, at::kDouble};

// One output plane: the maximum of each window and its index h * W + w in the input plane. A NaN
// wins over any number and the first NaN is kept (torch's rule); ties keep the first maximum.
template <typename T>
void max_pool2d_plane(const Pool2dProblem& p, const T* x, T* y, int64_t* idx) {
  for (int64_t oh = 0; oh < p.P; ++oh) {
    const int64_t h0 = oh * p.stride_h - p.pad_h;
    for (int64_t ow = 0; ow < p.Q; ++ow) {
      const int64_t w0 = ow * p.stride_w - p.pad_w;
      T best = -std::numeric_limits<T>::infinity();
      int64_t best_idx = -1;
      for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
        const int64_t ih = h0 + kh * p.dilation_h;
        if (ih < 0 || ih >= p.H) continue;
        for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
          const int64_t iw = w0 + kw * p.dilation_w;
          if (iw < 0 || iw >= p.W) continue;
          const T v = x[ih * p.W + iw];
          if (best_idx < 0 || v > best || (std::isnan(v) && !std::isnan(best))) {
            best = v;
            best_idx = ih * p.W + iw;
          }
        }
      }
      y[oh * p.Q + ow] = best;
      idx[oh * p.Q + ow] = best_idx;
    }
  }
}

std::tuple<at::Tensor, at::Tensor> max_pool2d_kernel(const at::Tensor& input, at::IntArrayRef kernel_size,
                                                     at::IntArrayRef stride, at::IntArrayRef padding,
                                                     at::IntArrayRef dilation, bool ceil_mode) {
  const Pool2dProblem p =
      make_max_pool2d_problem(kMaxPool2d, input, kernel_size, stride, padding, dilation, ceil_mode, kCpuDtypes);
  const auto format = input.suggest_memory_format();
  at::Tensor y = input.new_empty({p.N, p.C, p.P, p.Q});
  at::Tensor idx = input.new_empty({p.N, p.C, p.P, p.Q}, input.options().dtype(at::kLong));
  if (y.numel() > 0) {
    const at::Tensor x = input.contiguous();
    const auto run = [&](auto zero) {
      using T = decltype(zero);
      const T* xp = x.const_data_ptr<T>();
      T* yp = y.mutable_data_ptr<T>();
      int64_t* ip = idx.mutable_data_ptr<int64_t>();
      const int64_t in_plane = p.H * p.W, out_plane = p.P * p.Q;
      at::parallel_for(0, p.planes(), 1, [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c)
          max_pool2d_plane(p, xp + c * in_plane, yp + c * out_plane, ip + c * out_plane);
      });
    };
    if (input.scalar_type() == at::kFloat) run(float{}); else run(double{});
  }
  return {y.contiguous(format), idx.contiguous(format)};
}

at::Tensor max_pool2d_backward_kernel(const at::Tensor& grad_output, const at::Tensor& input,
                                      const at::Tensor& indices) {
  const char* op = kMaxPool2dBackward;
  TORCH_CHECK(input.dim() == 4, op, ": expected 4D input (N, C, H, W), but got input of size: ", input.sizes());
  check_supported_dtype(op, "input", input, kCpuDtypes);
  check_same_dtype_device(op, "grad_output", grad_output, "input", input);
  TORCH_CHECK(indices.scalar_type() == at::kLong, op, ": expected indices of dtype Long, but got ",
              indices.scalar_type());
  TORCH_CHECK(indices.device() == input.device(), op, ": expected indices on ", input.device(), ", but got ",
              indices.device());
  TORCH_CHECK(grad_output.dim() == 4 && grad_output.size(0) == input.size(0) &&
                  grad_output.size(1) == input.size(1),
              op, ": expected grad_output of size [", input.size(0), ", ", input.size(1),
              ", P, Q], but got grad_output of size ", grad_output.sizes());
  check_same_size(op, "indices", indices, "grad_output", grad_output.sizes());
  const int64_t planes = input.size(0) * input.size(1), in_plane = input.size(2) * input.size(3);
  const int64_t out_plane = grad_output.size(2) * grad_output.size(3);

  at::Tensor dx = input.new_empty(input.sizes());
  if (dx.numel() > 0) {
    const at::Tensor dy = grad_output.contiguous(), idx = indices.contiguous();
    const int64_t* ip = idx.const_data_ptr<int64_t>();
    // Indices come from the caller: check them all before writing anything.
    bool in_range = true;
    for (int64_t i = 0, n = idx.numel(); i < n; ++i) in_range &= ip[i] >= 0 && ip[i] < in_plane;
    TORCH_CHECK(in_range, op, ": indices must lie in [0, H*W) = [0, ", in_plane, ") of the input plane");
    const auto run = [&](auto zero) {
      using T = decltype(zero);
      const T* dyp = dy.const_data_ptr<T>();
      T* dxp = dx.mutable_data_ptr<T>();
      at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c) {
          T* dxc = dxp + c * in_plane;
          std::fill(dxc, dxc + in_plane, T(0));
          for (int64_t o = 0; o < out_plane; ++o) dxc[ip[c * out_plane + o]] += dyp[c * out_plane + o];
        }
      });
    };
    if (input.scalar_type() == at::kFloat) run(float{}); else run(double{});
  }
  return dx.contiguous(input.suggest_memory_format());
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnfast, CPU, m) {
  m.impl("max_pool2d", &max_pool2d_kernel);
  m.impl("max_pool2d_backward", &max_pool2d_backward_kernel);
}

}  // namespace cnnfast::cpu
