// The CPU conv2d_relu_max_pool2d kernels on raw contiguous NCHW tensors (framework-free; float and
// double): max_pool2d(relu(conv2d(...))) without the convolution's output ever becoming a tensor.
#pragma once

#include <cstdint>

#include "cpu/common/settings.h"
#include "problem.h"

namespace cnnfast::cpu {

// y and indices [N, K, P', Q'] (the pooled output; indices into the convolution's planes, h * Q + w);
// indices may be null (none wanted).
template <typename T>
void conv2d_relu_max_pool2d_forward(const ConvPoolProblem& cp, const T* x, const T* w, const T* b, T* y,
                                    int64_t* indices, const Settings& s);

// The gradients from dy, the pooled output y and its indices: dx, dw and db, each when not null (every
// element written). False when an index lies outside its plane (the gradients are then partly written
// and must be dropped).
template <typename T>
bool conv2d_relu_max_pool2d_backward(const ConvPoolProblem& cp, const T* dy, const T* y, const int64_t* indices,
                                     const T* x, const T* w, T* dx, T* dw, T* db, const Settings& s);

}  // namespace cnnfast::cpu
