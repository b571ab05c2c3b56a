// Window geometry and the plain per-element and per-plane loops of the CPU max_pool2d, shared by its
// portable path (max_pool2d.cpp) and its SIMD paths (max_pool2d_simd.inc). Framework-free.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "problem.h"

namespace cnnfast::cpu {

// Planes of at least this many elements take the portable path (the SIMD path's int32 offsets).
constexpr int64_t kSimdPlaneLimit = int64_t(1) << 30;

// The output columns [lo, hi) of a row whose window tap at kernel column kw lands inside [0, W).
inline void valid_pool_columns(const Pool2dProblem& p, int64_t kw, int64_t& lo, int64_t& hi) {
  const int64_t off = kw * p.dilation_w - p.pad_w, s = p.stride_w;  // iw = ow * s + off
  lo = std::min(p.Q, off >= 0 ? int64_t(0) : (-off + s - 1) / s);
  hi = (p.W - 1 - off) < 0 ? int64_t(0) : std::min(p.Q, (p.W - 1 - off) / s + 1);
  hi = std::max(hi, lo);
}

// The kernel rows [lo, hi) of output row oh whose input row lies inside [0, H).
inline void valid_pool_rows(const Pool2dProblem& p, int64_t oh, int64_t& lo, int64_t& hi) {
  const int64_t h0 = oh * p.stride_h - p.pad_h, d = p.dilation_h;  // ih = h0 + kh * d
  lo = std::min(p.kernel_h, h0 >= 0 ? int64_t(0) : (-h0 + d - 1) / d);
  hi = (p.H - 1 - h0) < 0 ? int64_t(0) : std::min(p.kernel_h, (p.H - 1 - h0) / d + 1);
  hi = std::max(hi, lo);
}

// One output element the plain way, with the rules of the whole file: a NaN wins over any number and
// the last NaN in window order is kept (torch's rule, on the CPU and CUDA alike); ties keep the first
// maximum in the window's row-major order; padding never wins. A window with no input element gives
// -inf and torch's index (Pool2dProblem::empty_window_index).
template <typename T>
void max_pool2d_one(const Pool2dProblem& p, const T* x, int64_t oh, int64_t ow, T* y, int64_t* idx) {
  T best = 0;
  int64_t arg = -1;
  for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
    const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dilation_h;
    if (ih < 0 || ih >= p.H) continue;
    for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
      const int64_t iw = ow * p.stride_w - p.pad_w + kw * p.dilation_w;
      if (iw < 0 || iw >= p.W) continue;
      const T v = x[ih * p.W + iw];
      if (arg < 0 || v > best || v != v) {
        best = v;
        arg = ih * p.W + iw;
      }
    }
  }
  *y = arg < 0 ? -std::numeric_limits<T>::infinity() : best;
  *idx = arg < 0 ? p.empty_window_index(oh, ow) : arg;
}

// One output plane, portable path. Row at a time: for each tap (kh, kw) of the window, in torch's
// order, one pass over the output row's columns whose tap is inside the input, so the inner loop is
// branch-free and vectorizes. best/arg are scratch rows of Q elements (arg < 0: no tap seen yet, the
// next one always wins; still < 0 at the end: a window with no input element, as max_pool2d_one). I is int32_t (vectorizes with float) unless a plane has 2^31 elements or more.
template <typename T, typename I>
void max_pool2d_plane(const Pool2dProblem& p, const T* x, T* y, int64_t* idx, T* best, I* arg) {
  for (int64_t oh = 0; oh < p.P; ++oh) {
    const int64_t h0 = oh * p.stride_h - p.pad_h;
    std::fill(arg, arg + p.Q, I(-1));
    std::fill(best, best + p.Q, T(0));
    for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
      const int64_t ih = h0 + kh * p.dilation_h;
      if (ih < 0 || ih >= p.H) continue;
      for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
        int64_t lo, hi;
        valid_pool_columns(p, kw, lo, hi);
        const I base = static_cast<I>(ih * p.W + kw * p.dilation_w - p.pad_w);
        const I s = static_cast<I>(p.stride_w);
        const T* xr = x + base;
        if (s == 1) {
          for (int64_t ow = lo; ow < hi; ++ow) {
            const T v = xr[ow], b = best[ow];
            const I a = arg[ow];
            const bool take = (a < 0) | (v > b) | (v != v);
            best[ow] = take ? v : b;
            arg[ow] = take ? base + static_cast<I>(ow) : a;
          }
        } else {
          for (int64_t ow = lo; ow < hi; ++ow) {
            const T v = xr[ow * s], b = best[ow];
            const I a = arg[ow];
            const bool take = (a < 0) | (v > b) | (v != v);
            best[ow] = take ? v : b;
            arg[ow] = take ? base + static_cast<I>(ow) * s : a;
          }
        }
      }
    }
    T* yr = y + oh * p.Q;
    int64_t* ir = idx + oh * p.Q;
    for (int64_t ow = 0; ow < p.Q; ++ow) {
      yr[ow] = arg[ow] < 0 ? -std::numeric_limits<T>::infinity() : best[ow];
      ir[ow] = arg[ow] < 0 ? p.empty_window_index(oh, ow) : int64_t(arg[ow]);
    }
  }
}

// Whether some window holds no input element (some output row or column whose taps all fall in the
// padding). The SIMD paths do not take such problems: the portable ones give torch's answer for them.
inline bool has_empty_windows(const Pool2dProblem& p) {
  for (int64_t oh = 0; oh < p.P; ++oh)
    if (pool_window_misses(oh, p.H, p.kernel_h, p.stride_h, p.pad_h, p.dilation_h)) return true;
  for (int64_t ow = 0; ow < p.Q; ++ow)
    if (pool_window_misses(ow, p.W, p.kernel_w, p.stride_w, p.pad_w, p.dilation_w)) return true;
  return false;
}

// Column geometry of the SIMD forward, for chunk ch of L output columns (ow0 = ch * L) and kernel
// column kw: the tap's input columns are off + stride_w * j for lane j.
struct PoolTapCols {
  int32_t off;    // ow0 * stride_w + kw * dilation_w - pad_w
  uint32_t lanes;  // lanes j with ow0 + j < Q whose tap column is inside [0, W)
  uint32_t m0, m1;  // elements e of the raw loads (off + e, off + L + e) inside [0, W)
};

struct PoolForwardGeom {
  bool ok = false;  // false: offsets do not fit the SIMD path's int32 arithmetic
  int64_t chunks = 0;
  std::vector<PoolTapCols> taps;     // [chunk][kw]
  std::vector<int32_t> tap_offset;   // [kh][kw]: kh * dilation_h * W + kw * dilation_w
  std::vector<uint8_t> row_masked;   // per chunk: some tap reads outside its row
  std::vector<int64_t> read_lo, read_hi;  // per chunk: the columns [lo, hi) its taps read, from a row's start
  std::vector<uint32_t> store;       // per chunk: lanes with ow < Q
};

inline PoolForwardGeom make_forward_geom(const Pool2dProblem& p, int L) {
  PoolForwardGeom g;
  const int64_t S = p.stride_w, span = S * L;  // raw elements loaded per tap
  constexpr int64_t kLimit = int64_t(1) << 29;
  if ((p.kernel_h - 1) * p.dilation_h * p.W + (p.kernel_w - 1) * p.dilation_w >= kLimit) return g;
  g.chunks = (p.Q + L - 1) / L;
  g.taps.resize(g.chunks * p.kernel_w);
  g.row_masked.resize(g.chunks);
  g.read_lo.resize(g.chunks);
  g.read_hi.resize(g.chunks);
  g.store.resize(g.chunks);
  for (int64_t kh = 0; kh < p.kernel_h; ++kh)
    for (int64_t kw = 0; kw < p.kernel_w; ++kw)
      g.tap_offset.push_back(static_cast<int32_t>(kh * p.dilation_h * p.W + kw * p.dilation_w));
  const auto inside = [&](int64_t iw) { return iw >= 0 && iw < p.W; };
  for (int64_t ch = 0; ch < g.chunks; ++ch) {
    const int64_t ow0 = ch * L;
    uint32_t store = 0;
    for (int j = 0; j < L; ++j) store |= (ow0 + j < p.Q ? 1u : 0u) << j;
    g.store[ch] = store;
    bool masked = false;
    int64_t lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
    for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
      const int64_t off = ow0 * S + kw * p.dilation_w - p.pad_w;
      if (off < -kLimit || off > kLimit) return g;  // g.ok stays false
      PoolTapCols t{static_cast<int32_t>(off), 0, 0, 0};
      for (int j = 0; j < L; ++j) {
        t.lanes |= ((store >> j & 1u) && inside(off + S * j) ? 1u : 0u) << j;
        t.m0 |= (inside(off + j) ? 1u : 0u) << j;
        t.m1 |= (inside(off + L + j) ? 1u : 0u) << j;
      }
      masked |= !(off >= 0 && off + span <= p.W);
      lo = std::min(lo, off);
      hi = std::max(hi, off + span);
      g.taps[ch * p.kernel_w + kw] = t;
    }
    g.row_masked[ch] = masked;
    g.read_lo[ch] = lo;
    g.read_hi[ch] = hi;
  }
  g.ok = true;
  return g;
}

// Non-overlapping windows along one dimension: the window (output position) each input position
// belongs to, or -1 for positions no window covers.
inline std::vector<int32_t> window_of_positions(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t pad,
                                                int64_t dilation) {
  std::vector<int32_t> map(in);
  for (int64_t i = 0; i < in; ++i) {
    const int64_t t = i + pad, o = t / stride, r = t % stride;  // i = o * stride - pad + r, 0 <= r < stride
    map[i] = (o < out && r % dilation == 0 && r / dilation < kernel) ? static_cast<int32_t>(o) : -1;
  }
  return map;
}

inline bool windows_overlap(int64_t kernel, int64_t stride, int64_t dilation) {
  return (kernel - 1) * dilation + 1 > stride;
}

// Backward of one plane, general path: the plane's indices are checked, then dx is zeroed and each
// gradient added at its index in output order. Returns false (dx untouched) for an index out of range.
// With empty windows (has_empty: has_empty_windows(p)) their outputs are skipped: their gradient is
// zero, and their index (torch's) may lie outside the plane.
template <typename T>
bool max_pool2d_backward_plane_scatter(const Pool2dProblem& p, const T* dy, const int64_t* idx, T* dx,
                                       bool has_empty) {
  const int64_t in_plane = p.H * p.W, out_plane = p.P * p.Q;
  const auto in_range = [&](int64_t o) { return static_cast<uint64_t>(idx[o]) < static_cast<uint64_t>(in_plane); };
  if (has_empty) {
    for (int64_t o = 0; o < out_plane; ++o)
      if (!p.window_empty(o / p.Q, o % p.Q) && !in_range(o)) return false;
    std::fill(dx, dx + in_plane, T(0));
    for (int64_t o = 0; o < out_plane; ++o)
      if (!p.window_empty(o / p.Q, o % p.Q)) dx[idx[o]] += dy[o];
    return true;
  }
  bool ok = true;
  for (int64_t o = 0; o < out_plane; ++o) ok &= in_range(o);
  if (!ok) return false;
  std::fill(dx, dx + in_plane, T(0));
  for (int64_t o = 0; o < out_plane; ++o) dx[idx[o]] += dy[o];
  return true;
}

}  // namespace cnnfast::cpu
