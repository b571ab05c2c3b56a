// CPU kernels of cnnfast::conv2d_relu_max_pool2d and its backward: max_pool2d(relu(conv2d(...))) as
// one op. The convolution (with bias and ReLU in its GEMM's store, cpu/conv2d.h) writes into a pooled
// scratch block (cpu/scratch.h) that the pooling (cpu/max_pool2d.h) reads back while it is still warm,
// so no tensor of the convolution's size is allocated, returned or kept for the backward. When the
// convolution runs with sixteen images per vector (float32, AVX-512), the pooling reads that layout as
// it is, sixteen images per compare, and only the pooled output and indices are copied out to NCHW:
// the convolution's output is never transposed.
// The backward needs only the pooled output and its indices: an element the pooling chose gets
// dy where the pooled output is not <= 0 (ReLU's mask, as relu(max) = max(relu)), every other element 0;
// that gradient of the convolution's output is built in scratch (masking the pooled dy first, a
// quarter of the elements for a 2x2 pool) and the convolution's gradients follow from it. When those
// gradients run with sixteen images per vector, the masked pooled gradient and the indices are
// transposed into that layout (not the convolution's four times larger gradient) and the pooling's
// backward writes the convolution's output gradient straight into it, padded as grad-input reads it.
// Layouts, threads and determinism are those of the two kernels (conv2d_kernel.cpp, max_pool2d_kernel.cpp).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <climits>
#include <optional>
#include <type_traits>

#include "checks.h"
#include "cpu/capability.h"
#include "cpu/conv2d.h"
#include "cpu/dispatch.h"
#include "cpu/gemm.h"
#include "cpu/max_pool2d.h"
#include "cpu/output_cache.h"
#include "cpu/scratch.h"

namespace cnnfast::cpu {
namespace {

constexpr const char* kOp = "cnnfast::conv2d_relu_max_pool2d";
constexpr const char* kBackwardOp = "cnnfast::conv2d_relu_max_pool2d_backward";
const DtypeList kCpuDtypes = {at::kFloat, at::kDouble};

// [ceil(N / 16), K, PQ, 16] int32 -> [N, K, PQ] int64, a block of 16 images at a time by register
// transposes that widen as they store.
void indices_to_nchw(const int32_t* ib, int64_t N, int64_t K, int64_t PQ, int64_t* idx, Capability cap) {
  const int64_t NB = (N + kLanes16 - 1) / kLanes16;
  at::parallel_for(0, NB * K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bk = begin; bk < end; ++bk) {
      const int64_t b = bk / K, k = bk % K, lanes = std::min(kLanes16, N - b * kLanes16);
      const int32_t* src = ib + bk * PQ * kLanes16;
      int64_t* dst = idx + (b * kLanes16 * K + k) * PQ;
      if (lanes == kLanes16 && cap == Capability::kAvx512) {
        lanes16_to_rows_i64_avx512(src, dst, K * PQ, PQ);
        continue;
      }
      for (int64_t l = 0; l < lanes; ++l)
        for (int64_t i = 0; i < PQ; ++i) dst[l * K * PQ + i] = src[i * kLanes16 + l];
    }
  });
}

// The forward: in the sixteen-images layout throughout when the convolution runs in it, otherwise
// the convolution into scratch and the pooling from it.
template <typename T>
void forward(const ConvPoolProblem& cp, const T* x, const T* w, const T* b, T* y, int64_t* idx, Capability cap) {
  // idx null: no indices wanted (the pools write them to scratch, the lane layout's are not copied out).
  const Conv2dProblem& p = cp.conv;
  const Pool2dProblem& q = cp.pool;
  if constexpr (std::is_same_v<T, float>) {
    if (cap == Capability::kAvx512 && conv2d_uses_lanes16(p, cap)) {
      const int64_t planes = (p.N + kLanes16 - 1) / kLanes16 * p.K, out_plane = q.P * q.Q;
      Scratch<float> pooled(planes * out_plane * kLanes16);
      Scratch<int32_t> arg(planes * out_plane * kLanes16);
      Scratch<float> yb(planes * p.P * p.Q * kLanes16);
      conv2d_forward_lanes16(p, x, w, b, yb.data(), /*relu=*/true, cap);
      if (max_pool2d_lanes16(q, planes, yb.data(), pooled.data(), arg.data())) {
        lanes16_to_nchw(pooled.data(), p.N, p.K, out_plane, y, cap);
        if (idx) indices_to_nchw(arg.data(), p.N, p.K, out_plane, idx, cap);
        return;
      }
    }
  }
  Scratch<T> conv(p.output_numel());
  Scratch<int64_t> unused(idx ? 0 : q.output_numel());
  conv2d_forward_impl<T>(p, x, w, b, conv.data(), /*relu=*/true, cap);
  max_pool2d_forward_impl<T>(q, conv.data(), y, idx ? idx : unused.data());
}

// The backward in the sixteen-images layout (see the top of the file); false, with nothing written,
// when the convolution's gradients do not run in it or an index names no element of its window.
bool backward_lanes16(const ConvPoolProblem& cp, const float* masked, const int64_t* idx, const float* x,
                      const float* w, float* dx, float* dw, Capability cap) {
  const Conv2dProblem& p = cp.conv;
  const Pool2dProblem& q = cp.pool;
  if (!conv2d_backward_lanes16_applies(p, dx != nullptr, cap)) return false;
  const Lanes16Plane l = conv2d_backward_lanes16_layout(p, dx != nullptr);
  const int64_t NB = (p.N + kLanes16 - 1) / kLanes16, planes = NB * p.K, out_plane = q.P * q.Q;
  Scratch<float> gl(planes * out_plane * kLanes16);
  Scratch<int32_t> il(planes * out_plane * kLanes16);
  at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t b = c / p.K, k = c % p.K, lanes = std::min(kLanes16, p.N - b * kLanes16);
      const int64_t from = (b * kLanes16 * p.K + k) * out_plane, ld = p.K * out_plane;
      float* gd = gl.data() + c * out_plane * kLanes16;
      int32_t* id = il.data() + c * out_plane * kLanes16;
      if (lanes == kLanes16) {
        rows_to_lanes16_avx512(masked + from, ld, gd, kLanes16, out_plane);
        rows_i64_to_lanes16_avx512(idx + from, ld, id, out_plane);
        continue;
      }
      // The last, partial block: the lanes past N add a zero at lane 0's index (a valid one).
      for (int64_t i = 0; i < out_plane; ++i)
        for (int64_t j = 0; j < kLanes16; ++j) {
          const int64_t src = from + (j < lanes ? j : 0) * ld + i;
          gd[i * kLanes16 + j] = j < lanes ? masked[src] : 0.0f;
          id[i * kLanes16 + j] = static_cast<int32_t>(std::clamp<int64_t>(idx[src], INT32_MIN, INT32_MAX));
        }
    }
  });
  Scratch<float> dyb(planes * l.plane);
  if (!max_pool2d_backward_lanes16(q, planes, gl.data(), il.data(), dyb.data(), l.plane, l.Wh * kLanes16,
                                   (l.ph * l.Wh + l.pw) * kLanes16))
    return false;
  conv2d_backward_lanes16(p, dyb.data(), x, w, dx, dw, nullptr, cap);
  return true;
}

std::tuple<at::Tensor, at::Tensor> conv2d_relu_max_pool2d_kernel(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, at::IntArrayRef kernel_size,
    at::IntArrayRef pool_stride, at::IntArrayRef pool_padding, at::IntArrayRef pool_dilation, bool ceil_mode,
    bool return_indices) {
  const ConvPoolProblem cp =
      make_conv2d_relu_max_pool2d_problem(kOp, input, weight, bias, stride, padding, dilation, groups, kernel_size,
                                          pool_stride, pool_padding, pool_dilation, ceil_mode, kCpuDtypes);
  const Pool2dProblem& q = cp.pool;
  const auto format = conv2d_memory_format(input, weight);
  at::Tensor y = new_output({q.N, q.C, q.P, q.Q}, input.scalar_type());
  at::Tensor indices = return_indices ? new_output({q.N, q.C, q.P, q.Q}, at::kLong)
                                      : input.new_empty({0}, input.options().dtype(at::kLong));
  if (y.numel() > 0) {
    const at::Tensor x = input.contiguous(), w = weight.contiguous();
    const bool has_bias = bias.has_value() && bias->defined();
    const at::Tensor b = has_bias ? bias->contiguous() : at::Tensor();
    const Capability cap = current_capability();
    dispatch_floating(input.scalar_type(), [&](auto zero) {
      using T = decltype(zero);
      forward<T>(cp, x.const_data_ptr<T>(), w.const_data_ptr<T>(), has_bias ? b.const_data_ptr<T>() : nullptr,
                 y.mutable_data_ptr<T>(), return_indices ? indices.mutable_data_ptr<int64_t>() : nullptr, cap);
    });
  }
  if (!return_indices) return {y.contiguous(format), indices};
  return {y.contiguous(format), indices.contiguous(format)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_relu_max_pool2d_backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& output, const at::Tensor& indices, const at::Tensor& input,
    const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
    int64_t groups, at::IntArrayRef kernel_size, at::IntArrayRef pool_stride, at::IntArrayRef pool_padding,
    at::IntArrayRef pool_dilation, bool ceil_mode, std::array<bool, 3> output_mask) {
  const ConvPoolProblem cp = make_conv2d_relu_max_pool2d_backward_problem(
      kBackwardOp, grad_output, output, indices, input, weight, stride, padding, dilation, groups, kernel_size,
      pool_stride, pool_padding, pool_dilation, ceil_mode, kCpuDtypes);
  const Conv2dProblem& p = cp.conv;
  const Pool2dProblem& q = cp.pool;
  at::Tensor grad_input, grad_weight, grad_bias;
  if (output_mask[0]) grad_input = new_output(input.sizes(), input.scalar_type());
  if (output_mask[1]) grad_weight = new_output(weight.sizes(), weight.scalar_type());
  if (output_mask[2]) grad_bias = new_output({p.K}, weight.scalar_type());

  const at::Tensor dy = grad_output.contiguous(), y = output.contiguous(), idx = indices.contiguous();
  const at::Tensor x = input.contiguous(), w = weight.contiguous();
  const Capability cap = current_capability();
  dispatch_floating(input.scalar_type(), [&](auto zero) {
    using T = decltype(zero);
    const auto data = [](at::Tensor& t) { return t.defined() && t.numel() > 0 ? t.mutable_data_ptr<T>() : nullptr; };
    const int64_t pooled = q.output_numel();
    const T *xp = x.const_data_ptr<T>(), *wp = w.const_data_ptr<T>();
    if (pooled > 0) {
      Scratch<T> masked(pooled);
      const T *dyp = dy.const_data_ptr<T>(), *yp = y.const_data_ptr<T>();
      const int64_t* ip = idx.const_data_ptr<int64_t>();
      at::parallel_for(0, pooled, 32768, [&](int64_t begin, int64_t end) {
        relu_mask_span(cap, dyp + begin, yp + begin, masked.data() + begin, end - begin);
      });
      // grad-bias: every pooled gradient lands on one element of the convolution's output, so the
      // channel's sum is the sum of its masked pooled gradient (a quarter of the terms for a 2x2 pool).
      if (T* db = data(grad_bias)) channel_sums(masked.data(), q.N, q.C, q.P * q.Q, db);
      if constexpr (std::is_same_v<T, float>) {
        if (cap == Capability::kAvx512 &&
            backward_lanes16(cp, masked.data(), ip, xp, wp, data(grad_input), data(grad_weight), cap))
          return;
      }
      Scratch<T> g(p.output_numel());
      const bool in_range = max_pool2d_backward_impl<T>(q, masked.data(), ip, g.data());
      TORCH_CHECK(in_range, kBackwardOp, ": indices must lie in [0, P*Q) = [0, ", q.H * q.W,
                  ") of the convolution's output plane");
      conv2d_backward_impl<T>(p, g.data(), xp, wp, data(grad_input), data(grad_weight), nullptr, cap);
      return;
    }
    // An empty batch: every gradient is a sum of nothing (dy is not read).
    conv2d_backward_impl<T>(p, nullptr, xp, wp, data(grad_input), data(grad_weight), data(grad_bias), cap);
  });
  if (grad_input.defined()) grad_input = grad_input.contiguous(input.suggest_memory_format());
  if (grad_weight.defined()) grad_weight = grad_weight.contiguous(weight.suggest_memory_format());
  return {grad_input, grad_weight, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnfast, CPU, m) {
  m.impl("conv2d_relu_max_pool2d", &conv2d_relu_max_pool2d_kernel);
  m.impl("conv2d_relu_max_pool2d_backward", &conv2d_relu_max_pool2d_backward_kernel);
}

}  // namespace cnnfast::cpu
