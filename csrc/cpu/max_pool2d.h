// The CPU max_pool2d kernels on raw contiguous NCHW planes (max_pool2d_kernel.cpp), for the ops that
// pool inside their own kernel (conv2d_relu_max_pool2d). Framework-free; float and double.
#pragma once

#include <cstdint>

#include "problem.h"

namespace cnnfast::cpu {

// y and indices [N, C, P, Q] from x [N, C, H, W]; each index is h * W + w in its plane.
template <typename T>
void max_pool2d_forward_impl(const Pool2dProblem& p, const T* x, T* y, int64_t* indices);

// dx [N, C, H, W] (every element written) from dy and indices [N, C, P, Q]: each dx element sums the
// dy of the windows whose index points at it. False when an index lies outside its plane (dx is then
// partly written and must be dropped).
template <typename T>
bool max_pool2d_backward_impl(const Pool2dProblem& p, const T* dy, const int64_t* indices, T* dx);

}  // namespace cnnfast::cpu
