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

// Max pooling of planes whose pixels are vectors of 16 lanes (conv2d's sixteen-images layout, one
// image per lane): x [planes, H, W, 16] -> y and int32 indices (h * W + w) [planes, P, Q, 16], by the
// rules of max_pool2d_forward_impl. AVX-512 only: false (nothing written) on any other path.
bool max_pool2d_lanes16(const Pool2dProblem& p, int64_t planes, const float* x, float* y, int32_t* indices);
// Its backward: dx planes of dx_plane floats, all zeroed, holding H rows of W 16-lane pixels dx_row
// floats apart from dx_first (around them, e.g., a convolution's padding); each dy lane is added at its
// index, output by output in order. False when an
// index names no element of its window (dx is then partly written) or without AVX-512 (nothing written).
bool max_pool2d_backward_lanes16(const Pool2dProblem& p, int64_t planes, const float* dy, const int32_t* indices,
                                 float* dx, int64_t dx_plane, int64_t dx_row, int64_t dx_first);

}  // namespace cnnfast::cpu
