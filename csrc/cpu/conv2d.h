// The CPU conv2d kernels on raw contiguous NCHW tensors (conv2d_kernel.cpp), for the ops that run a
// convolution inside their own kernel (conv2d_relu_max_pool2d). Framework-free; float and double.
#pragma once

#include "cpu/capability.h"
#include "problem.h"

namespace cnnfast::cpu {

// y [N, K, P, Q] = conv2d(x, w) + b (b may be null), then ReLU when relu is set.
template <typename T>
void conv2d_forward_impl(const Conv2dProblem& p, const T* x, const T* w, const T* b, T* y, bool relu,
                         Capability cap);

// The gradients from dy [N, K, P, Q]: dx [N, C, H, W], dw [K, C/groups, R, S] and db [K], each
// computed when its pointer is not null (every element written).
template <typename T>
void conv2d_backward_impl(const Conv2dProblem& p, const T* dy, const T* x, const T* w, T* dx, T* dw, T* db,
                          Capability cap);

// s[c] = the sum of x[n, c, :] over n for x [N, C, plane] (grad-bias), in 16 interleaved partial sums
// per channel in a fixed order (vectorizable without reassociation by the compiler).
template <typename T>
void channel_sums(const T* x, int64_t N, int64_t C, int64_t plane, T* s);

// Sixteen images per vector (conv2d_kernel.cpp's use_batch16): the layout [ceil(N / 16), K, P, Q, 16]
// holds image 16 b + l of block b in lane l (lanes past N computed from zero images).
constexpr int64_t kLanes16 = 16;
// Whether the float32 forward of p runs in that layout.
bool conv2d_uses_lanes16(const Conv2dProblem& p, Capability cap);
// The forward (as conv2d_forward_impl) into yb in that layout, when conv2d_uses_lanes16(p, cap).
void conv2d_forward_lanes16(const Conv2dProblem& p, const float* x, const float* w, const float* b, float* yb,
                            bool relu, Capability cap);
// The backward from dyb, dy already in that layout with padding: plane floats per (block, channel),
// rows Wh pixels apart, dy's element (h, w) at pixel (h + ph, w + pw), zero elsewhere and in the lanes
// past N. Taken when conv2d_backward_lanes16_applies (float32, AVX-512, the paths conv2d_backward_impl
// would take run in that layout; grad_input: whether dx is wanted, which pads the layout).
struct Lanes16Plane {
  int64_t ph, pw, Wh, plane;
};
bool conv2d_backward_lanes16_applies(const Conv2dProblem& p, bool grad_input, Capability cap);
Lanes16Plane conv2d_backward_lanes16_layout(const Conv2dProblem& p, bool grad_input);
// As conv2d_backward_impl (the gradients not wanted are null).
void conv2d_backward_lanes16(const Conv2dProblem& p, const float* dyb, const float* x, const float* w, float* dx,
                             float* dw, float* db, Capability cap);
// [ceil(N / 16), K, PQ, 16] -> [N, K, PQ].
void lanes16_to_nchw(const float* yb, int64_t N, int64_t K, int64_t PQ, float* y, Capability cap);

}  // namespace cnnfast::cpu
