// The conv2d path rules of path.h.
#include "cpu/conv2d/path.h"

#include "cpu/common/simd.h"
#include "cpu/conv2d/direct.h"
#include "cpu/conv2d/gemm.h"
#include "cpu/conv2d/images_per_vector.h"
#include "cpu/conv2d/winograd.h"

namespace cnnfast::cpu {
namespace {

bool use_winograd(const Conv2dProblem& p, const Settings& s) {
  if (!winograd_applies(p)) return false;
  if (s.winograd != Switch::kAuto) return s.winograd == Switch::kOn;
  return s.capability != Capability::kDefault && p.C_per_group() >= kWinogradMinChannels &&
         p.K_per_group() >= kWinogradMinChannels;
}

// The layout needs a SIMD path (its dot-product grad-weight has no other).
bool use_images_per_vector(const Conv2dProblem& p, const Settings& s) {
  if (dot_lanes(s.capability) == 0 || p.P == 0 || p.Q == 0) return false;
  if (s.images_per_vector != Switch::kAuto) return s.images_per_vector == Switch::kOn;
  if (p.N < kIpvLanes || row_tiles(p)) return false;
  // forward_direct's columns: V on the phase width, in equal tiles of a multiple of 16.
  const int64_t V = (p.P - 1) * phase_layout(p).Wh + p.Q, tiles = (V + kTile - 1) / kTile;
  const int64_t width = tile_width(V, tiles);
  const double kept = double(p.P * p.Q) / double(tiles * width);
  const double filled = double(p.N) / double(ipv_layout(p).NB * kIpvLanes);
  return filled - kept >= kImagesPerVectorMinGain;
}

bool use_dot_grad_weight(const Conv2dProblem& p, const Settings& s) {
  return dot_lanes(s.capability) > 0 && p.K_per_group() <= kDotMaxChannels &&
         p.K_per_group() * p.reduction() <= kDotMaxWeight;
}

}  // namespace

Conv2dForwardPath conv2d_forward_path(const Conv2dProblem& p, const Settings& s, bool float32) {
  if (float32 && use_winograd(p, s)) return Conv2dForwardPath::kWinograd;
  if (float32 && use_images_per_vector(p, s)) return Conv2dForwardPath::kImagesPerVector;
  const bool pointwise = p.R == 1 && p.S == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0;
  return pointwise ? Conv2dForwardPath::kPointwise : Conv2dForwardPath::kDirect;
}

Conv2dGradInputPath conv2d_grad_input_path(const Conv2dProblem& p) {
  if (grad_input_as_forward(p)) return Conv2dGradInputPath::kAsForward;
  return p.R * p.S == 1 ? Conv2dGradInputPath::kPointwise : Conv2dGradInputPath::kPhase;
}

Conv2dGradWeightPath conv2d_grad_weight_path(const Conv2dProblem& p, const Settings& s, bool float32) {
  if (float32) {
    const Conv2dForwardPath f = conv2d_forward_path(p, s, true);
    if (f == Conv2dForwardPath::kWinograd) return Conv2dGradWeightPath::kWinograd;
    if (f == Conv2dForwardPath::kImagesPerVector && p.K_per_group() * p.reduction() <= kDotMaxWeight)
      return Conv2dGradWeightPath::kImagesPerVector;
    if (use_dot_grad_weight(p, s)) return Conv2dGradWeightPath::kDot;
  }
  return Conv2dGradWeightPath::kDirect;
}

bool conv2d_backward_uses_ipv(const Conv2dProblem& p, bool grad_input, const Settings& s) {
  if (!has_simd_movers(s.capability) || p.output_numel() == 0) return false;
  if (conv2d_grad_weight_path(p, s, true) != Conv2dGradWeightPath::kImagesPerVector) return false;
  if (!grad_input) return true;
  if (conv2d_grad_input_path(p) != Conv2dGradInputPath::kAsForward) return false;
  return conv2d_forward_path(grad_input_problem(p), s, true) == Conv2dForwardPath::kImagesPerVector;
}

}  // namespace cnnfast::cpu
