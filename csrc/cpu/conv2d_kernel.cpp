// CPU kernels of cnnfast::conv2d, conv2d_backward, conv2d_relu and conv2d_relu_backward.
// The arithmetic is in conv2d_gemm.h (im2col/im2row tiles) and gemm.h (one GEMM shape with AVX-512,
// AVX2 and portable paths, chosen per call by cpu/capability.h); this file checks (csrc/checks.cpp),
// lays tensors out, splits the work over threads with at::parallel_for and registers the kernels.
// Paths, by rule (each documented where it is chosen): float32 3x3 stride-1 layers with enough
// channels go through Winograd F(2x2, 3x3) (winograd.h, winograd.cpp; use_winograd); float32 layers on
// small images with at least 16 of them run with sixteen images per vector (use_batch16); the rest
// take the direct path on the stride-phase layout (forward_direct, grad_weight_direct or the
// dot-product grad_weight_dot). Scratch buffers come from a per-thread pool (scratch.h).
//
// Layout: the kernels compute on contiguous NCHW; a channels_last or strided tensor is copied in and
// the result copied out in the memory format torch would give the same call.
// Threads: forward work items are (sample, group, pixel tile or output row, block of output channels),
// each output element written by one item; grad-input with stride 1 is a forward convolution of dy
// (flipped, transposed weight), otherwise items are (sample, group) since their col2im scatters
// overlap; grad-weight sums fixed chunks of the samples (or of the (sample, tile) list), chosen from
// the problem alone, and adds the chunks in order. Every element's sum has one fixed order, so every
// result is bit-identical for any thread count.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <type_traits>
#include <vector>

#include "checks.h"
#include "cpu/capability.h"
#include "cpu/conv2d.h"
#include "cpu/dispatch.h"
#include "cpu/conv2d_gemm.h"
#include "cpu/gemm.h"
#include "cpu/output_cache.h"
#include "cpu/scratch.h"
#include "cpu/winograd.h"

namespace cnnfast::cpu {
namespace {

constexpr const char* kConv2d = "cnnfast::conv2d";
constexpr const char* kConv2dBackward = "cnnfast::conv2d_backward";
constexpr const char* kConv2dRelu = "cnnfast::conv2d_relu";
constexpr const char* kConv2dReluBackward = "cnnfast::conv2d_relu_backward";
const DtypeList kCpuDtypes = {at::kFloat, at::kDouble};

// Samples per grad-weight partial sum: fixed (not derived from the thread count) for determinism.
constexpr int64_t kWeightChunks = 8;

// Scratch buffers (cpu/scratch.h: aligned, uninitialized, pooled per thread). Every buffer below is
// filled by the parallel loops that use it (a zero-initialized std::vector would be a serial memset
// and serial page faults); its 64-byte alignment lets rows whose length is a multiple of 16 floats be
// read by whole-line vector loads.
template <typename T>
using Buffer = Scratch<T>;

// Splits a forward GEMM's output channels into this many chunks: enough work items for every thread
// even at batch 1 (which item computes an output element never changes its sum).
inline int64_t forward_k_chunks(const Conv2dProblem& p, int64_t items) {
  const int64_t want = 2 * at::get_num_threads();
  if (items >= want) return 1;
  const int64_t by_rows = (p.K_per_group() + 23) / 24;  // at least 24 rows (4 register blocks) each
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
Buffer<T> padded_input(const Conv2dProblem& p, const T* x, Capability cap) {
  const PhaseLayout l = phase_layout(p);
  std::vector<char> used_h(l.sh, 0), used_w(l.sw, 0);
  for (int64_t kh = 0; kh < p.R; ++kh) used_h[(kh * p.dilation_h) % l.sh] = 1;
  for (int64_t kw = 0; kw < p.S; ++kw) used_w[(kw * p.dilation_w) % l.sw] = 1;
  // Phase (a, b) row i is padded row i * sh + a, input row i * sh + a - pad_h: the rows [i0[a], i1[a])
  // hold input; columns [j0[b], j1[b]) likewise (empty for an unread phase).
  std::vector<int64_t> i0(l.sh), i1(l.sh), j0(l.sw), j1(l.sw);
  const auto range = [](int64_t phase, int64_t step, int64_t pad, int64_t size, int64_t len, int64_t& lo, int64_t& hi) {
    lo = std::min(len, std::max<int64_t>(0, (pad - phase + step - 1) / step));
    hi = std::clamp<int64_t>((size + pad - phase + step - 1) / step, lo, len);
  };
  for (int64_t a = 0; a < l.sh; ++a) {
    range(a, l.sh, p.pad_h, p.H, l.Hh, i0[a], i1[a]);
    if (!used_h[a]) i1[a] = i0[a];
  }
  for (int64_t b = 0; b < l.sw; ++b) {
    range(b, l.sw, p.pad_w, p.W, l.Wh, j0[b], j1[b]);
    if (!used_w[b]) j1[b] = j0[b];
  }
  const bool split2 = std::is_same_v<T, float> && l.sw == 2 && cap == Capability::kAvx512;
  Buffer<T> xp(p.N * p.C * l.plane + kTile);
  std::fill(xp.data() + p.N * p.C * l.plane, xp.data() + p.N * p.C * l.plane + kTile, T(0));
  at::parallel_for(0, p.N * p.C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const T* src = x + nc * p.H * p.W;
      T* dst = xp.data() + nc * l.plane;
      // The zeros first: each phase's rows outside [i0, i1) whole, the others outside [j0, j1) (or the
      // whole plane in one pass when most of it is padding, or small).
      if (2 * p.H * p.W < l.plane || l.plane < 4096) {
        std::fill(dst, dst + l.plane, T(0));
      } else {
        for (int64_t a = 0; a < l.sh; ++a)
          for (int64_t b = 0; b < l.sw; ++b) {
            T* ph = dst + (a * l.sw + b) * l.phase;
            if (j1[b] == j0[b]) {
              std::fill(ph, ph + l.phase, T(0));
              continue;
            }
            std::fill(ph, ph + i0[a] * l.Wh, T(0));
            std::fill(ph + i1[a] * l.Wh, ph + l.phase, T(0));
            for (int64_t i = i0[a]; i < i1[a]; ++i) {
              std::fill(ph + i * l.Wh, ph + i * l.Wh + j0[b], T(0));
              std::fill(ph + i * l.Wh + j1[b], ph + (i + 1) * l.Wh, T(0));
            }
          }
      }
      for (int64_t h = 0; h < p.H; ++h) {
        const int64_t hp = h + p.pad_h;
        if (!used_h[hp % l.sh]) continue;
        T* row = dst + (hp % l.sh) * l.sw * l.phase + (hp / l.sh) * l.Wh;
        const T* srow = src + h * p.W;
        if (l.sw == 1) {
          std::memcpy(row + p.pad_w, srow, p.W * sizeof(T));
          continue;
        }
        if constexpr (std::is_same_v<T, float>) {
          if (split2 && used_w[0] && used_w[1]) {
            const ParityOffsets o = parity_offsets(p, l);
            split_columns2_avx512(srow, p.W, row + o.even, row + o.odd);
            continue;
          }
        }
        for (int64_t pw = 0; pw < l.sw; ++pw) {
          if (!used_w[pw]) continue;
          // Phase column j holds padded column j * sw + pw, input column j * sw + pw - pad_w.
          T* out = row + pw * l.phase;
          const int64_t first = std::max<int64_t>(0, (p.pad_w - pw + l.sw - 1) / l.sw);
          for (int64_t j = first, w = first * l.sw + pw - p.pad_w; j < l.Wh && w < p.W; ++j, w += l.sw) out[j] = srow[w];
        }
      }
    }
  });
  return xp;
}

// Offset of tap r = (c, kh, kw) in the phase layout, relative to the group's first channel.
inline std::vector<int64_t> tap_offsets(const Conv2dProblem& p) {
  const PhaseLayout l = phase_layout(p);
  std::vector<int64_t> off(p.reduction());
  for (int64_t c = 0; c < p.C_per_group(); ++c)
    for (int64_t kh = 0; kh < p.R; ++kh)
      for (int64_t kw = 0; kw < p.S; ++kw) {
        const int64_t dh = kh * p.dilation_h, dw = kw * p.dilation_w;
        off[(c * p.R + kh) * p.S + kw] =
            c * l.plane + ((dh % l.sh) * l.sw + dw % l.sw) * l.phase + (dh / l.sh) * l.Wh + dw / l.sw;
      }
  return off;
}

// The forward GEMMs of every path that writes its output in place: items (sample or block of samples,
// group, unit, block of output channels), units being pixel tiles or output rows; each item runs the
// GEMM of W's rows k0.. of group g, with B and C (and N) set by set_bc(a, n, g, unit, k0).
template <typename T, typename F>
void forward_items(const Conv2dProblem& p, int64_t samples, int64_t units, const T* w, const T* bias, bool relu,
                   Capability cap, F&& set_bc) {
  const int64_t G = p.groups, Kg = p.K_per_group(), red = p.reduction();
  const int64_t base_items = samples * G * units, kchunks = forward_k_chunks(p, base_items);
  const int64_t rows_per_chunk = (Kg + kchunks - 1) / kchunks;
  at::parallel_for(0, base_items * kchunks, 1, [&](int64_t begin, int64_t end) {
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

template <typename T>
void forward_direct(const Conv2dProblem& p, const T* x, const T* w, const T* b, T* y, bool relu, Capability cap) {
  const int64_t G = p.groups, Cg = p.C_per_group(), Kg = p.K_per_group(), red = p.reduction();
  const PhaseLayout l = phase_layout(p);
  const int64_t Wp = l.Wh, plane = l.plane, PQ = p.P * p.Q;
  const int64_t V = (p.P - 1) * Wp + p.Q, tiles = (V + kTile - 1) / kTile, width = tile_width(V, tiles);
  const Buffer<T> xp = padded_input(p, x, cap);
  const std::vector<int64_t> boff = tap_offsets(p);
  if (row_tiles(p)) {
    // Wide outputs: a tile is one output row, written straight into y (no dropped column computed and
    // no copy out: ResNet-18's 7x7 stem forward measured 1.3-1.45x faster this way).
    forward_items(p, p.N, p.P, w, b, relu, cap, [&](GemmArgs<T>& a, int64_t n, int64_t g, int64_t oh, int64_t k0) {
      a.N = p.Q;
      a.b = xp.data() + (n * p.C + g * Cg) * plane + oh * Wp, a.b_off = boff.data();
      a.c = y + (n * p.K + g * Kg + k0) * PQ + oh * p.Q, a.ldc = PQ;
    });
    return;
  }
  const int64_t base_items = p.N * G * tiles, kchunks = forward_k_chunks(p, base_items);
  const int64_t rows_per_chunk = (Kg + kchunks - 1) / kchunks;
  at::parallel_for(0, base_items * kchunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> tmp(rows_per_chunk * kTile);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t kc = item % kchunks, rest = item / kchunks;
      const int64_t t = rest % tiles, g = (rest / tiles) % G, n = rest / (tiles * G);
      const int64_t v0 = t * width, len = std::max<int64_t>(0, std::min(width, V - v0));
      const int64_t k0 = kc * rows_per_chunk, k1 = std::min(Kg, k0 + rows_per_chunk);
      if (k0 >= k1 || len == 0) continue;
      GemmArgs<T> a;
      a.M = k1 - k0, a.N = len, a.K = red;
      a.a = w + (g * Kg + k0) * red, a.a_rs = red, a.a_ks = 1;
      a.b = xp.data() + (n * p.C + g * Cg) * plane + v0, a.b_off = boff.data();
      a.c = tmp.data(), a.ldc = kTile;
      a.init = b ? b + g * Kg + k0 : nullptr;
      a.relu = relu;
      gemm(cap, a);
      // Valid columns (ow < Q) of each padded row the tile covers.
      T* yg = y + (n * p.K + g * Kg + k0) * PQ;
      for (int64_t v = v0; v < v0 + len;) {
        const int64_t oh = v / Wp, ow = v % Wp;
        const int64_t run = std::min(v0 + len - v, Wp - ow);
        const int64_t valid = std::max<int64_t>(0, std::min(run, p.Q - ow));
        if (valid > 0) {
          for (int64_t k = 0; k < k1 - k0; ++k)
            std::memcpy(yg + k * PQ + oh * p.Q + ow, tmp.data() + k * kTile + (v - v0), valid * sizeof(T));
        }
        v += run;
      }
    }
  });
}

// ---- Sixteen images per vector, for small images ---------------------------------------------------
// The shifted-view GEMM of forward_direct computes, per output row, the Wp - Q columns that fall in the
// padding and drops them, and its tiles round the rest up to whole vectors: 36% of the work of LeNet's
// unpadded 5x5 conv2 on 14x14 images, 27% of MNIST-CNN's 5x5 pad-2 one, 20% of CIFAR-ResNet's 16->32
// stride-2 layer. With sixteen images side by side in each vector (the layout below), an output row's
// Q pixels are, for every tap, one contiguous run of 16 * Q floats at a fixed offset from the row's
// start: the same GEMM (gemm.h, b_off) per output row, with no dropped column, and the grad-weight
// dot-product form with runs of a whole image row. The price: one transposing copy of each operand in
// and of the output out, and batches padded to 16 images.
constexpr int64_t kBatchLanes = 16;

// Per block of 16 images and channel, the zero-padded plane split by stride phase as in forward_direct
// (PhaseLayout), each pixel a vector of the 16 images:
//   xb[b, c, ph, pw, i, j, lane] = padded input[16 b + lane, c, sh * i + ph, sw * j + pw]
// so output row oh reads, for tap (kh, kw), Q pixels in a row of one phase plane: one run of 16 Q floats.
struct Batch16Layout {
  int64_t NB, sh, sw, Hh, Wh, plane;  // plane: floats per (block, channel)
};

inline Batch16Layout batch16_layout(int64_t N, int64_t H, int64_t W, int64_t ph, int64_t pw, int64_t sh, int64_t sw) {
  Batch16Layout b;
  b.NB = (N + kBatchLanes - 1) / kBatchLanes, b.sh = sh, b.sw = sw;
  b.Hh = (H + 2 * ph + sh - 1) / sh, b.Wh = (W + 2 * pw + sw - 1) / sw;
  b.plane = sh * sw * b.Hh * b.Wh * kBatchLanes;
  return b;
}
inline Batch16Layout batch16_layout(const Conv2dProblem& p) {
  return batch16_layout(p.N, p.H, p.W, p.pad_h, p.pad_w, p.stride_h, p.stride_w);
}
// Offset of padded element (hp, wp) in a plane of the layout.
inline int64_t batch16_offset(const Batch16Layout& b, int64_t hp, int64_t wp) {
  return ((((hp % b.sh) * b.sw + wp % b.sw) * b.Hh + hp / b.sh) * b.Wh + wp / b.sw) * kBatchLanes;
}

// Taken when the work saved over the shifted-view path (the columns its tiles compute and drop) beats
// the padding of the batch by this fraction of the work (the two copies and the shorter GEMM rows
// cost the rest).
constexpr double kBatch16MinGain = 0.10;

// Float32, on a SIMD path (the dot-product grad-weight has none other), at least 16 images.
// CNNFAST_CPU_BATCH16 (read at each call): 0 never, 1 whenever it applies, unset or auto the rule.
inline bool use_batch16(const Conv2dProblem& p, Capability cap) {
  const Switch set = env_switch("CNNFAST_CPU_BATCH16");  // read first: a bad value is an error on any path
  if (dot_lanes(cap) == 0 || p.P == 0 || p.Q == 0) return false;
  if (set != Switch::kAuto) return set == Switch::kOn;
  if (p.N < kBatchLanes || row_tiles(p)) return false;
  // forward_direct's columns: V on the phase width, in equal tiles of a multiple of 16.
  const int64_t V = (p.P - 1) * phase_layout(p).Wh + p.Q, tiles = (V + kTile - 1) / kTile;
  const int64_t width = tile_width(V, tiles);
  const double kept = double(p.P * p.Q) / double(tiles * width);
  const double filled = double(p.N) / double(batch16_layout(p).NB * kBatchLanes);
  return filled - kept >= kBatch16MinGain;
}

// [N, C, H, W] -> the layout above (padding ph, pw; strides sh, sw), zero in the padding, in the
// phases' slack and past the batch's end; a full block of float32 images by register transposes on
// AVX-512 (a row at a time, through a scratch row when the columns split into phases).
// With keep (laid out as x), the elements where keep <= 0 are laid out as 0 (a gradient masked by the
// ReLU output that keep is).
template <typename T>
Buffer<T> to_batch16(const T* x, int64_t N, int64_t C, int64_t H, int64_t W, int64_t ph, int64_t pw, int64_t sh,
                     int64_t sw, Capability cap, const T* keep = nullptr) {
  const Batch16Layout bl = batch16_layout(N, H, W, ph, pw, sh, sw);
  const bool exact = bl.Hh * sh == H + 2 * ph && bl.Wh * sw == W + 2 * pw;
  Buffer<T> out(bl.NB * C * bl.plane);
  const int64_t Hp = bl.Hh * sh, Wp = bl.Wh * sw;  // padded plane, phases' slack included
  at::parallel_for(0, bl.NB * C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bc = begin; bc < end; ++bc) {
      const int64_t b = bc / C, c = bc % C;
      T* dst = out.data() + bc * bl.plane;
      const bool full = N >= (b + 1) * kBatchLanes;
      const int64_t from = (b * kBatchLanes * C + c) * H * W;
      const T* src = x + from;
      if constexpr (std::is_same_v<T, float>) {
        if (full && cap == Capability::kAvx512) {
          // Zero only the pixels no row writes: the padding rows whole, the padding columns of the others.
          // (Without column phases a run of pixels of a row is contiguous: one fill.)
          const auto zero = [&](int64_t hp, int64_t w0, int64_t w1) {
            if (sw == 1) {
              if (w1 > w0) std::fill_n(dst + batch16_offset(bl, hp, w0), (w1 - w0) * kBatchLanes, 0.0f);
              return;
            }
            for (int64_t wp = w0; wp < w1; ++wp) std::fill_n(dst + batch16_offset(bl, hp, wp), kBatchLanes, 0.0f);
          };
          for (int64_t hp = 0; hp < Hp; ++hp) {
            if (hp < ph || hp >= ph + H) {
              zero(hp, 0, Wp);
            } else {
              zero(hp, 0, pw);
              zero(hp, pw + W, Wp);
            }
          }
          // Input column w is padded column pw + w: phase (pw + w) % sw, pixel (pw + w) / sw of its row.
          const int64_t ld = C * H * W, phase_ld = bl.Hh * bl.Wh * kBatchLanes;
          for (int64_t h = 0; h < H; ++h) {
            float* to = dst + batch16_offset(bl, h + ph, 0);
            if (keep)
              rows_to_lanes16_masked_avx512(src + h * W, keep + from + h * W, ld, to, kBatchLanes, W, sw, phase_ld, pw);
            else
              rows_to_lanes16_avx512(src + h * W, ld, to, kBatchLanes, W, sw, phase_ld, pw);
          }
          continue;
        }
      }
      if (ph > 0 || pw > 0 || !full || !exact) std::fill(dst, dst + bl.plane, T(0));
      for (int64_t l = 0; l < kBatchLanes && b * kBatchLanes + l < N; ++l) {
        const T* sl = src + l * C * H * W;
        const T* kl = keep ? keep + from + l * C * H * W : nullptr;
        for (int64_t h = 0; h < H; ++h)
          for (int64_t w = 0; w < W; ++w) {
            const T v = sl[h * W + w];
            dst[batch16_offset(bl, h + ph, w + pw) + l] = kl == nullptr || !(kl[h * W + w] <= T(0)) ? v : T(0);
          }
      }
    }
  });
  return out;
}

// The inverse of to_batch16 without padding or strides: [NB, K, P, Q, 16] -> [N, K, P, Q].
template <typename T>
void from_batch16(const T* yb, int64_t N, int64_t K, int64_t PQ, T* y, Capability cap) {
  const int64_t NB = (N + kBatchLanes - 1) / kBatchLanes;
  at::parallel_for(0, NB * K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bk = begin; bk < end; ++bk) {
      const int64_t b = bk / K, k = bk % K;
      const T* src = yb + bk * PQ * kBatchLanes;
      T* dst = y + (b * kBatchLanes * K + k) * PQ;
      if constexpr (std::is_same_v<T, float>) {
        if (N >= (b + 1) * kBatchLanes && cap == Capability::kAvx512) {
          lanes16_to_rows_avx512(src, dst, K * PQ, PQ);
          continue;
        }
      }
      for (int64_t l = 0; l < kBatchLanes && b * kBatchLanes + l < N; ++l)
        for (int64_t i = 0; i < PQ; ++i) dst[l * K * PQ + i] = src[i * kBatchLanes + l];
    }
  });
}

// Offset of tap r = (c, kh, kw) in the layout, relative to the group's first channel and the output
// row's first phase row.
inline std::vector<int64_t> batch16_tap_offsets(const Conv2dProblem& p) {
  const Batch16Layout b = batch16_layout(p);
  std::vector<int64_t> off(p.reduction());
  for (int64_t c = 0; c < p.C_per_group(); ++c)
    for (int64_t kh = 0; kh < p.R; ++kh)
      for (int64_t kw = 0; kw < p.S; ++kw)
        off[(c * p.R + kh) * p.S + kw] = c * b.plane + batch16_offset(b, kh * p.dilation_h, kw * p.dilation_w);
  return off;
}

// Forward: one GEMM per (block of 16 images, group, output row, block of output channels),
// y16[b, k, oh, :, :] = bias[k] + sum_r W[k, r] * (tap r's run of xb for row oh) (r = (c, kh, kw)).
// From xb, the input already in the layout (to_batch16), into yb [NB, K, P, Q, 16].
template <typename T>
void forward_batch16_laid(const Conv2dProblem& p, const T* xb, const T* w, const T* bias, T* yb, bool relu,
                          Capability cap) {
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group(), PQ = p.P * p.Q;
  const Batch16Layout b = batch16_layout(p);
  const std::vector<int64_t> boff = batch16_tap_offsets(p);
  forward_items(p, b.NB, p.P, w, bias, relu, cap, [&](GemmArgs<T>& a, int64_t nb, int64_t g, int64_t oh, int64_t k0) {
    a.N = p.Q * kBatchLanes;
    a.b = xb + (nb * p.C + g * Cg) * b.plane + oh * b.Wh * kBatchLanes, a.b_off = boff.data();
    a.c = yb + ((nb * p.K + g * Kg + k0) * PQ + oh * p.Q) * kBatchLanes, a.ldc = PQ * kBatchLanes;
  });
}

// Into yb [NB, K, P, Q, 16], the output left in the layout (conv2d.h's conv2d_forward_lanes16).
template <typename T>
void forward_batch16_lanes(const Conv2dProblem& p, const T* x, const T* w, const T* bias, T* yb, bool relu,
                           Capability cap) {
  const Buffer<T> xb = to_batch16(x, p.N, p.C, p.H, p.W, p.pad_h, p.pad_w, p.stride_h, p.stride_w, cap);
  forward_batch16_laid(p, xb.data(), w, bias, yb, relu, cap);
}

template <typename T>
void forward_batch16(const Conv2dProblem& p, const T* x, const T* w, const T* bias, T* y, bool relu, Capability cap) {
  const int64_t PQ = p.P * p.Q;
  Buffer<T> yb(batch16_layout(p).NB * p.K * PQ * kBatchLanes);
  forward_batch16_lanes(p, x, w, bias, yb.data(), relu, cap);
  from_batch16(yb.data(), p.N, p.K, PQ, y, cap);
}

// Winograd F(2x2, 3x3) (winograd.h) serves float32 3x3 convolutions with stride 1 and dilation 1 when
// both channel counts per group are large enough for its transforms to pay (benchmarks/NOTES.md) and
// the CPU has the AVX-512 transforms. CNNFAST_CPU_WINOGRAD (read at each call) overrides the rule:
// 0 never, 1 whenever it applies (any capability, any channel count); unset or auto: the rule.
constexpr int64_t kWinogradMinChannels = 16;

inline bool use_winograd(const Conv2dProblem& p, Capability cap) {
  const Switch set = env_switch("CNNFAST_CPU_WINOGRAD");  // read first: a bad value is an error on any path
  if (!winograd_applies(p)) return false;
  if (set != Switch::kAuto) return set == Switch::kOn;
  return cap == Capability::kAvx512 && p.C_per_group() >= kWinogradMinChannels &&
         p.K_per_group() >= kWinogradMinChannels;
}

template <typename T>
void forward_impl(const Conv2dProblem& p, const T* x, const T* w, const T* b, T* y, bool relu, Capability cap) {
  if constexpr (std::is_same_v<T, float>) {
    if (use_winograd(p, cap)) {
      winograd_forward(p, x, WinoWeight{w, false}, b, y, relu, cap);
      return;
    }
    if (use_batch16(p, cap)) {
      forward_batch16(p, x, w, b, y, relu, cap);
      return;
    }
  }
  const bool pointwise = p.R == 1 && p.S == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0;
  if (!pointwise) {
    forward_direct(p, x, w, b, y, relu, cap);
    return;
  }
  // A 1x1 convolution with stride 1 and no padding reads the input itself as its B matrix.
  const int64_t PQ = p.P * p.Q, tiles = (PQ + kTile - 1) / kTile;
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group();
  forward_items(p, p.N, tiles, w, b, relu, cap, [&](GemmArgs<T>& a, int64_t n, int64_t g, int64_t t, int64_t k0) {
    const int64_t pix0 = t * kTile;
    a.N = std::min(kTile, PQ - pix0);
    a.b = x + (n * p.C + g * Cg) * PQ + pix0, a.ldb = PQ;
    a.c = y + (n * p.K + g * Kg + k0) * PQ + pix0, a.ldc = PQ;
  });
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
// elements of wt. (Channel by channel, the reads jumped Cg * RS elements per k, a new page each time:
// for a 512-channel 3x3 weight that transpose took as long as a third of the GEMM.)
template <typename T>
Buffer<T> flipped_weight(const Conv2dProblem& p, const T* w) {
  const int64_t G = p.groups, Cg = p.C_per_group(), Kg = p.K_per_group(), RS = p.R * p.S;
  Buffer<T> wt(p.weight_numel());
  constexpr int64_t kKb = 16;
  const int64_t kblocks = (Kg + kKb - 1) / kKb;
  at::parallel_for(0, G * kblocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t g = item / kblocks, k0 = (item % kblocks) * kKb, k1 = std::min(Kg, k0 + kKb);
      for (int64_t c = 0; c < Cg; ++c) {
        T* dst = wt.data() + ((g * Cg + c) * Kg + k0) * RS + RS - 1;
        for (int64_t k = k0; k < k1; ++k, dst += RS) {
          const T* src = w + ((g * Kg + k) * Cg + c) * RS;
          for (int64_t rs = 0; rs < RS; ++rs) dst[-rs] = src[rs];
        }
      }
    }
  });
  return wt;
}

template <typename T>
void grad_input_impl(const Conv2dProblem& p, const T* dy, const T* w, T* dx, Capability cap) {
  const int64_t PQ = p.P * p.Q, tiles = (PQ + kTile - 1) / kTile, G = p.groups;
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group(), red = p.reduction();
  if (grad_input_as_forward(p)) {
    const Conv2dProblem q = grad_input_problem(p);
    if constexpr (std::is_same_v<T, float>) {
      // Winograd reads the forward weight in place (winograd.h's WinoWeight).
      if (use_winograd(q, cap)) {
        winograd_forward(q, dy, WinoWeight{w, true}, nullptr, dx, false, cap);
        return;
      }
    }
    const Buffer<T> wt = flipped_weight(p, w);
    forward_impl<T>(q, dy, wt.data(), nullptr, dx, false, cap);
    return;
  }
  if (p.R * p.S == 1) {
    // A 1x1 kernel: each input pixel takes at most one tap, and col2im is a strided copy of dcol.
    at::parallel_for(0, p.N * G, 1, [&](int64_t begin, int64_t end) {
      Scratch<T> gcol(red * kTile);
      for (int64_t item = begin; item < end; ++item) {
        const int64_t g = item % G, n = item / G;
        T* dxg = dx + (n * p.C + g * Cg) * p.H * p.W;
        std::fill(dxg, dxg + Cg * p.H * p.W, T(0));
        const T* dyg = dy + (n * p.K + g * Kg) * PQ;
        for (int64_t t = 0; t < tiles; ++t) {
          const int64_t pix0 = t * kTile, len = std::min(kTile, PQ - pix0);
          GemmArgs<T> a;
          a.M = red, a.N = len, a.K = Kg;
          a.a = w + g * Kg * red, a.a_rs = 1, a.a_ks = red;
          a.b = dyg + pix0, a.ldb = PQ;
          a.c = gcol.data(), a.ldc = kTile;
          gemm(cap, a);
          col2im_tile_add(p, gcol.data(), pix0, len, dxg);
        }
      }
    });
    return;
  }
  // Any other stride or padding: per (sample, group, chunk of input channels), dcol = W^T dy a tile of
  // output pixels at a time (the chunk's rows of it), its pixels numbered on the phase width as in
  // forward_direct (v = oh * Wh + ow, dy zero in the dropped columns), so tap r's row of dcol adds into
  // one contiguous run of the phase-split accumulator, at tap_offsets(p)[r] + v; then the accumulator's
  // input pixels are copied out into dx. Each dx element sums its own channel's taps in the order (tile,
  // kh, kw), whichever thread and chunk compute it; the channels are cut into chunks only when there
  // are fewer (sample, group) items than two per thread (batch 1).
  const PhaseLayout l = phase_layout(p);
  const int64_t Wh = l.Wh, V = (p.P - 1) * Wh + p.Q, vtiles = (V + kTile - 1) / kTile, Vpad = vtiles * kTile;
  const int64_t RS = p.R * p.S, items = p.N * G, want = 2 * at::get_num_threads();
  const int64_t cchunks = items >= want ? 1 : std::min(Cg, (want + items - 1) / items);
  const int64_t cmax = (Cg + cchunks - 1) / cchunks;
  const std::vector<int64_t> off = tap_offsets(p);
  const bool merge2 = std::is_same_v<T, float> && l.sw == 2 && cap == Capability::kAvx512;
  at::parallel_for(0, items * cchunks, 1, [&](int64_t begin, int64_t end) {
    Scratch<T> gcol(cmax * RS * kTile), dyv(Kg * Vpad), acc(cmax * l.plane + kTile);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t cc = item % cchunks, g = (item / cchunks) % G, n = item / (cchunks * G);
      const int64_t c0 = cc * Cg / cchunks, cn = (cc + 1) * Cg / cchunks - c0;
      if (cn <= 0) continue;
      const T* dyg = dy + (n * p.K + g * Kg) * PQ;
      // dy on the phase width, zero past each row's Q and past the last row.
      for (int64_t k = 0; k < Kg; ++k) {
        T* dst = dyv.data() + k * Vpad;
        std::fill(dst, dst + Vpad, T(0));
        for (int64_t oh = 0; oh < p.P; ++oh) std::memcpy(dst + oh * Wh, dyg + k * PQ + oh * p.Q, p.Q * sizeof(T));
      }
      // The accumulator holds channels [c0, c0 + cn): tap r of channel c lands at off[r] - c0 * plane.
      std::fill(acc.data(), acc.data() + cn * l.plane + kTile, T(0));
      const int64_t r0 = c0 * RS, rn = cn * RS;
      for (int64_t t = 0; t < vtiles; ++t) {
        const int64_t v0 = t * kTile, len = std::min(kTile, V - v0);
        GemmArgs<T> a;
        a.M = rn, a.N = len, a.K = Kg;
        a.a = w + g * Kg * red + r0, a.a_rs = 1, a.a_ks = red;
        a.b = dyv.data() + v0, a.ldb = Vpad;
        a.c = gcol.data(), a.ldc = kTile;
        gemm(cap, a);
        for (int64_t r = 0; r < rn; ++r)
          add_span(cap, gcol.data() + r * kTile, acc.data() + off[r0 + r] - c0 * l.plane + v0, len);
      }
      // dx[c, h, w] = the accumulator at padded (h + pad_h, w + pad_w): phase ((h + pad_h) % sh, (w + pad_w) % sw).
      T* dxg = dx + (n * p.C + g * Cg) * p.H * p.W;
      for (int64_t c = c0; c < c0 + cn; ++c)
        for (int64_t h = 0; h < p.H; ++h) {
          const int64_t hp = h + p.pad_h;
          const T* row = acc.data() + (c - c0) * l.plane + (hp % l.sh) * l.sw * l.phase + (hp / l.sh) * Wh;
          T* out = dxg + (c * p.H + h) * p.W;
          if constexpr (std::is_same_v<T, float>) {
            if (merge2) {
              const ParityOffsets o = parity_offsets(p, l);
              merge_columns2_avx512(row + o.even, row + o.odd, p.W, out);
              continue;
            }
          }
          // Phase b's column j is padded column j * sw + b, input column j * sw + b - pad_w.
          for (int64_t b = 0; b < l.sw; ++b) {
            const T* src = row + b * l.phase;
            const int64_t first = std::max<int64_t>(0, (p.pad_w - b + l.sw - 1) / l.sw);
            for (int64_t j = first, x = first * l.sw + b - p.pad_w; x < p.W; ++j, x += l.sw) out[x] = src[j];
          }
        }
    }
  });
}

// Partial sums of grad-weight: a fixed number of chunks of the (sample, tile) list, chosen from the
// problem alone (never from the thread count) and added in order, so dw is bit-identical for any
// thread count; fewer chunks when the weight is large (the partials would cost more than they give).
inline int64_t weight_chunks(const Conv2dProblem& p, int64_t pixel_items) {
  return std::max<int64_t>(1, std::min<int64_t>({kWeightChunks, pixel_items, (int64_t(1) << 18) / std::max<int64_t>(1, p.weight_numel())}));
}

// Grad-weight without im2row, on the phase-split padded input of forward_direct, transposed:
//   dwT[r, k] += sum_v xp[tap_offset(r) + v] * dyT[v, k]
// with A's rows shifted views of the padded input (gemm.h's a_off) and dyT the tile of dy on the
// padded numbering, transposed and zero in the dropped columns (so they add nothing). Partial sums
// per fixed chunk of the (sample, tile) list, added in order, then transposed into dw.
template <typename T>
void grad_weight_direct(const Conv2dProblem& p, const T* dy, const T* x, T* dw, Capability cap) {
  const int64_t G = p.groups, Cg = p.C_per_group(), Kg = p.K_per_group(), red = p.reduction();
  const PhaseLayout l = phase_layout(p);
  const int64_t Wp = l.Wh, plane = l.plane, PQ = p.P * p.Q;
  // Tiles of the reduction over V: V / kTile of them rounded to the nearest (at least one), of equal
  // lengths (at most 1.5 kTile): a short last tile (7 of CIFAR-ResNet's 71 columns at 8x8) ran its
  // GEMM for a few steps at the price of a whole load and store of its block of sums.
  const int64_t V = (p.P - 1) * Wp + p.Q, tiles = std::max<int64_t>(1, (V + kTile / 2) / kTile);
  const int64_t tile_len = (V + tiles - 1) / tiles;
  const int64_t pixel_items = p.N * tiles, chunks = weight_chunks(p, pixel_items), wsize = p.weight_numel();
  // Items own blocks of 96 taps (rows of dwT) over all of their chunk's tiles, so the block of dwT
  // they accumulate stays in cache.
  constexpr int64_t kRowsPerBlock = 96;
  const int64_t rblocks = (red + kRowsPerBlock - 1) / kRowsPerBlock;
  const Buffer<T> xp = padded_input(p, x, cap);
  const std::vector<int64_t> aoff = tap_offsets(p);
  // dy on the padded numbering, transposed: dyt[n, g, v, k], zero in the dropped columns; items are
  // (sample, group, block of 16 channels), a full block of float32 channels by register transposes.
  const int64_t Vpad = tiles * tile_len;
  constexpr int64_t kKt = 16;
  const int64_t kt_blocks = (Kg + kKt - 1) / kKt;
  Buffer<T> dyt(p.N * G * Vpad * Kg);
  at::parallel_for(0, p.N * G * kt_blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t ng = item / kt_blocks, k0 = (item % kt_blocks) * kKt, k1 = std::min(Kg, k0 + kKt);
      const T* src = dy + (ng * Kg + k0) * PQ;
      T* dst = dyt.data() + ng * Vpad * Kg + k0;
      // Zero the columns no output pixel fills: past each row's Q, and past the last row.
      auto zero = [&](int64_t v) { std::fill(dst + v * Kg, dst + v * Kg + (k1 - k0), T(0)); };
      for (int64_t oh = 0; oh < p.P; ++oh)
        for (int64_t v = oh * Wp + p.Q; v < std::min(Vpad, (oh + 1) * Wp); ++v) zero(v);
      for (int64_t v = p.P * Wp; v < Vpad; ++v) zero(v);
      if constexpr (std::is_same_v<T, float>) {
        if (k1 - k0 == kKt && cap == Capability::kAvx512) {
          for (int64_t oh = 0; oh < p.P; ++oh) rows_to_lanes16_avx512(src + oh * p.Q, PQ, dst + oh * Wp * Kg, Kg, p.Q);
          continue;
        }
      }
      for (int64_t oh = 0; oh < p.P; ++oh)
        for (int64_t ow = 0; ow < p.Q; ++ow) {
          T* d = dst + (oh * Wp + ow) * Kg;
          const T* s = src + oh * p.Q + ow;
          for (int64_t k = 0; k < k1 - k0; ++k) d[k] = s[k * PQ];
        }
    }
  });
  Buffer<T> partial(chunks * wsize);  // [chunk][g][r][k], each block zeroed by its item
  at::parallel_for(0, chunks * G * rblocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t rb = item % rblocks, g = (item / rblocks) % G, chunk = item / (rblocks * G);
      const int64_t r0 = rb * kRowsPerBlock, r1 = std::min(red, r0 + kRowsPerBlock);
      T* acc = partial.data() + chunk * wsize + (g * red + r0) * Kg;
      std::fill(acc, acc + (r1 - r0) * Kg, T(0));
      for (int64_t it = chunk * pixel_items / chunks; it < (chunk + 1) * pixel_items / chunks; ++it) {
        const int64_t n = it / tiles, t = it % tiles;
        const int64_t v0 = t * tile_len, len = std::min(tile_len, V - v0);
        GemmArgs<T> a;
        a.M = r1 - r0, a.N = Kg, a.K = len;
        a.a = xp.data() + (n * p.C + g * Cg) * plane + v0, a.a_off = aoff.data() + r0, a.a_ks = 1;
        a.b = dyt.data() + ((n * G + g) * Vpad + v0) * Kg, a.ldb = Kg;
        a.c = acc, a.ldc = Kg;
        a.accumulate = true;
        gemm(cap, a);
      }
    }
  });
  // dw[g, k, r] = sum over chunks of partial[chunk, g, r, k], chunk after chunk, in blocks of 32 taps:
  // summed along k (contiguous, vectorized), then written transposed.
  constexpr int64_t kTb = 32;
  const int64_t tblocks = (red + kTb - 1) / kTb;
  at::parallel_for(0, G * tblocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> sums(kTb * Kg);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t g = item / tblocks, r0 = (item % tblocks) * kTb, r1 = std::min(red, r0 + kTb);
      T* acc = sums.data();
      for (int64_t r = r0; r < r1; ++r) {
        T* row = acc + (r - r0) * Kg;
        const T* first = partial.data() + (g * red + r) * Kg;
        std::copy(first, first + Kg, row);
        for (int64_t c = 1; c < chunks; ++c) {
          const T* part = first + c * wsize;
          for (int64_t k = 0; k < Kg; ++k) row[k] += part[k];
        }
      }
      for (int64_t k = 0; k < Kg; ++k) {
        T* out = dw + (g * Kg + k) * red;
        for (int64_t r = r0; r < r1; ++r) out[r] = acc[(r - r0) * Kg + k];
      }
    }
  });
}

// Grad-weight in the dot-product form (gemm.h: DotArgs), for weights with few elements per group:
//   dw[g, k, r] = sum over samples and pixels v of dyp[n, g, k, v] * xp[n, g, tap_offset(r) + v]
// with dyp the gradient on the phase layout's pixel numbering (zero in the dropped columns and up to
// the next multiple of 16), so both operands are contiguous runs along v, every lane is used
// however few channels the layer has, and dw comes out in its own layout (no transposed partials).
// Work split and sum order: dot_grad_weight below.
// Used for at most 16 output channels per group, where the direct form's GEMM has a single vector of
// columns (partly empty below 16 channels) and is bound by its loads; measured on 1 thread (AVX-512):
// 6 channels (LeNet conv1) 0.80 -> 0.34 ms, 16 channels of 32x32 (CIFAR-ResNet) 1.79 -> 0.98 ms, 16 of
// 28x28 1.08 -> 0.99, 16 of 10x10 (LeNet conv2) 0.54 -> 0.44. With 32 channels it measured 1.15-1.6x
// slower than the direct form (MNIST-CNN conv2 3.2 -> 5.2 ms): 196-pixel images give each register
// block only 16 vector steps between loading and storing its 24 lane sums.
constexpr int64_t kDotMaxChannels = 16;
constexpr int64_t kDotMaxWeight = 16384;  // Kg * CgRS per group: the lane sums then fit in 1 MB

inline bool use_dot_grad_weight(const Conv2dProblem& p, Capability cap) {
  return dot_lanes(cap) > 0 && p.K_per_group() <= kDotMaxChannels && p.K_per_group() * p.reduction() <= kDotMaxWeight;
}

// The dot-product form's work split and final sums, shared by both layouts it runs on. Items: (chunk
// of the samples, group, block of up to 16 output channels), each over every tap, so every operand is
// read once: a sample's gradient rows and input stay in cache while the item runs over blocks of 24
// taps (items of a block of taps over every sample read the gradient once per block, from L3: LeNet
// conv1's grad-weight measured 0.38 -> 0.26 ms on 2 threads, MNIST-CNN conv1's 0.52x -> 0.87x torch's
// speed). The chunks are fixed by the problem (never by the thread count)
// and keep their own lane sums; each dw element then adds its lanes, chunk after chunk, in order:
// bit-identical for any thread count. accumulate(acc, s0, s1, g, k0, nk) adds samples [s0, s1) of one
// item into its zeroed lanes (acc: [k][r][lane], leading dimension = taps); `samples` counts what the
// layout calls a sample (an image, or a block of 16 of them).
constexpr int64_t kDotChunks = 8;
constexpr int64_t kDotTaps = 24;  // taps per call: 16 x 24 lane sums of 64 bytes stay in L1

template <typename F>
void dot_grad_weight(const Conv2dProblem& p, Capability cap, int64_t samples, float* dw, F&& accumulate) {
  const int64_t G = p.groups, Kg = p.K_per_group(), red = p.reduction(), L = dot_lanes(cap);
  constexpr int64_t kKb = 16;
  const int64_t kblocks = (Kg + kKb - 1) / kKb, chunks = std::min(samples, kDotChunks);
  const int64_t wlanes = G * Kg * red * L;
  Buffer<float> lanes(chunks * wlanes);
  at::parallel_for(0, chunks * G * kblocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t kb = item % kblocks, g = (item / kblocks) % G, chunk = item / (kblocks * G);
      const int64_t k0 = kb * kKb, nk = std::min(kKb, Kg - k0);
      float* acc = lanes.data() + chunk * wlanes + (g * Kg + k0) * red * L;
      std::fill(acc, acc + nk * red * L, 0.0f);
      accumulate(acc, chunk * samples / chunks, (chunk + 1) * samples / chunks, g, k0, nk);
    }
  });
  at::parallel_for(0, G * Kg, 1, [&](int64_t begin, int64_t end) {
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

void grad_weight_dot(const Conv2dProblem& p, const float* dy, const float* x, float* dw, Capability cap) {
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group(), red = p.reduction();
  const PhaseLayout l = phase_layout(p);
  const int64_t Wp = l.Wh, plane = l.plane, PQ = p.P * p.Q;
  const int64_t V = (p.P - 1) * Wp + p.Q, Vr = (V + 15) / 16 * 16;  // kTile slack covers the last 15
  const Buffer<float> xp = padded_input(p, x, cap);
  const std::vector<int64_t> boff = tap_offsets(p);
  Buffer<float> dyp(p.N * p.K * Vr);
  at::parallel_for(0, p.N * p.K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t nk = begin; nk < end; ++nk) {
      const float* src = dy + nk * PQ;
      float* dst = dyp.data() + nk * Vr;
      std::fill(dst, dst + Vr, 0.0f);
      for (int64_t oh = 0; oh < p.P; ++oh) std::memcpy(dst + oh * Wp, src + oh * p.Q, p.Q * sizeof(float));
    }
  });
  // Calls of up to kRun pixels (16 gradient rows of 16 KB stay in L2 while the taps run over them): a
  // tile of a large image, or whole small images, several per call (DotArgs' batch), so that each
  // register block runs many vector steps between loading and storing its lane sums.
  constexpr int64_t kRun = 4096;
  const int64_t klen = std::min(kRun, Vr), per_call = std::max<int64_t>(1, kRun / Vr);
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

// Grad-weight in the dot-product form on the same layout: for each block of 16 images, A's rows are
// dy16[b, k] and B's the taps' views of xb, both running along a whole output row (16 * Q floats) and
// stepping one row per batch step of DotArgs.
// dyl: the layout dyb is in, dy [N, K, P, Q] with the padding it was laid out with (ph, pw).
void grad_weight_batch16_laid(const Conv2dProblem& p, const float* dyb, const Batch16Layout& dyl, int64_t ph,
                              int64_t pw, const float* x, float* dw, Capability cap) {
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group(), red = p.reduction();
  const Batch16Layout b = batch16_layout(p);
  const Buffer<float> xb = to_batch16(x, p.N, p.C, p.H, p.W, p.pad_h, p.pad_w, p.stride_h, p.stride_w, cap);
  const std::vector<int64_t> boff = batch16_tap_offsets(p);
  const int64_t first = batch16_offset(dyl, ph, pw);
  dot_grad_weight(p, cap, b.NB, dw, [&](float* acc, int64_t s0, int64_t s1, int64_t g, int64_t k0, int64_t nk) {
    for (int64_t nb = s0; nb < s1; ++nb)
      for (int64_t r0 = 0; r0 < red; r0 += kDotTaps) {
        DotArgs d;
        d.M = nk, d.N = std::min(kDotTaps, red - r0), d.K = p.Q * kBatchLanes, d.batch = p.P;
        d.a = dyb + (nb * p.K + g * Kg + k0) * dyl.plane + first, d.lda = dyl.plane;
        d.a_bs = dyl.Wh * kBatchLanes;
        d.b = xb.data() + (nb * p.C + g * Cg) * b.plane, d.b_off = boff.data() + r0;
        d.b_bs = b.Wh * kBatchLanes;
        d.acc = acc + r0 * dot_lanes(cap), d.ldacc = red;
        dot(cap, d);
      }
  });
}

void grad_weight_batch16(const Conv2dProblem& p, const float* dy, const float* x, float* dw, Capability cap) {
  const Buffer<float> dyb = to_batch16(dy, p.N, p.K, p.P, p.Q, 0, 0, 1, 1, cap);
  grad_weight_batch16_laid(p, dyb.data(), batch16_layout(p.N, p.P, p.Q, 0, 0, 1, 1), 0, 0, x, dw, cap);
}

// Whether grad_weight_impl takes grad_weight_batch16.
inline bool grad_weight_batch16_applies(const Conv2dProblem& p, Capability cap) {
  return !use_winograd(p, cap) && use_batch16(p, cap) && p.K_per_group() * p.reduction() <= kDotMaxWeight;
}

template <typename T>
void grad_weight_impl(const Conv2dProblem& p, const T* dy, const T* x, T* dw, Capability cap) {
  if constexpr (std::is_same_v<T, float>) {
    if (use_winograd(p, cap)) {
      winograd_grad_weight(p, dy, x, dw, cap);
      return;
    }
    if (grad_weight_batch16_applies(p, cap)) {
      grad_weight_batch16(p, dy, x, dw, cap);
      return;
    }
    if (use_dot_grad_weight(p, cap)) {
      grad_weight_dot(p, dy, x, dw, cap);
      return;
    }
  }
  grad_weight_direct(p, dy, x, dw, cap);
}

// db[k] = sum over samples and pixels of dy[n, k, :] (conv2d.h's channel_sums).
template <typename T>
void grad_bias_impl(const Conv2dProblem& p, const T* dy, T* db) {
  channel_sums(dy, p.N, p.K, p.P * p.Q, db);
}

// dy where the fused op's output is > 0, else 0 (ReLU's gradient), into out.
template <typename T>
void mask_grad(const T* dy, const T* y, T* out, int64_t n, Capability cap) {
  at::parallel_for(0, n, 32768, [&](int64_t begin, int64_t end) {
    relu_mask_span(cap, dy + begin, y + begin, out + begin, end - begin);
  });
}

}  // namespace

template <typename T>
void conv2d_forward_impl(const Conv2dProblem& p, const T* x, const T* w, const T* b, T* y, bool relu,
                         Capability cap) {
  forward_impl<T>(p, x, w, b, y, relu, cap);
}

template <typename T>
void conv2d_backward_impl(const Conv2dProblem& p, const T* dy, const T* x, const T* w, T* dx, T* dw, T* db,
                          Capability cap) {
  if (p.output_numel() == 0) {  // an empty output: every gradient is a sum of nothing
    if (dx) std::fill(dx, dx + p.input_numel(), T(0));
    if (dw) std::fill(dw, dw + p.weight_numel(), T(0));
    if (db) std::fill(db, db + p.K, T(0));
    return;
  }
  if (dx) grad_input_impl<T>(p, dy, w, dx, cap);
  if (dw) grad_weight_impl<T>(p, dy, x, dw, cap);
  if (db) grad_bias_impl<T>(p, dy, db);
}

bool conv2d_uses_lanes16(const Conv2dProblem& p, Capability cap) {
  return !use_winograd(p, cap) && use_batch16(p, cap);
}

void conv2d_forward_lanes16(const Conv2dProblem& p, const float* x, const float* w, const float* b, float* yb,
                            bool relu, Capability cap) {
  forward_batch16_lanes(p, x, w, b, yb, relu, cap);
}

// dy's layout for conv2d_backward_lanes16: stride 1, padded for grad-input's forward convolution when
// grad-input is wanted, else not padded.
static Batch16Layout grad_lanes16_layout(const Conv2dProblem& p, bool grad_input, int64_t& ph, int64_t& pw) {
  ph = grad_input ? p.dilation_h * (p.R - 1) - p.pad_h : 0;
  pw = grad_input ? p.dilation_w * (p.S - 1) - p.pad_w : 0;
  return batch16_layout(p.N, p.P, p.Q, ph, pw, 1, 1);
}

bool conv2d_backward_lanes16_applies(const Conv2dProblem& p, bool grad_input, Capability cap) {
  if (cap != Capability::kAvx512 || p.output_numel() == 0 || !grad_weight_batch16_applies(p, cap)) return false;
  if (!grad_input) return true;
  if (!grad_input_as_forward(p)) return false;
  const Conv2dProblem q = grad_input_problem(p);
  return !use_winograd(q, cap) && use_batch16(q, cap);
}

Lanes16Plane conv2d_backward_lanes16_layout(const Conv2dProblem& p, bool grad_input) {
  int64_t ph, pw;
  const Batch16Layout l = grad_lanes16_layout(p, grad_input, ph, pw);
  return Lanes16Plane{ph, pw, l.Wh, l.plane};
}

void conv2d_backward_lanes16(const Conv2dProblem& p, const float* dyb, const float* x, const float* w, float* dx,
                             float* dw, float* db, Capability cap) {
  int64_t ph, pw;
  const Batch16Layout l = grad_lanes16_layout(p, dx != nullptr, ph, pw);
  if (dx) {
    const Conv2dProblem q = grad_input_problem(p);
    const Buffer<float> wt = flipped_weight(p, w);
    Buffer<float> xb(l.NB * p.C * p.H * p.W * kBatchLanes);
    forward_batch16_laid<float>(q, dyb, wt.data(), nullptr, xb.data(), false, cap);
    from_batch16(xb.data(), p.N, p.C, p.H * p.W, dx, cap);
  }
  if (dw) grad_weight_batch16_laid(p, dyb, l, ph, pw, x, dw, cap);
  // db[k]: the sum of channel k's planes (padding and the lanes past N are zero).
  if (db) channel_sums(dyb, l.NB, p.K, l.plane, db);
}

void lanes16_to_nchw(const float* yb, int64_t N, int64_t K, int64_t PQ, float* y, Capability cap) {
  from_batch16(yb, N, K, PQ, y, cap);
}

template <typename T>
void channel_sums(const T* x, int64_t N, int64_t C, int64_t plane, T* s) {
  at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
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

#define CNNFAST_INSTANTIATE(T)                                                                                 \
  template void conv2d_forward_impl<T>(const Conv2dProblem&, const T*, const T*, const T*, T*, bool, Capability); \
  template void conv2d_backward_impl<T>(const Conv2dProblem&, const T*, const T*, const T*, T*, T*, T*, Capability); \
  template void channel_sums<T>(const T*, int64_t, int64_t, int64_t, T*);
CNNFAST_INSTANTIATE(float)
CNNFAST_INSTANTIATE(double)
#undef CNNFAST_INSTANTIATE

namespace {

at::Tensor conv2d_forward(const char* op, bool relu, const at::Tensor& input, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                          at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const Conv2dProblem p =
      make_conv2d_problem(op, input, weight, bias, stride, padding, dilation, groups, kCpuDtypes);
  const auto format = conv2d_memory_format(input, weight);
  at::Tensor y = new_output({p.N, p.K, p.P, p.Q}, input.scalar_type());
  if (y.numel() > 0) {
    const at::Tensor x = input.contiguous(), w = weight.contiguous();
    const bool has_bias = bias.has_value() && bias->defined();
    const at::Tensor b = has_bias ? bias->contiguous() : at::Tensor();
    const Capability cap = current_capability();
    dispatch_floating(input.scalar_type(), [&](auto zero) {
      using T = decltype(zero);
      const T* bp = has_bias ? b.const_data_ptr<T>() : nullptr;
      forward_impl<T>(p, x.const_data_ptr<T>(), w.const_data_ptr<T>(), bp, y.mutable_data_ptr<T>(), relu, cap);
    });
  }
  return y.contiguous(format);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_backward(
    const char* op, const at::Tensor& grad_output, const std::optional<at::Tensor>& output,
    const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef dilation, int64_t groups, std::array<bool, 3> output_mask) {
  const Conv2dProblem p = make_conv2d_backward_problem(op, grad_output, output, input, weight, stride, padding,
                                                       dilation, groups, kCpuDtypes);
  at::Tensor grad_input, grad_weight, grad_bias;
  if (output_mask[0]) grad_input = new_output(input.sizes(), input.scalar_type());
  if (output_mask[1]) grad_weight = new_output(weight.sizes(), weight.scalar_type());
  if (output_mask[2]) grad_bias = new_output({p.K}, weight.scalar_type());

  const at::Tensor dy = grad_output.contiguous(), x = input.contiguous(), w = weight.contiguous();
  const at::Tensor mask = output ? output->contiguous() : at::Tensor();
  const Capability cap = current_capability();
  dispatch_floating(input.scalar_type(), [&](auto zero) {
    using T = decltype(zero);
    const auto data = [](at::Tensor& t) { return t.defined() && t.numel() > 0 ? t.mutable_data_ptr<T>() : nullptr; };
    if constexpr (std::is_same_v<T, float>) {
      // With sixteen images per vector, dy is laid out once for both gradients, masked by the fused
      // op's output on the way (no separate mask pass).
      if (cap == Capability::kAvx512 && (grad_input.defined() || grad_weight.defined()) &&
          conv2d_backward_lanes16_applies(p, grad_input.defined(), cap)) {
        const Lanes16Plane l = conv2d_backward_lanes16_layout(p, grad_input.defined());
        const Buffer<float> dyb = to_batch16(dy.const_data_ptr<float>(), p.N, p.K, p.P, p.Q, l.ph, l.pw, 1, 1, cap,
                                             output ? mask.const_data_ptr<float>() : nullptr);
        conv2d_backward_lanes16(p, dyb.data(), x.const_data_ptr<float>(), w.const_data_ptr<float>(),
                                data(grad_input), data(grad_weight), data(grad_bias), cap);
        return;
      }
    }
    // The fused op's gradient: dy masked by its output once, then the plain convolution's gradients.
    const bool masked_needed = output && p.output_numel() > 0;
    Buffer<T> masked(masked_needed ? p.output_numel() : 0);
    const T* g = dy.const_data_ptr<T>();
    if (masked_needed) {
      mask_grad(g, mask.const_data_ptr<T>(), masked.data(), p.output_numel(), cap);
      g = masked.data();
    }
    conv2d_backward_impl<T>(p, g, x.const_data_ptr<T>(), w.const_data_ptr<T>(), data(grad_input), data(grad_weight),
                            data(grad_bias), cap);
  });
  if (grad_input.defined()) grad_input = grad_input.contiguous(input.suggest_memory_format());
  if (grad_weight.defined()) grad_weight = grad_weight.contiguous(weight.suggest_memory_format());
  return {grad_input, grad_weight, grad_bias};
}

at::Tensor conv2d_kernel(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                         int64_t groups) {
  return conv2d_forward(kConv2d, false, input, weight, bias, stride, padding, dilation, groups);
}

at::Tensor conv2d_relu_kernel(const at::Tensor& input, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  return conv2d_forward(kConv2dRelu, true, input, weight, bias, stride, padding, dilation, groups);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, std::array<bool, 3> output_mask) {
  return conv2d_backward(kConv2dBackward, grad_output, std::nullopt, input, weight, stride, padding, dilation,
                         groups, output_mask);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_relu_backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
    std::array<bool, 3> output_mask) {
  return conv2d_backward(kConv2dReluBackward, grad_output, output, input, weight, stride, padding, dilation,
                         groups, output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnfast, CPU, m) {
  m.impl("conv2d", &conv2d_kernel);
  m.impl("conv2d_backward", &conv2d_backward_kernel);
  m.impl("conv2d_relu", &conv2d_relu_kernel);
  m.impl("conv2d_relu_backward", &conv2d_relu_backward_kernel);
}

}  // namespace cnnfast::cpu
