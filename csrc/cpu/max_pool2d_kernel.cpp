// CPU kernels of cnnfast::max_pool2d and cnnfast::max_pool2d_backward.
// Work items are (sample, channel) planes of contiguous NCHW, one thread per plane; the backward
// scatters each plane's gradients into its own input plane in output order, so overlapping windows
// sum deterministically and without atomics. Channels-last and strided tensors are copied in and out
// (the output takes the input's suggested memory format, as torch's max_pool2d does).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "checks.h"

namespace cnnfast::cpu {
namespace {

constexpr const char* kMaxPool2d = "cnnfast::max_pool2d";
constexpr const char* kMaxPool2dBackward = "cnnfast::max_pool2d_backward";
const DtypeList kCpuDtypes = {at::kFloat, at::kDouble};

// The output columns [lo, hi) of a row whose window tap at kernel column kw lands inside [0, W).
inline void valid_pool_columns(const Pool2dProblem& p, int64_t kw, int64_t& lo, int64_t& hi) {
  const int64_t off = kw * p.dilation_w - p.pad_w, s = p.stride_w;  // iw = ow * s + off
  lo = std::min(p.Q, off >= 0 ? int64_t(0) : (-off + s - 1) / s);
  hi = (p.W - 1 - off) < 0 ? int64_t(0) : std::min(p.Q, (p.W - 1 - off) / s + 1);
  hi = std::max(hi, lo);
}

// One output plane: the maximum of each window and its index h * W + w in the input plane. A NaN
// wins over any number and the first NaN is kept (torch's rule); ties keep the first maximum.
// Row at a time: for each tap (kh, kw) of the window, in torch's order, one pass over the output
// row's columns whose tap is inside the input, so the inner loop is branch-free and vectorizes.
// best/arg are scratch rows of Q elements (arg < 0: no tap seen yet, the next one always wins).
// I is int32_t (vectorizes with float) unless a plane has 2^31 elements or more.
template <typename T, typename I>
void max_pool2d_plane(const Pool2dProblem& p, const T* x, T* y, int64_t* idx, T* best, I* arg) {
  for (int64_t oh = 0; oh < p.P; ++oh) {
    const int64_t h0 = oh * p.stride_h - p.pad_h;
    std::fill(arg, arg + p.Q, I(-1));
    std::fill(best, best + p.Q, T(0));
    for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
      const int64_t ih = h0 + kh * p.dilation_h;
      if (ih < 0 || ih >= p.H) continue;
      for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
        int64_t lo, hi;
        valid_pool_columns(p, kw, lo, hi);
        const I base = static_cast<I>(ih * p.W + kw * p.dilation_w - p.pad_w);
        const I s = static_cast<I>(p.stride_w);
        const T* xr = x + base;
        if (s == 1) {
          for (int64_t ow = lo; ow < hi; ++ow) {
            const T v = xr[ow], b = best[ow];
            const I a = arg[ow];
            const bool take = (a < 0) | (!(v <= b) & (b == b));
            best[ow] = take ? v : b;
            arg[ow] = take ? base + static_cast<I>(ow) : a;
          }
        } else {
          for (int64_t ow = lo; ow < hi; ++ow) {
            const T v = xr[ow * s], b = best[ow];
            const I a = arg[ow];
            const bool take = (a < 0) | (!(v <= b) & (b == b));
            best[ow] = take ? v : b;
            arg[ow] = take ? base + static_cast<I>(ow) * s : a;
          }
        }
      }
    }
    T* yr = y + oh * p.Q;
    int64_t* ir = idx + oh * p.Q;
    for (int64_t ow = 0; ow < p.Q; ++ow) {
      yr[ow] = arg[ow] < 0 ? -std::numeric_limits<T>::infinity() : best[ow];
      ir[ow] = arg[ow];
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
        std::vector<T> best(p.Q);
        if (in_plane <= INT32_MAX) {
          std::vector<int32_t> arg(p.Q);
          for (int64_t c = begin; c < end; ++c)
            max_pool2d_plane(p, xp + c * in_plane, yp + c * out_plane, ip + c * out_plane, best.data(), arg.data());
        } else {
          std::vector<int64_t> arg(p.Q);
          for (int64_t c = begin; c < end; ++c)
            max_pool2d_plane(p, xp + c * in_plane, yp + c * out_plane, ip + c * out_plane, best.data(), arg.data());
        }
      });
    };
    if (input.scalar_type() == at::kFloat) run(float{}); else run(double{});
  }
  return {y.contiguous(format), idx.contiguous(format)};
}

at::Tensor max_pool2d_backward_kernel(const at::Tensor& grad_output, const at::Tensor& input,
                                      const at::Tensor& indices, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                      at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  const char* op = kMaxPool2dBackward;
  const Pool2dProblem p = make_max_pool2d_backward_problem(op, grad_output, input, indices, kernel_size, stride,
                                                           padding, dilation, ceil_mode, kCpuDtypes);
  // On the CPU one thread owns a whole plane, so scattering in output order is deterministic already.
  const int64_t planes = p.planes(), in_plane = p.H * p.W, out_plane = p.P * p.Q;

  at::Tensor dx = input.new_empty(input.sizes());
  if (dx.numel() > 0) {
    const at::Tensor dy = grad_output.contiguous(), idx = indices.contiguous();
    const int64_t* ip = idx.const_data_ptr<int64_t>();
    // Indices come from the caller: each plane's are checked before that plane is written, and a bad
    // one fails the call after the loop (dx, still private to this call, is then dropped).
    std::atomic<bool> in_range{true};
    const auto run = [&](auto zero) {
      using T = decltype(zero);
      const T* dyp = dy.const_data_ptr<T>();
      T* dxp = dx.mutable_data_ptr<T>();
      at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c) {
          const int64_t* ic = ip + c * out_plane;
          bool ok = true;
          for (int64_t o = 0; o < out_plane; ++o) ok &= static_cast<uint64_t>(ic[o]) < static_cast<uint64_t>(in_plane);
          if (!ok) {
            in_range = false;
            continue;
          }
          T* dxc = dxp + c * in_plane;
          const T* dyc = dyp + c * out_plane;
          std::fill(dxc, dxc + in_plane, T(0));
          for (int64_t o = 0; o < out_plane; ++o) dxc[ic[o]] += dyc[o];
        }
      });
    };
    if (input.scalar_type() == at::kFloat) run(float{}); else run(double{});
    TORCH_CHECK(in_range.load(), op, ": indices must lie in [0, H*W) = [0, ", in_plane, ") of the input plane");
  }
  return dx.contiguous(input.suggest_memory_format());
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnfast, CPU, m) {
  m.impl("max_pool2d", &max_pool2d_kernel);
  m.impl("max_pool2d_backward", &max_pool2d_backward_kernel);
}

}  // namespace cnnfast::cpu
