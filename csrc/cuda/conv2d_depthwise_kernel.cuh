// Depthwise conv2d (groups == C == K: one filter per channel), where the implicit GEMM would be a
// 1-wide matrix product. Direct kernels, float accumulation, NCHW and NHWC storage (the weight is
// [C, 1, R, S], the same bytes in both):
// - forward: one thread per output element sums its R*S taps, then bias and ReLU in registers
//   (common/epilogue.cuh); consecutive threads take consecutive channels (NHWC) or output columns
//   (NCHW), so loads and the one store are coalesced.
// - grad-input: one thread per input element gathers the taps whose window covers it (a tap counts
//   when (h + pad - r*dil) is a multiple of the stride and lands inside the output); grad_output may
//   be masked by a ReLU output.
// Pixels and channels are split from the linear index with one 64-bit division (split_index).
// - grad-weight: a block per (tap, split) strides over the split's (n, p, q) and reduces in a fixed
//   tree; the splits are added in order by splitk_reduce_kernel: deterministic, no atomics.
#pragma once

#include "common/epilogue.cuh"
#include "common/kernel_utils.cuh"
#include "problem.h"

namespace cnnfast {
namespace cuda {

constexpr int kDepthwiseThreads = 256;
constexpr int64_t kDepthwiseMaxBlocks = 8192;

// The problems these kernels take (host side: which path to launch).
inline bool is_depthwise(const Conv2dProblem& p) { return p.groups == p.C && p.K == p.C && p.C > 1; }

template <class T, bool NHWC>
__global__ void __launch_bounds__(kDepthwiseThreads)
    conv2d_depthwise_kernel(Conv2dProblem p, const T* x, const T* w, const T* bias, bool relu, T* y) {
  const int64_t total = p.output_numel();
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int R = static_cast<int>(p.R), S = static_cast<int>(p.S);
  const BiasReluEpilogue<T> epilogue{bias, relu};
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += stride) {
    int64_t n;
    int c, oh, ow;
    split_index<NHWC>(o, p.C, p.P, p.Q, n, c, oh, ow);
    const int h0 = oh * static_cast<int>(p.stride_h) - static_cast<int>(p.pad_h);
    const int w0 = ow * static_cast<int>(p.stride_w) - static_cast<int>(p.pad_w);
    const T* wc = w + static_cast<int64_t>(c) * R * S;
    float acc = 0.0f;
    for (int r = 0; r < R; ++r) {
      const int h = h0 + r * static_cast<int>(p.dilation_h);
      if (h < 0 || h >= p.H) continue;
      for (int s = 0; s < S; ++s) {
        const int ww = w0 + s * static_cast<int>(p.dilation_w);
        if (ww < 0 || ww >= p.W) continue;
        const int64_t xi = NHWC ? ((n * p.H + h) * p.W + ww) * p.C + c : ((n * p.C + c) * p.H + h) * p.W + ww;
        acc = fmaf(to_float(x[xi]), to_float(wc[r * S + s]), acc);
      }
    }
    epilogue.store(y, o, acc, c);
  }
}

template <class T, bool NHWC>
__global__ void __launch_bounds__(kDepthwiseThreads)
    conv2d_depthwise_grad_input_kernel(Conv2dProblem p, const T* dy, const T* mask, const T* w, T* dx) {
  const int64_t total = p.input_numel();
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int R = static_cast<int>(p.R), S = static_cast<int>(p.S);
  const int sh = static_cast<int>(p.stride_h), sw = static_cast<int>(p.stride_w);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    int64_t n;
    int c, h, ww;
    split_index<NHWC>(i, p.C, p.H, p.W, n, c, h, ww);
    const T* wc = w + static_cast<int64_t>(c) * R * S;
    float acc = 0.0f;
    for (int r = 0; r < R; ++r) {
      const int th = h + static_cast<int>(p.pad_h) - r * static_cast<int>(p.dilation_h);
      if (th < 0 || th % sh != 0 || th / sh >= p.P) continue;
      const int oh = th / sh;
      for (int s = 0; s < S; ++s) {
        const int tw = ww + static_cast<int>(p.pad_w) - s * static_cast<int>(p.dilation_w);
        if (tw < 0 || tw % sw != 0 || tw / sw >= p.Q) continue;
        const int ow = tw / sw;
        const int64_t o = NHWC ? ((n * p.P + oh) * p.Q + ow) * p.C + c : ((n * p.C + c) * p.P + oh) * p.Q + ow;
        acc = fmaf(masked(dy, mask, o), to_float(wc[r * S + s]), acc);
      }
    }
    dx[i] = from_float<T>(acc);
  }
}

template <class T, bool NHWC>
__global__ void __launch_bounds__(kDepthwiseThreads)
    conv2d_depthwise_grad_weight_kernel(Conv2dProblem p, const T* dy, const T* mask, const T* x, int64_t split_len,
                                        float* partial) {
  __shared__ float sums[kDepthwiseThreads];
  const int RS = static_cast<int>(p.R * p.S), S = static_cast<int>(p.S);
  const int64_t tap = blockIdx.x;  // c * R * S + r * S + s
  const int64_t c = tap / RS;
  const int rs = static_cast<int>(tap - c * RS), r = rs / S, s = rs - r * S;
  const int64_t rows = p.N * p.P * p.Q, PQ = p.P * p.Q;
  const int64_t begin = static_cast<int64_t>(blockIdx.y) * split_len;
  const int64_t end = begin + split_len < rows ? begin + split_len : rows;
  float acc = 0.0f;
  for (int64_t j = begin + threadIdx.x; j < end; j += kDepthwiseThreads) {
    const int64_t n = j / PQ;
    const int pq = static_cast<int>(j - n * PQ), oh = pq / static_cast<int>(p.Q), ow = pq - oh * static_cast<int>(p.Q);
    const int h = oh * static_cast<int>(p.stride_h) - static_cast<int>(p.pad_h) + r * static_cast<int>(p.dilation_h);
    const int ww = ow * static_cast<int>(p.stride_w) - static_cast<int>(p.pad_w) + s * static_cast<int>(p.dilation_w);
    if (h < 0 || h >= p.H || ww < 0 || ww >= p.W) continue;
    const int64_t o = NHWC ? j * p.C + c : (n * p.C + c) * PQ + pq;
    const int64_t xi = NHWC ? ((n * p.H + h) * p.W + ww) * p.C + c : ((n * p.C + c) * p.H + h) * p.W + ww;
    acc = fmaf(masked(dy, mask, o), to_float(x[xi]), acc);
  }
  sums[threadIdx.x] = acc;
  __syncthreads();
  for (int half = kDepthwiseThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) sums[threadIdx.x] += sums[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.y * gridDim.x + tap] = sums[0];
}

// ---- host side -------------------------------------------------------------------------------

inline LaunchConfig depthwise_config(int64_t work) {
  int64_t blocks = (work + kDepthwiseThreads - 1) / kDepthwiseThreads;
  if (blocks > kDepthwiseMaxBlocks) blocks = kDepthwiseMaxBlocks;
  if (blocks < 1) blocks = 1;
  return {dim3(static_cast<unsigned>(blocks)), dim3(kDepthwiseThreads), 0};
}

// The split of a reduction over the N*P*Q output pixels into at most kMaxPixelSplits splits of at
// least kPixelSplitRows each (fewer where there are fewer rows): the length of one split, and how
// many. Used by the depthwise grad-weight and by grad-bias (conv2d_kernel.cuh).
constexpr int64_t kPixelSplitRows = 4096, kMaxPixelSplits = 64;
inline int64_t pixel_split_len(const Conv2dProblem& p) {
  const int64_t rows = p.N * p.P * p.Q;
  int64_t splits = (rows + kPixelSplitRows - 1) / kPixelSplitRows;
  if (splits > kMaxPixelSplits) splits = kMaxPixelSplits;
  if (splits < 1) splits = 1;
  return (rows + splits - 1) / splits;
}
inline int64_t pixel_splits(const Conv2dProblem& p) {
  const int64_t rows = p.N * p.P * p.Q, len = pixel_split_len(p);
  return (rows + len - 1) / len;
}

template <class T, class Stream>
void conv2d_depthwise_forward(const Conv2dProblem& p, bool nhwc, const T* x, const T* w, const T* bias, bool relu,
                              T* y, Stream stream) {
  const LaunchConfig c = depthwise_config(p.output_numel());
  if (nhwc)
    CNNFAST_LAUNCH(c, stream, conv2d_depthwise_kernel<T, true>)(p, x, w, bias, relu, y);
  else
    CNNFAST_LAUNCH(c, stream, conv2d_depthwise_kernel<T, false>)(p, x, w, bias, relu, y);
}

template <class T, class Stream>
void conv2d_depthwise_grad_input(const Conv2dProblem& p, bool nhwc, const T* dy, const T* mask, const T* w, T* dx,
                                 Stream stream) {
  const LaunchConfig c = depthwise_config(p.input_numel());
  if (nhwc)
    CNNFAST_LAUNCH(c, stream, conv2d_depthwise_grad_input_kernel<T, true>)(p, dy, mask, w, dx);
  else
    CNNFAST_LAUNCH(c, stream, conv2d_depthwise_grad_input_kernel<T, false>)(p, dy, mask, w, dx);
}

// workspace: pixel_splits(p) * C * R * S floats.
template <class T, class Stream>
void conv2d_depthwise_grad_weight(const Conv2dProblem& p, bool nhwc, const T* dy, const T* mask, const T* x, T* dw,
                                  float* workspace, Stream stream) {
  const int64_t taps = p.C * p.R * p.S, splits = pixel_splits(p), len = pixel_split_len(p);
  const LaunchConfig c{dim3(static_cast<unsigned>(taps), static_cast<unsigned>(splits)), dim3(kDepthwiseThreads), 0};
  if (nhwc)
    CNNFAST_LAUNCH(c, stream, conv2d_depthwise_grad_weight_kernel<T, true>)(p, dy, mask, x, len, workspace);
  else
    CNNFAST_LAUNCH(c, stream, conv2d_depthwise_grad_weight_kernel<T, false>)(p, dy, mask, x, len, workspace);
  splitk_reduce(workspace, static_cast<int>(splits), taps, dw, stream);
}

}  // namespace cuda
}  // namespace cnnfast
