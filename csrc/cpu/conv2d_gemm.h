// CPU building blocks of conv2d as a tiled implicit GEMM, framework-free (no torch header).
//
// Mapping, for one sample n and one group g (NCHW, contiguous):
//   forward      Y[k, pix]   = b[k] + sum_r W[k, r] * col[r, pix]     (GEMM Kg x Cg*R*S x P*Q)
//   grad-input   gcol[r,pix] = sum_k W[k, r] * dY[k, pix], then col2im scatter-add into dX
//   grad-weight  dW[k, r]   += sum_pix dY[k, pix] * col[r, pix]
// where r = (c, kh, kw) runs over the reduction (Cg*R*S) and col[r, pix] is the input element that
// tap r of the kernel sees at output pixel pix (zero in the padding). The output pixels are cut into
// tiles of kTile; col is built one tile at a time in a thread-local buffer (never for a whole image).
// Every sum runs in a fixed order (r ascending, pix tiles ascending), so results do not depend on how
// the work is split over threads.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "problem.h"

namespace cnnfast::cpu {

// Output pixels per tile: a multiple of every SIMD width, small enough that a 4 x kTile block of
// accumulators and the col rows it reads stay in L1.
constexpr int64_t kTile = 64;
// Output channels per register block of the forward micro-kernel.
constexpr int64_t kRowBlock = 4;

// col[r * kTile + j] for the tile of output pixels [pix0, pix0 + len), zero past len and in padding.
// x points at the first channel of the group in one sample: [Cg, H, W].
template <typename T>
void im2col_tile(const Conv2dProblem& p, const T* x, int64_t pix0, int64_t len, T* col) {
  const int64_t Cg = p.C_per_group();
  for (int64_t c = 0; c < Cg; ++c) {
    const T* xc = x + c * p.H * p.W;
    for (int64_t kh = 0; kh < p.R; ++kh) {
      for (int64_t kw = 0; kw < p.S; ++kw) {
        T* row = col + ((c * p.R + kh) * p.S + kw) * kTile;
        int64_t oh = pix0 / p.Q, ow = pix0 % p.Q;
        for (int64_t j = 0; j < len; ++j) {
          const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dilation_h;
          const int64_t iw = ow * p.stride_w - p.pad_w + kw * p.dilation_w;
          row[j] = (ih >= 0 && ih < p.H && iw >= 0 && iw < p.W) ? xc[ih * p.W + iw] : T(0);
          if (++ow == p.Q) ow = 0, ++oh;
        }
        std::fill(row + len, row + kTile, T(0));
      }
    }
  }
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
        int64_t oh = pix0 / p.Q, ow = pix0 % p.Q;
        for (int64_t j = 0; j < len; ++j) {
          const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dilation_h;
          const int64_t iw = ow * p.stride_w - p.pad_w + kw * p.dilation_w;
          if (ih >= 0 && ih < p.H && iw >= 0 && iw < p.W) dxc[ih * p.W + iw] += row[j];
          if (++ow == p.Q) ow = 0, ++oh;
        }
      }
    }
  }
}

// ReLU as torch computes it (clamp_min(x, 0)): NaN stays NaN, -0.0 stays -0.0.
template <typename T>
inline T relu_value(T v) {
  return v < T(0) ? T(0) : v;
}

// acc[i][j] += sum_r a[(row0 + i) * a_stride_row + r * a_stride_r] * b[r * kTile + j], for i < kRowBlock:
// the register-blocked inner product shared by the forward (a = W) and grad-input (a = W^T) GEMMs.
template <typename T, int64_t kRows>
inline void gemm_block(const T* a, int64_t a_stride_row, int64_t a_stride_r, int64_t reduction, const T* b,
                       T (*acc)[kTile]) {
  for (int64_t r = 0; r < reduction; ++r) {
    const T* brow = b + r * kTile;
    for (int64_t i = 0; i < kRows; ++i) {
      const T av = a[i * a_stride_row + r * a_stride_r];
      for (int64_t j = 0; j < kTile; ++j) acc[i][j] += av * brow[j];
    }
  }
}

// Forward of one tile: y[k, pix0 + j] = epilogue(b[k] + sum_r w[k, r] * col[r, j]) for the group's
// Kg output channels; w is the group's [Kg, Cg*R*S] slice, y the sample's group slice [Kg, P*Q].
template <typename T, bool kRelu>
void conv2d_forward_tile(const Conv2dProblem& p, const T* w, const T* bias, const T* col, int64_t pix0,
                         int64_t len, T* y) {
  const int64_t Kg = p.K_per_group(), red = p.reduction(), PQ = p.P * p.Q;
  alignas(64) T acc[kRowBlock][kTile];
  for (int64_t k0 = 0; k0 < Kg; k0 += kRowBlock) {
    const int64_t rows = std::min(kRowBlock, Kg - k0);
    for (int64_t i = 0; i < rows; ++i) std::fill(acc[i], acc[i] + kTile, bias ? bias[k0 + i] : T(0));
    if (rows == kRowBlock) {
      gemm_block<T, kRowBlock>(w + k0 * red, red, 1, red, col, acc);
    } else {
      for (int64_t i = 0; i < rows; ++i) gemm_block<T, 1>(w + (k0 + i) * red, red, 1, red, col, acc + i);
    }
    for (int64_t i = 0; i < rows; ++i) {
      T* out = y + (k0 + i) * PQ + pix0;
      for (int64_t j = 0; j < len; ++j) out[j] = kRelu ? relu_value(acc[i][j]) : acc[i][j];
    }
  }
}

// Grad-input of one tile: gcol[r, j] = sum_k w[k, r] * dy[k, j] with dy the group's output-gradient
// tile already copied to [Kg, kTile] (zero past len).
template <typename T>
void conv2d_grad_col_tile(const Conv2dProblem& p, const T* w, const T* dy_tile, T* gcol) {
  const int64_t Kg = p.K_per_group(), red = p.reduction();
  alignas(64) T acc[kRowBlock][kTile];
  for (int64_t r0 = 0; r0 < red; r0 += kRowBlock) {
    const int64_t rows = std::min(kRowBlock, red - r0);
    for (int64_t i = 0; i < rows; ++i) std::fill(acc[i], acc[i] + kTile, T(0));
    // Here the GEMM's rows are taps r and its reduction runs over the output channels k.
    if (rows == kRowBlock) {
      gemm_block<T, kRowBlock>(w + r0, 1, red, Kg, dy_tile, acc);
    } else {
      for (int64_t i = 0; i < rows; ++i) gemm_block<T, 1>(w + r0 + i, 1, red, Kg, dy_tile, acc + i);
    }
    for (int64_t i = 0; i < rows; ++i) std::copy(acc[i], acc[i] + kTile, gcol + (r0 + i) * kTile);
  }
}

// sum_j a[j] * b[j] over a kTile row, in a fixed order of kLanes interleaved partial sums (a shape
// the compiler vectorizes without reassociating anything itself).
template <typename T>
inline T dot_tile(const T* a, const T* b) {
  constexpr int64_t kLanes = 16;
  T lane[kLanes] = {};
  for (int64_t j = 0; j < kTile; j += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) lane[l] += a[j + l] * b[j + l];
  for (int64_t width = kLanes / 2; width > 0; width /= 2)
    for (int64_t l = 0; l < width; ++l) lane[l] += lane[l + width];
  return lane[0];
}

// Grad-weight of one tile: dw[k, r] += sum_j dy[k, j] * col[r, j] for the group's [Kg, Cg*R*S] slice.
template <typename T>
void conv2d_grad_weight_tile(const Conv2dProblem& p, const T* dy_tile, const T* col, T* dw) {
  const int64_t Kg = p.K_per_group(), red = p.reduction();
  for (int64_t k = 0; k < Kg; ++k) {
    const T* dyk = dy_tile + k * kTile;
    T* dwk = dw + k * red;
    for (int64_t r = 0; r < red; ++r) dwk[r] += dot_tile(dyk, col + r * kTile);
  }
}

// Copy the output-gradient tile [Kg, len] of one sample's group into [Kg, kTile], zero past len;
// when mask_out is given (the fused op's stored output), zero where mask_out <= 0 (ReLU's gradient).
template <typename T>
void gather_dy_tile(const Conv2dProblem& p, const T* dy, const T* mask_out, int64_t pix0, int64_t len,
                    T* dy_tile) {
  const int64_t Kg = p.K_per_group(), PQ = p.P * p.Q;
  for (int64_t k = 0; k < Kg; ++k) {
    const T* src = dy + k * PQ + pix0;
    T* dst = dy_tile + k * kTile;
    if (mask_out) {
      const T* m = mask_out + k * PQ + pix0;
      for (int64_t j = 0; j < len; ++j) dst[j] = m[j] > T(0) ? src[j] : T(0);
    } else {
      std::copy(src, src + len, dst);
    }
    std::fill(dst + len, dst + kTile, T(0));
  }
}

}  // namespace cnnfast::cpu
