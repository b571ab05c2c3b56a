// The dot-product form of the CPU conv2d's grad-weight (framework-free, float32, SIMD paths only).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/common/capability.h"
#include "cpu/common/parallel.h"
#include "cpu/conv2d/direct.h"
#include "cpu/conv2d/gemm.h"
#include "problem.h"

namespace cnnfast::cpu {

// The dot-product form's work split and final sums, shared by both layouts it runs on. Items: (chunk
// of the samples, group, block of up to 16 output channels), each over every tap, so every operand is
// read once: a sample's gradient rows and input stay in cache while the item runs over blocks of 24
// taps (items of a block of taps over every sample would read the gradient once per block, from L3).
// The chunks are fixed by the problem (never by the thread count) and keep their own lane sums; each dw element then adds its lanes, chunk after chunk, in order:
// bit-identical for any thread count. accumulate(acc, s0, s1, g, k0, nk) adds samples [s0, s1) of one
// item into its zeroed lanes (acc: [k][r][lane], leading dimension = taps); `samples` counts what the
// layout calls a sample (an image, or a block of 16 of them).
constexpr int64_t kDotChunks = 8;
constexpr int64_t kDotTaps = 24;  // taps per call: 16 x 24 lane sums of 64 bytes stay in L1
// Pixels per call of the phase-layout form: 16 gradient rows of 16 KB stay in L2 while the taps run.
constexpr int64_t kDotRun = 4096;

template <typename F>
void dot_grad_weight(const Conv2dProblem& p, Capability cap, int64_t samples, float* dw, F&& accumulate) {
  const int64_t G = p.groups, Kg = p.K_per_group(), red = p.reduction(), L = dot_lanes(cap);
  constexpr int64_t kKb = 16;
  const int64_t kblocks = (Kg + kKb - 1) / kKb, chunks = std::min(samples, kDotChunks);
  const int64_t wlanes = G * Kg * red * L;
  Buffer<float> lanes(chunks * wlanes);
  parallel_for(0, chunks * G * kblocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t kb = item % kblocks, g = (item / kblocks) % G, chunk = item / (kblocks * G);
      const int64_t k0 = kb * kKb, nk = std::min(kKb, Kg - k0);
      float* acc = lanes.data() + chunk * wlanes + (g * Kg + k0) * red * L;
      std::fill(acc, acc + nk * red * L, 0.0f);
      accumulate(acc, chunk * samples / chunks, (chunk + 1) * samples / chunks, g, k0, nk);
    }
  });
  parallel_for(0, G * Kg, 1, [&](int64_t begin, int64_t end) {
    for (int64_t gk = begin; gk < end; ++gk)
      for (int64_t r = 0; r < red; ++r) {
        float sum = 0.0f;
        for (int64_t c = 0; c < chunks; ++c) {
          const float* lane = lanes.data() + c * wlanes + (gk * red + r) * L;
          for (int64_t i = 0; i < L; ++i) sum += lane[i];
        }
        dw[gk * red + r] = sum;
      }
  });
}

// Grad-weight in the dot-product form (gemm.h: DotArgs), for weights with few elements per group:
//   dw[g, k, r] = sum over samples and pixels v of dyp[n, g, k, v] * xp[n, g, tap_offset(r) + v]
// with dyp the gradient on the phase layout's pixel numbering (zero in the dropped columns and up to
// the next multiple of 16), so both operands are contiguous runs along v, every lane is used
// however few channels the layer has, and dw comes out in its own layout (no transposed partials).
// Work split and sum order: dot_grad_weight below.
// Used for few output channels per group (path.h), where the direct form's GEMM has a single vector of
// columns (partly empty below 16 channels) and is bound by its loads.
void grad_weight_dot(const Conv2dProblem& p, const float* dy, const float* x, float* dw, Capability cap);

}  // namespace cnnfast::cpu
