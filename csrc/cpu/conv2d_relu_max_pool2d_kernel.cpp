// CPU kernels of cnnfast::conv2d_relu_max_pool2d and its backward: max_pool2d(relu(conv2d(...))) as
// one op. The convolution (with bias and ReLU in its GEMM's store, cpu/conv2d.h) writes into a pooled
// scratch block (cpu/scratch.h) that the pooling (cpu/max_pool2d.h) reads back while it is still warm,
// so no tensor of the convolution's size is allocated, returned or kept for the backward. When the
// convolution runs with sixteen images per vector (float32, AVX-512), the pooling reads that layout as
// it is, sixteen images per compare, and only the pooled output and indices are copied out to NCHW:
// the convolution's output is never transposed.
// The backward needs only the pooled output and its indices: an element the pooling chose gets
// dy where the pooled output is > 0 (ReLU's mask, as relu(max) = max(relu)), every other element 0;
// that gradient of the convolution's output is built in scratch (masking the pooled dy first, a
// quarter of the elements for a 2x2 pool) and the convolution's gradients follow from it.
// Layouts, threads and determinism are those of the two kernels (conv2d_kernel.cpp, max_pool2d_kernel.cpp).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <type_traits>
#include <vector>

#include "checks.h"
#include "cpu/capability.h"
#include "cpu/conv2d.h"
#include "cpu/gemm.h"
#include "cpu/max_pool2d.h"
#include "cpu/scratch.h"

namespace cnnfast::cpu {
namespace {

constexpr const char* kOp = "cnnfast::conv2d_relu_max_pool2d";
constexpr const char* kBackwardOp = "cnnfast::conv2d_relu_max_pool2d_backward";
const DtypeList kCpuDtypes = {at::kFloat, at::kDouble};

template <typename F>
void dispatch_floating(at::ScalarType t, F&& f) {
  if (t == at::kFloat) {
    f(float{});
  } else {
    f(double{});
  }
}

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
        indices_to_nchw(arg.data(), p.N, p.K, out_plane, idx, cap);
        return;
      }
    }
  }
  Scratch<T> conv(p.output_numel());
  conv2d_forward_impl<T>(p, x, w, b, conv.data(), /*relu=*/true, cap);
  max_pool2d_forward_impl<T>(q, conv.data(), y, idx);
}

std::tuple<at::Tensor, at::Tensor> conv2d_relu_max_pool2d_kernel(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, at::IntArrayRef kernel_size,
    at::IntArrayRef pool_stride, at::IntArrayRef pool_padding, at::IntArrayRef pool_dilation, bool ceil_mode) {
  const ConvPoolProblem cp =
      make_conv2d_relu_max_pool2d_problem(kOp, input, weight, bias, stride, padding, dilation, groups, kernel_size,
                                          pool_stride, pool_padding, pool_dilation, ceil_mode, kCpuDtypes);
  const Pool2dProblem& q = cp.pool;
  const auto format = conv2d_memory_format(input, weight);
  at::Tensor y = input.new_empty({q.N, q.C, q.P, q.Q});
  at::Tensor indices = input.new_empty({q.N, q.C, q.P, q.Q}, input.options().dtype(at::kLong));
  if (y.numel() > 0) {
    const at::Tensor x = input.contiguous(), w = weight.contiguous();
    const bool has_bias = bias.has_value() && bias->defined();
    const at::Tensor b = has_bias ? bias->contiguous() : at::Tensor();
    const Capability cap = current_capability();
    dispatch_floating(input.scalar_type(), [&](auto zero) {
      using T = decltype(zero);
      forward<T>(cp, x.const_data_ptr<T>(), w.const_data_ptr<T>(), has_bias ? b.const_data_ptr<T>() : nullptr,
                 y.mutable_data_ptr<T>(), indices.mutable_data_ptr<int64_t>(), cap);
    });
  }
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
  if (output_mask[0]) grad_input = input.new_empty(input.sizes());
  if (output_mask[1]) grad_weight = weight.new_empty(weight.sizes());
  if (output_mask[2]) grad_bias = weight.new_empty({p.K});

  const at::Tensor dy = grad_output.contiguous(), y = output.contiguous(), idx = indices.contiguous();
  const at::Tensor x = input.contiguous(), w = weight.contiguous();
  const Capability cap = current_capability();
  dispatch_floating(input.scalar_type(), [&](auto zero) {
    using T = decltype(zero);
    const auto data = [](at::Tensor& t) { return t.defined() && t.numel() > 0 ? t.mutable_data_ptr<T>() : nullptr; };
    const int64_t pooled = q.output_numel();
    Scratch<T> g(p.output_numel());
    if (pooled > 0) {
      Scratch<T> masked(pooled);
      const T *dyp = dy.const_data_ptr<T>(), *yp = y.const_data_ptr<T>();
      at::parallel_for(0, pooled, 32768, [&](int64_t begin, int64_t end) {
        relu_mask_span(cap, dyp + begin, yp + begin, masked.data() + begin, end - begin);
      });
      const bool in_range = max_pool2d_backward_impl<T>(q, masked.data(), idx.const_data_ptr<int64_t>(), g.data());
      TORCH_CHECK(in_range, kBackwardOp, ": indices must lie in [0, P*Q) = [0, ", q.H * q.W,
                  ") of the convolution's output plane");
    }
    conv2d_backward_impl<T>(p, g.data(), x.const_data_ptr<T>(), w.const_data_ptr<T>(), data(grad_input),
                            data(grad_weight), data(grad_bias), cap);
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
