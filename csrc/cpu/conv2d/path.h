// Which algorithm each CPU conv2d call takes: the path rules of conv2d, all in one place
// (framework-free). The measured reason for each threshold is in benchmarks/NOTES.md ("conv2d path
// rules"); the code keeps the rule.
//
// Forward (conv2d_forward_path):
//   kWinograd         float32 3x3, stride 1, dilation 1, with at least kWinogradMinChannels input and
//                     output channels per group, on a SIMD path (AVX-512 or AVX2; the portable one
//                     was not measured and keeps the direct path)
//   kImagesPerVector  float32 on a SIMD path with at least 16 images, when the columns the direct path
//                     computes and drops outweigh the batch's padding to a multiple of 16 by
//                     kImagesPerVectorMinGain of the work (small images: LeNet, MNIST, CIFAR)
//   kPointwise        1x1, stride 1, no padding: the input itself is the GEMM's B
//   kDirect           every other case (any stride, padding, dilation, groups; float64)
// Grad-input (conv2d_grad_input_path): stride 1 with padding at most dilation * (R - 1) is a forward
// convolution of dy (which conv2d_forward_path then chooses for); 1x1 kernels otherwise scatter with
// col2im; everything else accumulates into the stride-phase layout.
// Grad-weight (conv2d_grad_weight_path): Winograd where the forward takes it; images per vector where
// the forward would and the weight's lane sums fit (kDotMaxWeight); the dot-product form for at most
// kDotMaxChannels output channels per group on a SIMD path; else the direct GEMM.
// The switches of settings.h override the two layout choices: winograd and images_per_vector "on"
// take them wherever they apply (any capability with SIMD, any channel count), "off" never.
#pragma once

#include <cstdint>

#include "cpu/common/settings.h"
#include "problem.h"

namespace cnnfast::cpu {

constexpr int64_t kWinogradMinChannels = 16;
constexpr double kImagesPerVectorMinGain = 0.10;
constexpr int64_t kDotMaxChannels = 16;
constexpr int64_t kDotMaxWeight = 16384;  // Kg * CgRS per group: the lane sums then fit in 1 MB

enum class Conv2dForwardPath { kWinograd, kImagesPerVector, kPointwise, kDirect };
enum class Conv2dGradInputPath { kAsForward, kPointwise, kPhase };
enum class Conv2dGradWeightPath { kWinograd, kImagesPerVector, kDot, kDirect };

Conv2dForwardPath conv2d_forward_path(const Conv2dProblem& p, const Settings& s, bool float32);
Conv2dGradInputPath conv2d_grad_input_path(const Conv2dProblem& p);
Conv2dGradWeightPath conv2d_grad_weight_path(const Conv2dProblem& p, const Settings& s, bool float32);
// Whether the float32 backward runs wholly in the images-per-vector layout (AVX-512 or AVX2: the layout's
// transposes), dy laid out once for both gradients; grad_input: whether dx is wanted.
bool conv2d_backward_uses_ipv(const Conv2dProblem& p, bool grad_input, const Settings& s);

}  // namespace cnnfast::cpu
