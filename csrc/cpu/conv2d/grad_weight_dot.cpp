// The dot-product grad-weight on the stride-phase layout (grad_weight_dot.h).
#include "cpu/conv2d/grad_weight_dot.h"

#include <cstring>

namespace cnnfast::cpu {

void grad_weight_dot(const Conv2dProblem& p, const float* dy, const float* x, float* dw, Capability cap) {
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group(), red = p.reduction();
  const PhaseLayout l = phase_layout(p);
  const int64_t Wp = l.Wh, plane = l.plane, PQ = p.P * p.Q;
  const int64_t V = (p.P - 1) * Wp + p.Q, Vr = (V + 15) / 16 * 16;  // kTile slack covers the last 15
  const Buffer<float> xp = padded_input(p, x, cap);
  const std::vector<int64_t> boff = tap_offsets(p);
  Buffer<float> dyp(p.N * p.K * Vr);
  parallel_for(0, p.N * p.K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t nk = begin; nk < end; ++nk) {
      const float* src = dy + nk * PQ;
      float* dst = dyp.data() + nk * Vr;
      std::fill(dst, dst + Vr, 0.0f);
      for (int64_t oh = 0; oh < p.P; ++oh) std::memcpy(dst + oh * Wp, src + oh * p.Q, p.Q * sizeof(float));
    }
  });
  // Calls of up to kDotRun pixels: a tile of a large image, or whole small images, several per call
  // (DotArgs' batch), so that each register block runs many vector steps between loading and storing
  // its lane sums.
  const int64_t klen = std::min(kDotRun, Vr), per_call = std::max<int64_t>(1, kDotRun / Vr);
  dot_grad_weight(p, cap, p.N, dw, [&](float* acc, int64_t s0, int64_t s1, int64_t g, int64_t k0, int64_t nk) {
    for (int64_t n0 = s0; n0 < s1; n0 += per_call)
      for (int64_t t0 = 0; t0 < Vr; t0 += klen)
        for (int64_t r0 = 0; r0 < red; r0 += kDotTaps) {
          DotArgs d;
          d.M = nk, d.N = std::min(kDotTaps, red - r0), d.K = std::min(klen, Vr - t0);
          d.batch = std::min(per_call, s1 - n0);
          d.a = dyp.data() + (n0 * p.K + g * Kg + k0) * Vr + t0, d.lda = Vr, d.a_bs = p.K * Vr;
          d.b = xp.data() + (n0 * p.C + g * Cg) * plane + t0, d.b_off = boff.data() + r0, d.b_bs = p.C * plane;
          d.acc = acc + r0 * dot_lanes(cap), d.ldacc = red;
          dot(cap, d);
        }
  });
}

}  // namespace cnnfast::cpu
