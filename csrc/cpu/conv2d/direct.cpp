// The direct path of the CPU conv2d (direct.h).
#include "cpu/conv2d/direct.h"

#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu/common/simd.h"

namespace cnnfast::cpu {
namespace {

// Samples per grad-weight partial sum: fixed (not derived from the thread count) for determinism.
constexpr int64_t kWeightChunks = 8;
// At most this many elements of grad-weight partial sums in all (chunks * weight size).
constexpr int64_t kWeightPartialsMax = int64_t(1) << 18;
// padded_input zeroes a phase plane of fewer elements in one fill (cheaper than its padding's runs).
constexpr int64_t kSmallPlane = 4096;

// Partial sums of grad-weight: a fixed number of chunks of the (sample, tile) list, chosen from the
// problem alone (never from the thread count) and added in order, so dw is bit-identical for any
// thread count; fewer chunks when the weight is large (the partials would cost more than they give).
inline int64_t weight_chunks(const Conv2dProblem& p, int64_t pixel_items) {
  return std::max<int64_t>(1, std::min<int64_t>({kWeightChunks, pixel_items, kWeightPartialsMax / std::max<int64_t>(1, p.weight_numel())}));
}

}  // namespace

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
  const bool split2 = std::is_same_v<T, float> && l.sw == 2 && has_simd_movers(cap);
  Buffer<T> xp(p.N * p.C * l.plane + kTile);
  std::fill(xp.data() + p.N * p.C * l.plane, xp.data() + p.N * p.C * l.plane + kTile, T(0));
  parallel_for(0, p.N * p.C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const T* src = x + nc * p.H * p.W;
      T* dst = xp.data() + nc * l.plane;
      // The zeros first: each phase's rows outside [i0, i1) whole, the others outside [j0, j1) (or the
      // whole plane in one pass when most of it is padding, or small).
      if (2 * p.H * p.W < l.plane || l.plane < kSmallPlane) {
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
            split_columns2(cap, srow, p.W, row + o.even, row + o.odd);
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


std::vector<int64_t> tap_offsets(const Conv2dProblem& p) {
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

template <typename T>
Buffer<T> flipped_weight(const Conv2dProblem& p, const T* w) {
  const int64_t G = p.groups, Cg = p.C_per_group(), Kg = p.K_per_group(), RS = p.R * p.S;
  Buffer<T> wt(p.weight_numel());
  constexpr int64_t kKb = 16;
  const int64_t kblocks = (Kg + kKb - 1) / kKb;
  parallel_for(0, G * kblocks, 1, [&](int64_t begin, int64_t end) {
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
void forward_direct(const Conv2dProblem& p, const T* x, const T* w, const T* b, T* y, bool relu, Capability cap,
                    const T* residual) {
  const int64_t G = p.groups, Cg = p.C_per_group(), Kg = p.K_per_group(), red = p.reduction();
  const PhaseLayout l = phase_layout(p);
  const int64_t Wp = l.Wh, plane = l.plane, PQ = p.P * p.Q;
  const int64_t V = (p.P - 1) * Wp + p.Q, tiles = (V + kTile - 1) / kTile, width = tile_width(V, tiles);
  const Buffer<T> xp = padded_input(p, x, cap);
  const std::vector<int64_t> boff = tap_offsets(p);
  if (row_tiles(p)) {
    // Wide outputs: a tile is one output row, written straight into y (no dropped column computed and
    // no copy out).
    forward_items(p, p.N, p.P, w, b, relu, cap, [&](GemmArgs<T>& a, int64_t n, int64_t g, int64_t oh, int64_t k0) {
      a.N = p.Q;
      a.b = xp.data() + (n * p.C + g * Cg) * plane + oh * Wp, a.b_off = boff.data();
      a.c = y + (n * p.K + g * Kg + k0) * PQ + oh * p.Q, a.ldc = PQ;
      if (residual) a.res = residual + (a.c - y), a.ldr = PQ;
    });
    return;
  }
  const int64_t base_items = p.N * G * tiles, kchunks = forward_k_chunks(p, base_items);
  const int64_t rows_per_chunk = (Kg + kchunks - 1) / kchunks;
  parallel_for(0, base_items * kchunks, 1, [&](int64_t begin, int64_t end) {
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
      // The tile's columns run on the phase width, not the output's, so the residual is added (and
      // then the ReLU applied) by the copy out, which already visits each output element once.
      a.relu = relu && !residual;
      gemm(cap, a);
      // Valid columns (ow < Q) of each padded row the tile covers.
      const int64_t yoff = (n * p.K + g * Kg + k0) * PQ;
      T* yg = y + yoff;
      for (int64_t v = v0; v < v0 + len;) {
        const int64_t oh = v / Wp, ow = v % Wp;
        const int64_t run = std::min(v0 + len - v, Wp - ow);
        const int64_t valid = std::max<int64_t>(0, std::min(run, p.Q - ow));
        if (valid > 0) {
          for (int64_t k = 0; k < k1 - k0; ++k) {
            T* dst = yg + k * PQ + oh * p.Q + ow;
            const T* src = tmp.data() + k * kTile + (v - v0);
            if (residual) {
              const T* r = residual + yoff + k * PQ + oh * p.Q + ow;
              for (int64_t j = 0; j < valid; ++j) {
                const T sum = src[j] + r[j];
                dst[j] = (relu && sum < T(0)) ? T(0) : sum;
              }
            } else {
              std::memcpy(dst, src, valid * sizeof(T));
            }
          }
        }
        v += run;
      }
    }
  });
}

// Reads the input itself as its B matrix.
template <typename T>
void forward_pointwise(const Conv2dProblem& p, const T* x, const T* w, const T* b, T* y, bool relu, Capability cap,
                       const T* residual) {
  const int64_t PQ = p.P * p.Q, tiles = (PQ + kTile - 1) / kTile;
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group();
  forward_items(p, p.N, tiles, w, b, relu, cap, [&](GemmArgs<T>& a, int64_t n, int64_t g, int64_t t, int64_t k0) {
    const int64_t pix0 = t * kTile;
    a.N = std::min(kTile, PQ - pix0);
    a.b = x + (n * p.C + g * Cg) * PQ + pix0, a.ldb = PQ;
    a.c = y + (n * p.K + g * Kg + k0) * PQ + pix0, a.ldc = PQ;
    if (residual) a.res = residual + (a.c - y), a.ldr = PQ;
  });
}

template <typename T>
void grad_input_pointwise(const Conv2dProblem& p, const T* dy, const T* w, T* dx, Capability cap) {
  const int64_t PQ = p.P * p.Q, tiles = (PQ + kTile - 1) / kTile, G = p.groups;
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group(), red = p.reduction();
  parallel_for(0, p.N * G, 1, [&](int64_t begin, int64_t end) {
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
}

template <typename T>
void grad_input_phase(const Conv2dProblem& p, const T* dy, const T* w, T* dx, Capability cap) {
  const int64_t PQ = p.P * p.Q, G = p.groups;
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group(), red = p.reduction();
  // Any other stride or padding: per (sample, group, chunk of input channels), dcol = W^T dy a tile of
  // output pixels at a time (the chunk's rows of it), its pixels numbered on the phase width as in
  // forward_direct (v = oh * Wh + ow, dy zero in the dropped columns), so tap r's row of dcol adds into
  // one contiguous run of the phase-split accumulator, at tap_offsets(p)[r] + v; then the accumulator's
  // input pixels are copied out into dx. Each dx element sums its own channel's taps in the order (tile,
  // kh, kw), whichever thread and chunk compute it; the channels are cut into chunks only when there
  // are fewer (sample, group) items than two per thread (batch 1).
  const PhaseLayout l = phase_layout(p);
  const int64_t Wh = l.Wh, V = (p.P - 1) * Wh + p.Q, vtiles = (V + kTile - 1) / kTile, Vpad = vtiles * kTile;
  const int64_t RS = p.R * p.S, items = p.N * G, want = 2 * num_threads();
  const int64_t cchunks = items >= want ? 1 : std::min(Cg, (want + items - 1) / items);
  const int64_t cmax = (Cg + cchunks - 1) / cchunks;
  const std::vector<int64_t> off = tap_offsets(p);
  const bool merge2 = std::is_same_v<T, float> && l.sw == 2 && has_simd_movers(cap);
  parallel_for(0, items * cchunks, 1, [&](int64_t begin, int64_t end) {
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
              merge_columns2(cap, row + o.even, row + o.odd, p.W, out);
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
  parallel_for(0, p.N * G * kt_blocks, 1, [&](int64_t begin, int64_t end) {
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
        if (k1 - k0 == kKt && has_simd_movers(cap)) {
          for (int64_t oh = 0; oh < p.P; ++oh) rows_to_lanes16(cap, src + oh * p.Q, PQ, dst + oh * Wp * Kg, Kg, p.Q);
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
  parallel_for(0, chunks * G * rblocks, 1, [&](int64_t begin, int64_t end) {
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
  parallel_for(0, G * tblocks, 1, [&](int64_t begin, int64_t end) {
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

#define CNNFAST_INSTANTIATE(T)                                                                                 \
  template Buffer<T> padded_input<T>(const Conv2dProblem&, const T*, Capability);                             \
  template Buffer<T> flipped_weight<T>(const Conv2dProblem&, const T*);                                       \
  template void forward_direct<T>(const Conv2dProblem&, const T*, const T*, const T*, T*, bool, Capability,        \
                                  const T*);                                                                  \
  template void forward_pointwise<T>(const Conv2dProblem&, const T*, const T*, const T*, T*, bool, Capability,     \
                                     const T*);                                                               \
  template void grad_input_pointwise<T>(const Conv2dProblem&, const T*, const T*, T*, Capability);            \
  template void grad_input_phase<T>(const Conv2dProblem&, const T*, const T*, T*, Capability);                \
  template void grad_weight_direct<T>(const Conv2dProblem&, const T*, const T*, T*, Capability);
CNNFAST_INSTANTIATE(float)
CNNFAST_INSTANTIATE(double)
#undef CNNFAST_INSTANTIATE

}  // namespace cnnfast::cpu
