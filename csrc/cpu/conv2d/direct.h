// The direct path of the CPU conv2d (framework-free): an implicit GEMM (gemm.h) on the stride-phase
// layout of the input, for every stride, padding, dilation and group count, float and double.
//   forward      Y[k, pix] = b[k] + sum_r W[k, r] * col[r, pix]   (forward_direct; forward_pointwise
//                for 1x1 stride-1 unpadded layers, which read the input itself as B)
//   grad-input   stride 1: a forward convolution of dY (grad_input_problem, flipped_weight; chosen by
//                path.h); 1x1 kernels: col2im of W^T dY (grad_input_pointwise); otherwise accumulation
//                into the phase layout (grad_input_phase)
//   grad-weight  dW[k, r] += sum_pix dY[k, pix] * col[r, pix]      (grad_weight_direct)
// where r = (c, kh, kw) runs over the reduction (Cg*R*S) and col is never built: its rows are shifted
// views of the phase layout (below).
// Threads: forward work items are (sample, group, pixel tile or output row, block of output channels),
// each output element written by one item; grad-input items are (sample, group, chunk of input
// channels), since their scatters overlap; grad-weight sums fixed chunks of the (sample, tile) list,
// chosen from the problem alone, and adds the chunks in order. Every element's sum has one fixed order,
// so every result is bit-identical for any thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/common/capability.h"
#include "cpu/common/parallel.h"
#include "cpu/common/scratch.h"
#include "cpu/conv2d/col2im.h"
#include "cpu/conv2d/gemm.h"
#include "problem.h"

namespace cnnfast::cpu {

// Scratch buffers (cpu/common/scratch.h: aligned, uninitialized, pooled per thread). Every buffer is
// filled by the parallel loops that use it (a zero-initialized std::vector would be a serial memset
// and serial page faults); its 64-byte alignment lets rows whose length is a multiple of 16 floats be
// read by whole-line vector loads.
template <typename T>
using Buffer = Scratch<T>;

// Output channels per forward work item: at least this many rows (4 register blocks of gemm.h).
constexpr int64_t kForwardMinRows = 24;


// Splits a forward GEMM's output channels into this many chunks: enough work items for every thread
// even at batch 1 (which item computes an output element never changes its sum).
inline int64_t forward_k_chunks(const Conv2dProblem& p, int64_t items) {
  const int64_t want = 2 * num_threads();
  if (items >= want) return 1;
  const int64_t by_rows = (p.K_per_group() + kForwardMinRows - 1) / kForwardMinRows;
  return std::max<int64_t>(1, std::min(by_rows, (want + items - 1) / items));
}

// Convolution without im2col. The input is copied once into a zero-padded buffer split by stride
// phase: for strides (sh, sw), xp[n, c, ph, pw, i, j] = padded input[sh * i + ph, sw * j + pw], each
// phase plane Hh x Wh. Output pixels are numbered on the phase width, v = oh * Wh + ow. Then tap
// r = (c, kh, kw) of pixel v reads, in phase ((kh * dh) % sh, (kw * dw) % sw), the element at
// v + ((kh * dh) / sh) * Wh + (kw * dw) / sw: each GEMM row (tap) is a shifted view of that buffer
// (gemm.h's b_off / a_off), for any stride and dilation. The Wh - Q columns past each row's end are
// computed and dropped (forward) or multiplied by zeros (grad-weight).
struct PhaseLayout {
  int64_t sh, sw, Hh, Wh, phase, plane;  // phase = Hh * Wh, plane = sh * sw * phase (per channel)
};

inline PhaseLayout phase_layout(const Conv2dProblem& p) {
  PhaseLayout l;
  l.sh = p.stride_h, l.sw = p.stride_w;
  l.Hh = (p.H + 2 * p.pad_h + l.sh - 1) / l.sh, l.Wh = (p.W + 2 * p.pad_w + l.sw - 1) / l.sw;
  l.phase = l.Hh * l.Wh, l.plane = l.sh * l.sw * l.phase;
  return l;
}

// A row of the layout with stride 2 across: input column w is padded column w + pad_w, so the even
// input columns sit in phase pad_w % 2 from its column pad_w / 2, the odd ones in the other phase from
// column (pad_w + 1) / 2. Their offsets from the row's start in phase 0.
struct ParityOffsets {
  int64_t even, odd;
};
inline ParityOffsets parity_offsets(const Conv2dProblem& p, const PhaseLayout& l) {
  const int64_t pe = p.pad_w % 2;
  return {pe * l.phase + p.pad_w / 2, (1 - pe) * l.phase + (p.pad_w + 1) / 2};
}

// The input in the phase layout, plus a tile of slack past the end. Only the phases some tap reads
// are filled (a 1x1 stride-2 convolution reads one phase of four); every element no input element
// lands on is zero (the padding, the phases' slack and the unread phases: GEMM tiles run past a row's
// end into them, and grad-weight multiplies what they read there by zeros, so it must be finite).
template <typename T>
Buffer<T> padded_input(const Conv2dProblem& p, const T* x, Capability cap);

// Offset of tap r = (c, kh, kw) in the phase layout, relative to the group's first channel.
std::vector<int64_t> tap_offsets(const Conv2dProblem& p);

// The forward GEMMs of every path that writes its output in place: items (sample or block of samples,
// group, unit, block of output channels), units being pixel tiles or output rows; each item runs the
// GEMM of W's rows k0.. of group g, with B and C (and N) set by set_bc(a, n, g, unit, k0).
template <typename T, typename F>
void forward_items(const Conv2dProblem& p, int64_t samples, int64_t units, const T* w, const T* bias, bool relu,
                   Capability cap, F&& set_bc) {
  const int64_t G = p.groups, Kg = p.K_per_group(), red = p.reduction();
  const int64_t base_items = samples * G * units, kchunks = forward_k_chunks(p, base_items);
  const int64_t rows_per_chunk = (Kg + kchunks - 1) / kchunks;
  parallel_for(0, base_items * kchunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t kc = item % kchunks, rest = item / kchunks;
      const int64_t u = rest % units, g = (rest / units) % G, n = rest / (units * G);
      const int64_t k0 = kc * rows_per_chunk, k1 = std::min(Kg, k0 + rows_per_chunk);
      if (k0 >= k1) continue;
      GemmArgs<T> a;
      a.M = k1 - k0, a.K = red;
      a.a = w + (g * Kg + k0) * red, a.a_rs = red, a.a_ks = 1;
      a.init = bias ? bias + g * Kg + k0 : nullptr;
      a.relu = relu;
      set_bc(a, n, g, u, k0);
      gemm(cap, a);
    }
  });
}

// forward_direct's tiles over V columns: of equal width (a multiple of 16, at most kTile), 78 columns
// as 48 + 30 rather than 64 + 14, so no tile runs the 1-vector kernel, the slowest per column.
inline int64_t tile_width(int64_t V, int64_t tiles) {
  return std::min(kTile, ((V + tiles - 1) / tiles + 15) / 16 * 16);
}

// forward_direct's tiles are whole output rows when the output is at least this wide and its rows
// fill their vectors to within a sixteenth (112 or 48 wide, not 56: a 56-wide row runs a vector a
// quarter empty, which costs more than the copy it saves).
constexpr int64_t kRowTileMin = 48;

inline bool row_tiles(const Conv2dProblem& p) {
  const int64_t padded = (p.Q + 15) / 16 * 16;
  return p.Q >= kRowTileMin && 16 * (padded - p.Q) <= p.Q;
}

// Stride 1: grad-input is the forward convolution of dy (padded by dilation * (R - 1) - pad) with the
// weight flipped in both kernel dimensions and its in/out channels swapped within each group.
inline bool grad_input_as_forward(const Conv2dProblem& p) {
  return p.stride_h == 1 && p.stride_w == 1 && p.pad_h <= p.dilation_h * (p.R - 1) &&
         p.pad_w <= p.dilation_w * (p.S - 1);
}

// The forward convolution that grad-input is when grad_input_as_forward(p): dy as its input, padded by
// dilation * (R - 1) - pad, into dx.
inline Conv2dProblem grad_input_problem(const Conv2dProblem& p) {
  Conv2dProblem q = p;
  q.C = p.K, q.H = p.P, q.W = p.Q, q.K = p.C, q.P = p.H, q.Q = p.W;
  q.pad_h = p.dilation_h * (p.R - 1) - p.pad_h, q.pad_w = p.dilation_w * (p.S - 1) - p.pad_w;
  return q;
}

// Its weight: wt[g, c, k, RS - 1 - rs] = w[g, k, c, rs], in blocks of 16 output channels k: for each c
// the block reads 16 sequential streams of w (prefetched) and writes one contiguous run of 16 * RS
// elements of wt (channel by channel, the reads would jump Cg * RS elements per k, a new page each time).
template <typename T>
Buffer<T> flipped_weight(const Conv2dProblem& p, const T* w);

// The direct kernels (direct.cpp), each writing every element of its output. With residual (laid out
// as y), the forward adds it to each finished sum before the ReLU, where the element is written.
template <typename T>
void forward_direct(const Conv2dProblem& p, const T* x, const T* w, const T* b, T* y, bool relu, Capability cap,
                    const T* residual = nullptr);
// A 1x1 convolution with stride 1 and no padding.
template <typename T>
void forward_pointwise(const Conv2dProblem& p, const T* x, const T* w, const T* b, T* y, bool relu, Capability cap,
                       const T* residual = nullptr);
// Grad-input of a 1x1 kernel: each input pixel takes at most one tap, and col2im is a strided copy.
template <typename T>
void grad_input_pointwise(const Conv2dProblem& p, const T* dy, const T* w, T* dx, Capability cap);
// Grad-input for any other stride or padding, accumulated into the phase layout.
template <typename T>
void grad_input_phase(const Conv2dProblem& p, const T* dy, const T* w, T* dx, Capability cap);
template <typename T>
void grad_weight_direct(const Conv2dProblem& p, const T* dy, const T* x, T* dw, Capability cap);

}  // namespace cnnfast::cpu
