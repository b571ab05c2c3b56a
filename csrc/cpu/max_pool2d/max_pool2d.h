// The CPU max_pool2d kernels on raw contiguous NCHW planes (framework-free; float and double), for the
// glue (cpu/max_pool2d_ops.cpp) and the ops that pool inside their own kernel (conv2d_relu_max_pool2d).
// max_pool2d.cpp holds the portable path and the choice of path, max_pool2d_simd.inc the SIMD one
// (compiled for AVX-512 and AVX2: max_pool2d_simd.h), windows.h the window geometry both share.
#pragma once

#include <cstdint>

#include "cpu/common/capability.h"
#include "problem.h"

namespace cnnfast::cpu {

// y and indices [N, C, P, Q] from x [N, C, H, W]; each index is h * W + w in its plane.
template <typename T>
void max_pool2d_forward(const Pool2dProblem& p, const T* x, T* y, int64_t* indices, Capability cap);

// dx [N, C, H, W] (every element written) from dy and indices [N, C, P, Q]: each dx element sums the
// dy of the windows whose index points at it; windows with no input element are skipped (their gradient
// is zero, their index may lie outside the plane). False when another index lies outside its plane
// (dx is then partly written and must be dropped).
template <typename T>
bool max_pool2d_backward(const Pool2dProblem& p, const T* dy, const int64_t* indices, T* dx, Capability cap);

// Max pooling of planes whose pixels are vectors of 16 lanes (conv2d's images-per-vector layout, one
// image per lane): x [planes, H, W, 16] -> y and int32 indices (h * W + w) [planes, P, Q, 16], by the
// rules of max_pool2d_forward. A SIMD capability (AVX-512 or AVX2) only, and no window without an
// input element: false (nothing written) otherwise.
bool max_pool2d_ipv(const Pool2dProblem& p, int64_t planes, const float* x, float* y, int32_t* indices,
                    Capability cap);
// Its backward: dx planes of dx_plane floats, all zeroed, holding H rows of W 16-lane pixels dx_row
// floats apart from dx_first (around them, e.g., a convolution's padding); each dy lane is added at its
// index, output by output in order. False when an index names no element of its window (dx is then
// partly written), or on the portable capability or with a window holding no input element (nothing
// written).
bool max_pool2d_backward_ipv(const Pool2dProblem& p, int64_t planes, const float* dy, const int32_t* indices,
                             float* dx, int64_t dx_plane, int64_t dx_row, int64_t dx_first, Capability cap);

}  // namespace cnnfast::cpu
