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

}  // namespace cnnfast::cpu
