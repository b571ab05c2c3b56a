// The CPU conv2d drivers of conv2d.h: each call asks path.h which algorithm runs and hands it the
// problem, the pointers and the capability in use.
#include "cpu/conv2d/conv2d.h"

#include <algorithm>
#include <type_traits>

#include "cpu/common/parallel.h"
#include "cpu/common/scratch.h"
#include "cpu/conv2d/direct.h"
#include "cpu/conv2d/grad_weight_dot.h"
#include "cpu/conv2d/images_per_vector.h"
#include "cpu/conv2d/path.h"
#include "cpu/conv2d/winograd.h"
#include "cpu/relu/relu.h"

namespace cnnfast::cpu {

template <typename T>
void conv2d_forward(const Conv2dProblem& p, const T* x, const T* w, const T* b, T* y, bool relu,
                    const Settings& s, const T* residual) {
  const Capability cap = s.capability;
  switch (conv2d_forward_path(p, s, std::is_same_v<T, float>)) {
    case Conv2dForwardPath::kWinograd:
      if constexpr (std::is_same_v<T, float>) winograd_forward(p, x, WinoWeight{w, false}, b, y, relu, cap, residual);
      return;
    case Conv2dForwardPath::kImagesPerVector:
      if constexpr (std::is_same_v<T, float>) forward_ipv(p, x, w, b, y, relu, cap, residual);
      return;
    case Conv2dForwardPath::kPointwise:
      forward_pointwise(p, x, w, b, y, relu, cap, residual);
      return;
    case Conv2dForwardPath::kDirect:
      forward_direct(p, x, w, b, y, relu, cap, residual);
      return;
  }
}

namespace {

template <typename T>
void grad_input_impl(const Conv2dProblem& p, const T* dy, const T* w, T* dx, const Settings& s) {
  switch (conv2d_grad_input_path(p)) {
    case Conv2dGradInputPath::kAsForward: {
      const Conv2dProblem q = grad_input_problem(p);
      if constexpr (std::is_same_v<T, float>) {
        // Winograd reads the forward weight in place (winograd.h's WinoWeight).
        if (conv2d_forward_path(q, s, true) == Conv2dForwardPath::kWinograd) {
          winograd_forward(q, dy, WinoWeight{w, true}, nullptr, dx, false, s.capability);
          return;
        }
      }
      const Buffer<T> wt = flipped_weight(p, w);
      conv2d_forward<T>(q, dy, wt.data(), nullptr, dx, false, s);
      return;
    }
    case Conv2dGradInputPath::kPointwise:
      grad_input_pointwise(p, dy, w, dx, s.capability);
      return;
    case Conv2dGradInputPath::kPhase:
      grad_input_phase(p, dy, w, dx, s.capability);
      return;
  }
}

template <typename T>
void grad_weight_impl(const Conv2dProblem& p, const T* dy, const T* x, T* dw, const Settings& s) {
  const Capability cap = s.capability;
  switch (conv2d_grad_weight_path(p, s, std::is_same_v<T, float>)) {
    case Conv2dGradWeightPath::kWinograd:
      if constexpr (std::is_same_v<T, float>) winograd_grad_weight(p, dy, x, dw, cap);
      return;
    case Conv2dGradWeightPath::kImagesPerVector:
      if constexpr (std::is_same_v<T, float>) grad_weight_ipv(p, dy, x, dw, cap);
      return;
    case Conv2dGradWeightPath::kDot:
      if constexpr (std::is_same_v<T, float>) grad_weight_dot(p, dy, x, dw, cap);
      return;
    case Conv2dGradWeightPath::kDirect:
      grad_weight_direct(p, dy, x, dw, cap);
      return;
  }
}

}  // namespace

template <typename T>
void conv2d_backward(const Conv2dProblem& p, const T* dy, const T* relu_out, const T* x, const T* w, T* dx, T* dw,
                     T* db, const Settings& s) {
  if (p.output_numel() == 0) {  // an empty output: every gradient is a sum of nothing
    if (dx) std::fill(dx, dx + p.input_numel(), T(0));
    if (dw) std::fill(dw, dw + p.weight_numel(), T(0));
    if (db) std::fill(db, db + p.K, T(0));
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    // With sixteen images per vector, dy is laid out once for both gradients, masked by relu_out on
    // the way (no separate mask pass).
    if ((dx || dw) && conv2d_backward_uses_ipv(p, dx != nullptr, s)) {
      const IpvPlane l = conv2d_backward_ipv_layout(p, dx != nullptr);
      const Buffer<float> dyb = to_ipv(dy, p.N, p.K, p.P, p.Q, l.ph, l.pw, 1, 1, s.capability, relu_out);
      conv2d_backward_ipv(p, dyb.data(), x, w, dx, dw, db, s.capability);
      return;
    }
  }
  // conv2d_relu's gradient: dy masked by its output once, then the plain convolution's gradients.
  Buffer<T> masked(relu_out ? p.output_numel() : 0);
  if (relu_out) {
    relu_backward(dy, relu_out, masked.data(), p.output_numel(), s.capability);
    dy = masked.data();
  }
  if (dx) grad_input_impl<T>(p, dy, w, dx, s);
  if (dw) grad_weight_impl<T>(p, dy, x, dw, s);
  if (db) channel_sums(dy, p.N, p.K, p.P * p.Q, db);
}

template <typename T>
void channel_sums(const T* x, int64_t N, int64_t C, int64_t plane, T* s) {
  parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      constexpr int64_t kLanes = 16;
      T lane[kLanes] = {};
      for (int64_t n = 0; n < N; ++n) {
        const T* d = x + (n * C + c) * plane;
        int64_t i = 0;
        for (; i + kLanes <= plane; i += kLanes)
          for (int64_t l = 0; l < kLanes; ++l) lane[l] += d[i + l];
        for (; i < plane; ++i) lane[i % kLanes] += d[i];
      }
      T sum = T(0);
      for (int64_t l = 0; l < kLanes; ++l) sum += lane[l];
      s[c] = sum;
    }
  });
}

#define CNNFAST_INSTANTIATE(T)                                                                          \
  template void conv2d_forward<T>(const Conv2dProblem&, const T*, const T*, const T*, T*, bool, const Settings&,  \
                                  const T*);                                                                   \
  template void conv2d_backward<T>(const Conv2dProblem&, const T*, const T*, const T*, const T*, T*, T*, T*,    \
                                   const Settings&);                                                           \
  template void channel_sums<T>(const T*, int64_t, int64_t, int64_t, T*);
CNNFAST_INSTANTIATE(float)
CNNFAST_INSTANTIATE(double)
#undef CNNFAST_INSTANTIATE

}  // namespace cnnfast::cpu
