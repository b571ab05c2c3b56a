// CPU building blocks of conv2d as a tiled implicit GEMM, framework-free (no torch header).
//
// Mapping, for one sample n and one group g (NCHW, contiguous):
//   forward      Y[k, pix]   = b[k] + sum_r W[k, r] * col[r, pix]     (GEMM Kg x Cg*R*S x P*Q)
//   grad-input   stride 1: a forward convolution of dY with the flipped, transposed weight;
//                otherwise gcol[r, pix] = sum_k W[k, r] * dY[k, pix], then col2im scatter-add into dX
//   grad-weight  dW[k, r]   += sum_pix dY[k, pix] * col[r, pix]
// where r = (c, kh, kw) runs over the reduction (Cg*R*S) and col[r, pix] is the input element that
// tap r of the kernel sees at output pixel pix (zero in the padding). col is never built: the
// forward and grad-weight read it as shifted views of a padded copy of the input (direct.h);
// this header keeps the col2im of the strided grad-input. The output pixels are cut into tiles of
// kTile. The GEMMs themselves are in gemm.h (portable, AVX2 and AVX-512 paths). Every sum runs in a
// fixed order, so results do not depend on how the work is split over threads.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "problem.h"

namespace cnnfast::cpu {

// Output pixels per tile: a multiple of every SIMD width; the forward GEMM's column block.
constexpr int64_t kTile = 64;

// Calls f(j, oh, ow0, n) for each run of the tile's pixels [pix0, pix0 + len) that lies on one
// output row oh: tile columns j .. j+n-1 are output columns ow0 .. ow0+n-1.
template <typename F>
inline void for_each_row_run(const Conv2dProblem& p, int64_t pix0, int64_t len, F&& f) {
  int64_t j = 0, oh = pix0 / p.Q, ow = pix0 % p.Q;
  while (j < len) {
    const int64_t n = std::min(len - j, p.Q - ow);
    f(j, oh, ow, n);
    j += n, ++oh, ow = 0;
  }
}

// The valid output columns [lo, hi) of a row run starting at ow0 of n columns, for kernel column
// kw: those whose input column iw = ow * stride - pad + kw * dilation lies in [0, W).
inline void valid_columns(const Conv2dProblem& p, int64_t kw, int64_t ow0, int64_t n, int64_t& lo, int64_t& hi) {
  const int64_t off = kw * p.dilation_w - p.pad_w;  // iw = ow * s + off
  const int64_t s = p.stride_w;
  // ow >= ceil(-off / s) and ow * s + off <= W - 1
  int64_t first = off >= 0 ? 0 : (-off + s - 1) / s;
  int64_t last_excl = (p.W - 1 - off) < 0 ? 0 : (p.W - 1 - off) / s + 1;
  lo = std::clamp(first - ow0, int64_t(0), n);
  hi = std::clamp(last_excl - ow0, lo, n);
}

// dx[c, ih, iw] += gcol[r, j] for every tap r = (c, kh, kw) and pixel j of the tile that lands inside
// the input; dx points at the first channel of the group in one sample.
template <typename T>
void col2im_tile_add(const Conv2dProblem& p, const T* gcol, int64_t pix0, int64_t len, T* dx) {
  const int64_t Cg = p.C_per_group();
  for (int64_t c = 0; c < Cg; ++c) {
    T* dxc = dx + c * p.H * p.W;
    for (int64_t kh = 0; kh < p.R; ++kh) {
      for (int64_t kw = 0; kw < p.S; ++kw) {
        const T* row = gcol + ((c * p.R + kh) * p.S + kw) * kTile;
        for_each_row_run(p, pix0, len, [&](int64_t j, int64_t oh, int64_t ow0, int64_t n) {
          const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dilation_h;
          if (ih < 0 || ih >= p.H) return;
          int64_t lo, hi;
          valid_columns(p, kw, ow0, n, lo, hi);
          T* dst = dxc + ih * p.W + (ow0 + lo) * p.stride_w - p.pad_w + kw * p.dilation_w;
          const T* src = row + j;
          if (p.stride_w == 1) {
            for (int64_t t = lo; t < hi; ++t) dst[t - lo] += src[t];
          } else {
            for (int64_t t = lo; t < hi; ++t) dst[(t - lo) * p.stride_w] += src[t];
          }
        });
      }
    }
  }
}

// ReLU as torch computes it (clamp_min(x, 0)): NaN stays NaN, -0.0 stays -0.0.
template <typename T>
inline T relu_value(T v) {
  return v < T(0) ? T(0) : v;
}

}  // namespace cnnfast::cpu
