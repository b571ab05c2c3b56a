// max_pool2d forward and backward, NCHW (contiguous) and NHWC (channels_last) storage.
//
// Forward: one thread per output element (grid-stride, 64-bit indices). In NHWC consecutive
// threads take consecutive channels of one output pixel, so every load and store is coalesced;
// in NCHW they take consecutive output columns of one plane. The index of the winner is
// h * W + w within its input plane (torch's rule); a NaN wins over any number and the last NaN
// in window order is kept (as torch's CPU and CUDA kernels); ties keep the first maximum. As torch's,
// the value starts at -inf and the index at the first tap at or after (0, 0): a window with no input
// element (possible with dilation or ceil_mode) gives -inf and that index, which may lie outside the
// plane.
//
// Backward, two kernels, both deterministic and free of atomics, both summing overlapping windows
// in increasing output order (the order of a sequential scatter, so the CPU kernel's bits):
// - gather (max_pool2d_backward_gather): one thread per input element visits the windows that
//   contain it and sums the gradients of those whose index names it; one write per element. It
//   needs the window arguments (a full Pool2dProblem). A window with no input element contains no
//   element, so it is never visited.
// - plane scatter (max_pool2d_backward_planes): one thread per (n, c) plane zeroes the plane and
//   adds each output's gradient at its index, in output order, skipping the outputs of windows with
//   no input element. In NHWC consecutive threads take consecutive channels, so its loads and stores
//   are coalesced.
// cnnfast::max_pool2d_backward (which carries the window arguments) launches the gather.
// The gradient of a window with no input element is zero (its index, torch's, may even lie inside
// the plane). An index outside [0, H*W) is never matched or written (nothing out of bounds, whatever
// the caller passes).
#pragma once

#include "common/kernel_utils.cuh"
#include "problem.h"

namespace cnnfast {
namespace cuda {

constexpr int kPoolThreads = 256;
constexpr int64_t kPoolMaxBlocks = 8192;

template <class T, bool NHWC>
__global__ void __launch_bounds__(kPoolThreads)
    max_pool2d_forward_kernel(Pool2dProblem p, const T* x, T* y, int64_t* indices) {
  const int64_t total = p.output_numel();
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += stride) {
    int64_t n;
    int c, oh, ow;
    split_index<NHWC>(o, p.C, p.P, p.Q, n, c, oh, ow);
    // Element (h, w) of this (n, c) plane is at base + h * row + w * col.
    const int64_t row = NHWC ? p.W * p.C : p.W;
    const int64_t col = NHWC ? p.C : 1;
    const T* base = NHWC ? x + n * p.H * p.W * p.C + c : x + (n * p.C + c) * p.H * p.W;
    const int h0 = oh * static_cast<int>(p.stride_h) - static_cast<int>(p.pad_h);
    const int w0 = ow * static_cast<int>(p.stride_w) - static_cast<int>(p.pad_w);
    const int kernel_h = static_cast<int>(p.kernel_h), kernel_w = static_cast<int>(p.kernel_w);
    // torch's rule: the value starts at -inf and the index at the window's first tap at or after
    // (0, 0) (Pool2dProblem::empty_window_index), so a window with no input element keeps both.
    float best = -__int_as_float(0x7f800000);
    int64_t best_idx = p.empty_window_index(oh, ow);
    for (int kh = 0; kh < kernel_h; ++kh) {
      const int ih = h0 + kh * static_cast<int>(p.dilation_h);
      if (ih < 0 || ih >= p.H) continue;
      for (int kw = 0; kw < kernel_w; ++kw) {
        const int iw = w0 + kw * static_cast<int>(p.dilation_w);
        if (iw < 0 || iw >= p.W) continue;
        const float v = to_float(base[ih * row + iw * col]);
        if (v > best || is_nan(v)) {
          best = v;
          best_idx = static_cast<int64_t>(ih) * p.W + iw;
        }
      }
    }
    y[o] = from_float<T>(best);
    indices[o] = best_idx;
  }
}

template <class T, bool NHWC>
__global__ void __launch_bounds__(kPoolThreads)
    max_pool2d_backward_gather_kernel(Pool2dProblem p, const T* dy, const int64_t* indices, T* dx) {
  const int64_t total = p.input_numel();
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    int64_t n;
    int c, h, w;
    split_index<NHWC>(i, p.C, p.H, p.W, n, c, h, w);
    const int64_t me = static_cast<int64_t>(h) * p.W + w;
    const int64_t row = NHWC ? p.Q * p.C : p.Q;
    const int64_t col = NHWC ? p.C : 1;
    const int64_t base = NHWC ? n * p.P * p.Q * p.C + c : (n * p.C + c) * p.P * p.Q;
    float sum = 0.0f;
    // Window oh contains row h when h = oh * stride_h - pad_h + kh * dilation_h for some kh;
    // kh from last to first visits oh in increasing order.
    const int sh = static_cast<int>(p.stride_h), sw = static_cast<int>(p.stride_w);
    for (int kh = static_cast<int>(p.kernel_h) - 1; kh >= 0; --kh) {
      const int th = h + static_cast<int>(p.pad_h) - kh * static_cast<int>(p.dilation_h);
      if (th < 0 || th % sh != 0) continue;
      const int oh = th / sh;
      if (oh >= p.P) continue;
      for (int kw = static_cast<int>(p.kernel_w) - 1; kw >= 0; --kw) {
        const int tw = w + static_cast<int>(p.pad_w) - kw * static_cast<int>(p.dilation_w);
        if (tw < 0 || tw % sw != 0) continue;
        const int ow = tw / sw;
        if (ow >= p.Q) continue;
        const int64_t o = base + oh * row + ow * col;
        if (indices[o] == me) sum += to_float(dy[o]);
      }
    }
    dx[i] = from_float<T>(sum);
  }
}

template <class T, bool NHWC>
__global__ void __launch_bounds__(kPoolThreads)
    max_pool2d_backward_planes_kernel(Pool2dProblem p, const T* dy, const int64_t* indices, T* dx) {
  const int64_t planes = p.planes(), in_plane = p.H * p.W, out_plane = p.P * p.Q;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t pl = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; pl < planes; pl += stride) {
    const int64_t n = pl / p.C, c = pl % p.C;
    // Element e of this plane's input is dxp[e * step], output o is at dyp[o * step].
    const int64_t step = NHWC ? p.C : 1;
    T* dxp = NHWC ? dx + n * in_plane * p.C + c : dx + pl * in_plane;
    const T* dyp = NHWC ? dy + n * out_plane * p.C + c : dy + pl * out_plane;
    const int64_t* ip = NHWC ? indices + n * out_plane * p.C + c : indices + pl * out_plane;
    for (int64_t e = 0; e < in_plane; ++e) dxp[e * step] = from_float<T>(0.0f);
    for (int64_t o = 0; o < out_plane; ++o) {
      if (p.window_empty(o / p.Q, o % p.Q)) continue;
      const int64_t e = ip[o * step];
      if (e >= 0 && e < in_plane) dxp[e * step] = from_float<T>(to_float(dxp[e * step]) + to_float(dyp[o * step]));
    }
  }
}

inline LaunchConfig pool_config(int64_t work) {
  int64_t blocks = (work + kPoolThreads - 1) / kPoolThreads;
  if (blocks > kPoolMaxBlocks) blocks = kPoolMaxBlocks;
  if (blocks < 1) blocks = 1;
  return {dim3(static_cast<unsigned>(blocks)), dim3(kPoolThreads), 0};
}

// x [N, C, H, W] in NCHW or NHWC storage; y and indices [N, C, P, Q] in the same storage order.
template <class T, class Stream>
void max_pool2d_forward(const Pool2dProblem& p, bool nhwc, const T* x, T* y, int64_t* indices, Stream stream) {
  if (nhwc)
    CNNFAST_LAUNCH(pool_config(p.output_numel()), stream, max_pool2d_forward_kernel<T, true>)(p, x, y, indices);
  else
    CNNFAST_LAUNCH(pool_config(p.output_numel()), stream, max_pool2d_forward_kernel<T, false>)(p, x, y, indices);
}

// dy and indices [N, C, P, Q], dx [N, C, H, W], all in the same storage order; both kernels read
// every field of p.
template <class T, class Stream>
void max_pool2d_backward(const Pool2dProblem& p, bool nhwc, bool gather, const T* dy, const int64_t* indices,
                         T* dx, Stream stream) {
  const LaunchConfig g = pool_config(p.input_numel()), s = pool_config(p.planes());
  if (gather && nhwc)
    CNNFAST_LAUNCH(g, stream, max_pool2d_backward_gather_kernel<T, true>)(p, dy, indices, dx);
  else if (gather)
    CNNFAST_LAUNCH(g, stream, max_pool2d_backward_gather_kernel<T, false>)(p, dy, indices, dx);
  else if (nhwc)
    CNNFAST_LAUNCH(s, stream, max_pool2d_backward_planes_kernel<T, true>)(p, dy, indices, dx);
  else
    CNNFAST_LAUNCH(s, stream, max_pool2d_backward_planes_kernel<T, false>)(p, dy, indices, dx);
}

}  // namespace cuda
}  // namespace cnnfast
