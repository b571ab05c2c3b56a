// Problem descriptors: the sizes and arguments of one conv2d or max_pool2d call, and the shape
// arithmetic that follows from them. Framework-free (no torch, ATen or CUDA header), so the same
// struct reaches the CPU kernels, the CUDA kernels (host and device) and the argument checks.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define CNNFAST_HOST_DEVICE __host__ __device__
#else
#define CNNFAST_HOST_DEVICE
#endif

namespace cnnfast {

// Output extent of a convolution along one dimension (floor rounding, as torch).
CNNFAST_HOST_DEVICE inline int64_t conv_output_size(int64_t in, int64_t kernel, int64_t stride,
                                                    int64_t pad, int64_t dilation) {
  const int64_t span = dilation * (kernel - 1) + 1;
  const int64_t padded = in + 2 * pad;
  return padded < span ? 0 : (padded - span) / stride + 1;
}

// Output extent of a pooling window along one dimension, torch's rule: with ceil_mode the last
// window may hang over the padded input, but must start inside the input or its left padding.
CNNFAST_HOST_DEVICE inline int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride,
                                                    int64_t pad, int64_t dilation, bool ceil_mode) {
  const int64_t numerator = in + 2 * pad - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  // Floor division (numerator can be negative for a window larger than the padded input).
  int64_t out = (numerator >= 0 ? numerator / stride : -((-numerator + stride - 1) / stride)) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

// The first tap of pooling window o along one dimension at or after position 0: the window's start
// o * stride - pad, moved on by whole dilations while it is negative (torch's starting index).
CNNFAST_HOST_DEVICE inline int64_t pool_first_tap(int64_t o, int64_t stride, int64_t pad, int64_t dilation) {
  const int64_t start = o * stride - pad;
  return start >= 0 ? start : start + (-start + dilation - 1) / dilation * dilation;
}

// Whether pooling window o holds no input position along one dimension: every tap falls in the
// padding (possible with dilation, or with ceil_mode).
CNNFAST_HOST_DEVICE inline bool pool_window_misses(int64_t o, int64_t in, int64_t kernel, int64_t stride,
                                                   int64_t pad, int64_t dilation) {
  const int64_t first = pool_first_tap(o, stride, pad, dilation);
  return first >= in || (first - (o * stride - pad)) / dilation >= kernel;
}

// One 2-D convolution, NCHW view: input [N, C, H, W], weight [K, C/groups, R, S], output [N, K, P, Q].
// The letters follow the implicit-GEMM convention (CUTLASS): GEMM M = N*P*Q, N = K, reduction = C*R*S.
struct Conv2dProblem {
  int64_t N = 0, C = 0, H = 0, W = 0;  // input
  int64_t K = 0, R = 0, S = 0;         // output channels, kernel height and width
  int64_t P = 0, Q = 0;                // output height and width
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;

  CNNFAST_HOST_DEVICE int64_t C_per_group() const { return C / groups; }
  CNNFAST_HOST_DEVICE int64_t K_per_group() const { return K / groups; }
  // Reduction length of one output element: C/groups * R * S.
  CNNFAST_HOST_DEVICE int64_t reduction() const { return C_per_group() * R * S; }
  CNNFAST_HOST_DEVICE int64_t input_numel() const { return N * C * H * W; }
  CNNFAST_HOST_DEVICE int64_t output_numel() const { return N * K * P * Q; }
  CNNFAST_HOST_DEVICE int64_t weight_numel() const { return K * reduction(); }
  CNNFAST_HOST_DEVICE int64_t flops() const { return 2 * N * K * P * Q * reduction(); }

  CNNFAST_HOST_DEVICE void compute_output_size() {
    P = conv_output_size(H, R, stride_h, pad_h, dilation_h);
    Q = conv_output_size(W, S, stride_w, pad_w, dilation_w);
  }
};

// One 2-D max pooling, NCHW view: input [N, C, H, W], output and indices [N, C, P, Q].
// An index is the position h * W + w of the chosen element inside its input plane (torch's rule).
struct Pool2dProblem {
  int64_t N = 0, C = 0, H = 0, W = 0;
  int64_t P = 0, Q = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  bool ceil_mode = false;

  CNNFAST_HOST_DEVICE int64_t planes() const { return N * C; }
  CNNFAST_HOST_DEVICE int64_t input_numel() const { return N * C * H * W; }
  CNNFAST_HOST_DEVICE int64_t output_numel() const { return N * C * P * Q; }

  // A window with no input element: its output is -inf, its index empty_window_index (torch's, which
  // may lie outside the plane), and its gradient zero (it does not depend on the input).
  CNNFAST_HOST_DEVICE bool window_empty(int64_t oh, int64_t ow) const {
    return pool_window_misses(oh, H, kernel_h, stride_h, pad_h, dilation_h) ||
           pool_window_misses(ow, W, kernel_w, stride_w, pad_w, dilation_w);
  }
  CNNFAST_HOST_DEVICE int64_t empty_window_index(int64_t oh, int64_t ow) const {
    return pool_first_tap(oh, stride_h, pad_h, dilation_h) * W + pool_first_tap(ow, stride_w, pad_w, dilation_w);
  }

  CNNFAST_HOST_DEVICE void compute_output_size() {
    P = pool_output_size(H, kernel_h, stride_h, pad_h, dilation_h, ceil_mode);
    Q = pool_output_size(W, kernel_w, stride_w, pad_w, dilation_w, ceil_mode);
  }
};

// conv2d_relu_max_pool2d: the convolution and the pooling of its [N, K, P, Q] output.
struct ConvPoolProblem {
  Conv2dProblem conv;
  Pool2dProblem pool;
};

}  // namespace cnnfast
