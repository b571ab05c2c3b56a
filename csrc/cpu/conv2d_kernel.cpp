// CPU kernels of cnnfast::conv2d, conv2d_backward, conv2d_relu and conv2d_relu_backward.
// The arithmetic is in conv2d_gemm.h; this file checks (csrc/checks.cpp), lays tensors out, splits
// the work over threads with at::parallel_for and registers the kernels for the CPU dispatch key.
//
// Layout: the kernels compute on contiguous NCHW; a channels_last or strided tensor is copied in and
// the result copied out in the memory format torch would give the same call.
// Threads: forward work items are (sample, group, pixel tile), each written by one thread; grad-input
// items are (sample, group) since their col2im scatters overlap; grad-weight sums per fixed chunk of
// samples and then adds the chunks in order, so every result is bit-identical for any thread count.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <optional>
#include <vector>

#include "checks.h"
#include "cpu/conv2d_gemm.h"

namespace cnnfast::cpu {
namespace {

constexpr const char* kConv2d = "cnnfast::conv2d";
constexpr const char* kConv2dBackward = "cnnfast::conv2d_backward";
constexpr const char* kConv2dRelu = "cnnfast::conv2d_relu";
constexpr const char* kConv2dReluBackward = "cnnfast::conv2d_relu_backward";
const DtypeList kCpuDtypes = {at::kFloat, at::kDouble};

// Samples per grad-weight partial sum: fixed (not derived from the thread count) for determinism.
constexpr int64_t kWeightChunks = 8;

// Dispatch float / double without ATen/Dispatch.h's weight in this file.
template <typename F>
void dispatch_floating(at::ScalarType t, F&& f) {
  if (t == at::kFloat) {
    f(float{});
  } else {
    f(double{});
  }
}

template <typename T, bool kRelu>
void forward_impl(const Conv2dProblem& p, const T* x, const T* w, const T* b, T* y) {
  const int64_t PQ = p.P * p.Q, tiles = (PQ + kTile - 1) / kTile, G = p.groups;
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group(), red = p.reduction();
  at::parallel_for(0, p.N * G * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> col(red * kTile);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t t = item % tiles, g = (item / tiles) % G, n = item / (tiles * G);
      const int64_t pix0 = t * kTile, len = std::min(kTile, PQ - pix0);
      im2col_tile(p, x + (n * p.C + g * Cg) * p.H * p.W, pix0, len, col.data());
      conv2d_forward_tile<T, kRelu>(p, w + g * Kg * red, b ? b + g * Kg : nullptr, col.data(), pix0, len,
                                    y + (n * p.K + g * Kg) * PQ);
    }
  });
}

template <typename T>
void grad_input_impl(const Conv2dProblem& p, const T* dy, const T* mask_out, const T* w, T* dx) {
  const int64_t PQ = p.P * p.Q, tiles = (PQ + kTile - 1) / kTile, G = p.groups;
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group(), red = p.reduction();
  at::parallel_for(0, p.N * G, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> gcol(red * kTile), dy_tile(Kg * kTile);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t g = item % G, n = item / G;
      T* dxg = dx + (n * p.C + g * Cg) * p.H * p.W;
      std::fill(dxg, dxg + Cg * p.H * p.W, T(0));
      const int64_t out_off = (n * p.K + g * Kg) * PQ;
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t pix0 = t * kTile, len = std::min(kTile, PQ - pix0);
        gather_dy_tile(p, dy + out_off, mask_out ? mask_out + out_off : nullptr, pix0, len, dy_tile.data());
        conv2d_grad_col_tile(p, w + g * Kg * red, dy_tile.data(), gcol.data());
        col2im_tile_add(p, gcol.data(), pix0, len, dxg);
      }
    }
  });
}

template <typename T>
void grad_weight_impl(const Conv2dProblem& p, const T* dy, const T* mask_out, const T* x, T* dw) {
  const int64_t PQ = p.P * p.Q, tiles = (PQ + kTile - 1) / kTile, G = p.groups;
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group(), red = p.reduction();
  const int64_t chunks = std::min<int64_t>(kWeightChunks, p.N), wsize = p.weight_numel();
  std::vector<T> partial(chunks * wsize, T(0));
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> col(red * kTile), dy_tile(Kg * kTile);
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      T* acc = partial.data() + chunk * wsize;
      for (int64_t n = chunk * p.N / chunks; n < (chunk + 1) * p.N / chunks; ++n) {
        for (int64_t g = 0; g < G; ++g) {
          const int64_t out_off = (n * p.K + g * Kg) * PQ;
          for (int64_t t = 0; t < tiles; ++t) {
            const int64_t pix0 = t * kTile, len = std::min(kTile, PQ - pix0);
            im2col_tile(p, x + (n * p.C + g * Cg) * p.H * p.W, pix0, len, col.data());
            gather_dy_tile(p, dy + out_off, mask_out ? mask_out + out_off : nullptr, pix0, len,
                           dy_tile.data());
            conv2d_grad_weight_tile(p, dy_tile.data(), col.data(), acc + g * Kg * red);
          }
        }
      }
    }
  });
  at::parallel_for(0, wsize, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T s = T(0);
      for (int64_t c = 0; c < chunks; ++c) s += partial[c * wsize + i];
      dw[i] = s;
    }
  });
}

template <typename T>
void grad_bias_impl(const Conv2dProblem& p, const T* dy, const T* mask_out, T* db) {
  const int64_t PQ = p.P * p.Q;
  at::parallel_for(0, p.K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      T s = T(0);
      for (int64_t n = 0; n < p.N; ++n) {
        const int64_t off = (n * p.K + k) * PQ;
        for (int64_t j = 0; j < PQ; ++j)
          if (!mask_out || mask_out[off + j] > T(0)) s += dy[off + j];
      }
      db[k] = s;
    }
  });
}

at::Tensor conv2d_forward(const char* op, bool relu, const at::Tensor& input, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                          at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const Conv2dProblem p =
      make_conv2d_problem(op, input, weight, bias, stride, padding, dilation, groups, kCpuDtypes);
  const auto format = conv2d_memory_format(input, weight);
  at::Tensor y = input.new_empty({p.N, p.K, p.P, p.Q});
  if (y.numel() > 0) {
    const at::Tensor x = input.contiguous(), w = weight.contiguous();
    const bool has_bias = bias.has_value() && bias->defined();
    const at::Tensor b = has_bias ? bias->contiguous() : at::Tensor();
    dispatch_floating(input.scalar_type(), [&](auto zero) {
      using T = decltype(zero);
      const T* bp = has_bias ? b.const_data_ptr<T>() : nullptr;
      if (relu) {
        forward_impl<T, true>(p, x.const_data_ptr<T>(), w.const_data_ptr<T>(), bp, y.mutable_data_ptr<T>());
      } else {
        forward_impl<T, false>(p, x.const_data_ptr<T>(), w.const_data_ptr<T>(), bp, y.mutable_data_ptr<T>());
      }
    });
  }
  return y.contiguous(format);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_backward(
    const char* op, const at::Tensor& grad_output, const std::optional<at::Tensor>& output,
    const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef dilation, int64_t groups, std::array<bool, 3> output_mask) {
  const Conv2dProblem p =
      make_conv2d_problem(op, input, weight, std::nullopt, stride, padding, dilation, groups, kCpuDtypes);
  const std::vector<int64_t> out_size{p.N, p.K, p.P, p.Q};
  check_same_dtype_device(op, "grad_output", grad_output, "input", input);
  check_same_size(op, "grad_output", grad_output, "the convolution's output", out_size);
  if (output) {
    check_same_dtype_device(op, "output", *output, "input", input);
    check_same_size(op, "output", *output, "the convolution's output", out_size);
  }
  at::Tensor grad_input, grad_weight, grad_bias;
  if (output_mask[0]) grad_input = input.new_empty(input.sizes());
  if (output_mask[1]) grad_weight = weight.new_empty(weight.sizes());
  if (output_mask[2]) grad_bias = weight.new_empty({p.K});

  const at::Tensor dy = grad_output.contiguous(), x = input.contiguous(), w = weight.contiguous();
  const at::Tensor mask = output ? output->contiguous() : at::Tensor();
  dispatch_floating(input.scalar_type(), [&](auto zero) {
    using T = decltype(zero);
    const T* m = output ? mask.const_data_ptr<T>() : nullptr;
    const bool empty_output = p.output_numel() == 0;
    if (grad_input.defined() && grad_input.numel() > 0) {
      if (empty_output) {
        grad_input.zero_();
      } else {
        grad_input_impl<T>(p, dy.const_data_ptr<T>(), m, w.const_data_ptr<T>(), grad_input.mutable_data_ptr<T>());
      }
    }
    if (grad_weight.defined() && grad_weight.numel() > 0) {
      if (empty_output) {
        grad_weight.zero_();
      } else {
        grad_weight_impl<T>(p, dy.const_data_ptr<T>(), m, x.const_data_ptr<T>(), grad_weight.mutable_data_ptr<T>());
      }
    }
    if (grad_bias.defined() && grad_bias.numel() > 0) {
      grad_bias_impl<T>(p, dy.const_data_ptr<T>(), m, grad_bias.mutable_data_ptr<T>());
    }
  });
  if (grad_input.defined()) grad_input = grad_input.contiguous(input.suggest_memory_format());
  if (grad_weight.defined()) grad_weight = grad_weight.contiguous(weight.suggest_memory_format());
  return {grad_input, grad_weight, grad_bias};
}

at::Tensor conv2d_kernel(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                         int64_t groups) {
  return conv2d_forward(kConv2d, false, input, weight, bias, stride, padding, dilation, groups);
}

at::Tensor conv2d_relu_kernel(const at::Tensor& input, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  return conv2d_forward(kConv2dRelu, true, input, weight, bias, stride, padding, dilation, groups);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, std::array<bool, 3> output_mask) {
  return conv2d_backward(kConv2dBackward, grad_output, std::nullopt, input, weight, stride, padding, dilation,
                         groups, output_mask);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_relu_backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
    std::array<bool, 3> output_mask) {
  return conv2d_backward(kConv2dReluBackward, grad_output, output, input, weight, stride, padding, dilation,
                         groups, output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnfast, CPU, m) {
  m.impl("conv2d", &conv2d_kernel);
  m.impl("conv2d_backward", &conv2d_backward_kernel);
  m.impl("conv2d_relu", &conv2d_relu_kernel);
  m.impl("conv2d_relu_backward", &conv2d_relu_backward_kernel);
}

}  // namespace cnnfast::cpu
