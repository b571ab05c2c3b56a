// The CPU conv2d kernels on raw contiguous NCHW tensors (framework-free; float and double): the API
// that the ATen glue (cpu/conv2d_ops.cpp) and the fused ops (conv2d_relu_max_pool2d) call. Which
// algorithm runs is path.h's choice, from the problem and the settings the glue hands in; the paths
// are direct.h (implicit GEMM on the stride-phase layout), images_per_vector.h, grad_weight_dot.h and
// winograd.h, their GEMMs gemm.h (micro-kernels per ISA). Every result is bit-identical for any thread
// count.
#pragma once

#include <cstdint>

#include "cpu/common/settings.h"
#include "problem.h"

namespace cnnfast::cpu {

// y [N, K, P, Q] = conv2d(x, w) + b (b may be null) + residual (laid out as y; may be null), then ReLU
// when relu is set. Each path adds the residual where it writes the output (conv2d_add_relu).
template <typename T>
void conv2d_forward(const Conv2dProblem& p, const T* x, const T* w, const T* b, T* y, bool relu,
                    const Settings& s, const T* residual = nullptr);

// The gradients from dy [N, K, P, Q]: dx [N, C, H, W], dw [K, C/groups, R, S] and db [K], each computed
// when its pointer is not null (every element written). With relu_out (the output of conv2d_relu), dy
// counts only where relu_out is not <= 0 (the ReLU's gradient).
template <typename T>
void conv2d_backward(const Conv2dProblem& p, const T* dy, const T* relu_out, const T* x, const T* w, T* dx, T* dw,
                     T* db, const Settings& s);

// s[c] = the sum of x[n, c, :] over n for x [N, C, plane] (grad-bias), in 16 interleaved partial sums
// per channel in a fixed order (vectorizable without reassociation by the compiler).
template <typename T>
void channel_sums(const T* x, int64_t N, int64_t C, int64_t plane, T* s);

}  // namespace cnnfast::cpu
