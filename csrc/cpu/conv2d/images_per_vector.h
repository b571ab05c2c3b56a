// Sixteen images per vector ("ipv"), the CPU conv2d's layout for small images (framework-free, float32).
// The shifted-view GEMM of forward_direct computes, per output row, the Wp - Q columns that fall in the
// padding and drops them, and its tiles round the rest up to whole vectors: a large share of the work
// on small images (LeNet, MNIST-CNN, CIFAR-ResNet; benchmarks/NOTES.md). With sixteen images side by
// side in each vector (the layout below), an output row's Q pixels are, for every tap, one contiguous
// run of 16 * Q floats at a fixed offset from the row's start: the same GEMM (gemm.h, b_off) per output row, with no dropped column, and the grad-weight
// dot-product form with runs of a whole image row. The price: one transposing copy of each operand in
// and of the output out, and batches padded to 16 images.
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/common/capability.h"
#include "cpu/conv2d/direct.h"
#include "problem.h"

namespace cnnfast::cpu {

// Images per vector: one image per lane of a 16-float vector.
constexpr int64_t kIpvLanes = 16;

// Per block of 16 images and channel, the zero-padded plane split by stride phase as in forward_direct
// (PhaseLayout), each pixel a vector of the 16 images:
//   xb[b, c, ph, pw, i, j, lane] = padded input[16 b + lane, c, sh * i + ph, sw * j + pw]
// so output row oh reads, for tap (kh, kw), Q pixels in a row of one phase plane: one run of 16 Q floats.
struct IpvLayout {
  int64_t NB, sh, sw, Hh, Wh, plane;  // plane: floats per (block, channel)
};

inline IpvLayout ipv_layout(int64_t N, int64_t H, int64_t W, int64_t ph, int64_t pw, int64_t sh, int64_t sw) {
  IpvLayout b;
  b.NB = (N + kIpvLanes - 1) / kIpvLanes, b.sh = sh, b.sw = sw;
  b.Hh = (H + 2 * ph + sh - 1) / sh, b.Wh = (W + 2 * pw + sw - 1) / sw;
  b.plane = sh * sw * b.Hh * b.Wh * kIpvLanes;
  return b;
}
inline IpvLayout ipv_layout(const Conv2dProblem& p) {
  return ipv_layout(p.N, p.H, p.W, p.pad_h, p.pad_w, p.stride_h, p.stride_w);
}
// Offset of padded element (hp, wp) in a plane of the layout.
inline int64_t ipv_offset(const IpvLayout& b, int64_t hp, int64_t wp) {
  return ((((hp % b.sh) * b.sw + wp % b.sw) * b.Hh + hp / b.sh) * b.Wh + wp / b.sw) * kIpvLanes;
}

// [N, C, H, W] -> the layout above (padding ph, pw; strides sh, sw), zero in the padding, in the
// phases' slack and past the batch's end; a full block of float32 images by register transposes on
// AVX-512 or AVX2 (a row at a time, the columns split into phases as they are stored).
// With keep (laid out as x), the elements where keep <= 0 are laid out as 0 (a gradient masked by the
// ReLU output that keep is).
template <typename T>
Buffer<T> to_ipv(const T* x, int64_t N, int64_t C, int64_t H, int64_t W, int64_t ph, int64_t pw, int64_t sh,
                 int64_t sw, Capability cap, const T* keep = nullptr);
// The inverse of to_ipv without padding or strides: [NB, K, P, Q, 16] -> [N, K, P, Q]. With residual
// (laid out as y), y = value + residual, then ReLU'd when relu, each block's rows while still in cache.
template <typename T>
void from_ipv(const T* yb, int64_t N, int64_t K, int64_t PQ, T* y, Capability cap, const T* residual = nullptr,
              bool relu = false);

// The forward in the layout, with the output left in it: yb [NB, K, P, Q, 16] (images past N computed
// from zero images).
void conv2d_forward_ipv(const Conv2dProblem& p, const float* x, const float* w, const float* bias, float* yb,
                        bool relu, Capability cap);
// The forward into y [N, K, P, Q] (through the layout). With residual (laid out as y), it is added
// before the ReLU by the copy out of the layout.
void forward_ipv(const Conv2dProblem& p, const float* x, const float* w, const float* bias, float* y, bool relu,
                 Capability cap, const float* residual = nullptr);
// Grad-weight of p with dy and x in NCHW (both laid out here).
void grad_weight_ipv(const Conv2dProblem& p, const float* dy, const float* x, float* dw, Capability cap);

// The backward from dyb, dy already in the layout with padding: plane floats per (block, channel), rows
// Wh pixels apart, dy's element (h, w) at pixel (h + ph, w + pw), zero elsewhere and in the lanes past N.
// Taken when path.h's conv2d_backward_uses_ipv (grad_input: whether dx is wanted, which pads the layout).
struct IpvPlane {
  int64_t ph, pw, Wh, plane;
};
IpvPlane conv2d_backward_ipv_layout(const Conv2dProblem& p, bool grad_input);
// dx [N, C, H, W], dw and db (each when not null, every element written).
void conv2d_backward_ipv(const Conv2dProblem& p, const float* dyb, const float* x, const float* w, float* dx,
                         float* dw, float* db, Capability cap);
// [ceil(N / 16), K, PQ, 16] -> [N, K, PQ].
void ipv_to_nchw(const float* yb, int64_t N, int64_t K, int64_t PQ, float* y, Capability cap);

}  // namespace cnnfast::cpu
