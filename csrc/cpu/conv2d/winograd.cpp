// Winograd F(2x2, 3x3) convolution (winograd.h), forward and grad-weight: lays out the tiles, splits
// the work over threads with parallel_for and runs the 16 GEMMs of each block through gemm.h.
//
// Forward, two orders, chosen from the problem's sizes (both give the same bits):
//   tile-major (more tiles than output channels per group, the large-image layers): U for every
//     filter once, then items (group, block of 64 tiles[, block of output channels]) transform their
//     tiles' inputs into V (in L2), run the 16 GEMMs M[xi] = U[xi] V[xi] a block of output channels at
//     a time and transform M into the outputs (bias and ReLU applied there);
//   channel-major (few tiles, many channels: the 7x7 and 14x14 layers at small batch): V for every tile
//     once, then items (group, block of output channels) transform their own filters into U (in L2,
//     so the 16/9 x larger U of all filters is never written out) and run every tile block against it.
// Every output element is one GEMM column's sum over channels in a fixed order and one output
// transform, whichever item computes it: the result is bit-identical for any thread count.
// Grad-weight: winograd_grad_weight below.
#include "cpu/conv2d/winograd.h"

#include "cpu/common/parallel.h"

#include <algorithm>

#include "cpu/conv2d/gemm.h"
#include "cpu/common/scratch.h"

namespace cnnfast::cpu {
namespace {

constexpr int64_t kBlockGroups = 4;                         // groups of 16 tiles per GEMM column block
constexpr int64_t kBlockTiles = kBlockGroups * kWinoLanes;  // 64: the GEMM's register-block width

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Grad-weight: up to this many tiles (padded to groups of 16) the transformed operands of all tiles
// are built once and each item's GEMMs run over all of them; past it, items sum blocks of tiles
// into partials of at most about this many bytes in all.
constexpr int64_t kGradWeightGlobalTiles = 128;
constexpr int64_t kGradWeightPartialBytes = int64_t(8) << 20;
int64_t round_up(int64_t a, int64_t b) { return ceil_div(std::max<int64_t>(a, 1), b) * b; }

// n rows cut into `parts` contiguous chunks of whole units (the last unit may be partial), the chunks'
// unit counts differing by at most one.
struct Chunks {
  int64_t n, unit, units, parts, max_len;
  Chunks(int64_t n_, int64_t unit_, int64_t parts_)
      : n(n_), unit(unit_), units(ceil_div(n_, unit_)), parts(parts_), max_len(ceil_div(units, parts_) * unit_) {}
  int64_t begin(int64_t i) const { return std::min(n, i * units / parts * unit); }
  int64_t end(int64_t i) const { return std::min(n, (i + 1) * units / parts * unit); }
};

// The stride between the 16 matrices of U, V or M: n floats rounded up to a cache line, plus one line,
// so that the 16 accesses of one transform (one per xi) fall in different cache sets (a power-of-two
// stride such as 64 x 64 floats would put all 16 in one set of L1 and alias in the store buffer).
int64_t xi_stride(int64_t n) { return (n + 15) / 16 * 16 + 16; }

// The A operand of the 16 GEMMs: U[xi] at u + xi * u_xi (or, for the rotated filters, U[rotated(xi)]),
// element (row i, reduction kk) at i * rs + kk * ks.
struct UView {
  const float* u;
  int64_t u_xi, rs, ks;
  bool reversed;
};

// U of a filter rotated by 180 degrees: G J = P G, with J reversing 3 entries and P swapping entries
// 0 and 3 of 4 (G's middle rows are symmetric), so the rotated filter's U at (i, j) is U at
// (P i, P j).
inline int64_t rotated(int64_t xi) {
  constexpr int64_t swap03[4] = {3, 1, 2, 0};
  return swap03[xi / 4] * 4 + swap03[xi % 4];
}

// M[xi] = U[xi] V[xi] for xi < 16 (kn rows, ncol columns, reduction red; M's rows 64 floats apart).
void gemm16(Capability cap, int64_t kn, int64_t ncol, int64_t red, const UView& u, const float* v, int64_t v_xi,
            int64_t ldv, float* m, int64_t m_xi) {
  for (int64_t xi = 0; xi < 16; ++xi) {
    GemmArgs<float> a;
    a.M = kn, a.N = ncol, a.K = red;
    a.a = u.u + (u.reversed ? rotated(xi) : xi) * u.u_xi, a.a_rs = u.rs, a.a_ks = u.ks;
    a.b = v + xi * v_xi, a.ldb = ldv;
    a.c = m + xi * m_xi, a.ldc = kBlockTiles;
    gemm(cap, a);
  }
}

}  // namespace

const WinoKernels& winograd_kernels(Capability cap) {
  switch (cap) {
    case Capability::kAvx512:
      return winograd_kernels_avx512();
    case Capability::kAvx2:
      return winograd_kernels_avx2();
    default:
      return winograd_kernels_portable();
  }
}

WinoLayout winograd_layout(const Conv2dProblem& p) {
  WinoLayout l;
  l.N = p.N, l.C = p.C, l.K = p.K, l.P = p.P, l.Q = p.Q, l.PQ = p.P * p.Q, l.H = p.H, l.W = p.W, l.HW = p.H * p.W;
  l.TH = (p.P + 1) / 2, l.TW = (p.Q + 1) / 2, l.T = p.N * l.TH * l.TW;
  l.groups = ceil_div(l.T, kWinoLanes);
  l.first.resize(l.groups + 1);
  const int64_t per_image = l.TH * l.TW;
  for (int64_t q = 0; q < l.groups; ++q) {
    l.first[q] = static_cast<int32_t>(l.segs.size());
    int64_t t = q * kWinoLanes;
    for (int64_t lane = 0; lane < kWinoLanes && t < l.T;) {
      const int64_t n = t / per_image, th = (t % per_image) / l.TW, tw = t % l.TW;
      const int64_t run = std::min({kWinoLanes - lane, l.TW - tw, l.T - t});
      WinoSegment s;
      s.lane0 = static_cast<int32_t>(lane), s.lane1 = static_cast<int32_t>(lane + run);
      s.yoff = n * p.K * l.PQ + 2 * th * p.Q + 2 * tw;
      const int64_t count = std::min(2 * run, p.Q - 2 * tw);  // output columns (the last may be odd)
      const uint64_t bits = ((uint64_t(1) << count) - 1) << (2 * lane);
      s.out_lo = static_cast<uint32_t>(bits & 0xFFFF), s.out_hi = static_cast<uint32_t>((bits >> 16) & 0xFFFF);
      s.row1 = 2 * th + 1 < p.P;
      const int64_t col0 = 2 * (tw - lane) - p.pad_w;  // input column of "lane 0", element (0, 0)
      s.xin = n * p.C * l.HW + (2 * th - p.pad_h) * p.W + col0;
      for (int i = 0; i < 4; ++i) {
        const int64_t h = 2 * th + i - p.pad_h;
        if (h >= 0 && h < p.H) s.rows |= 1u << i;
      }
      // Positions [2 lane, 2 (lane + run)) of a 32-float window starting at column col0 (+2 for win1),
      // inside [0, W).
      auto window = [&](int64_t start) {
        const int64_t lo = std::clamp<int64_t>(-start, 2 * lane, 2 * (lane + run));
        const int64_t hi = std::clamp<int64_t>(p.W - start, lo, 2 * (lane + run));
        return static_cast<uint32_t>(((uint64_t(1) << hi) - 1) & ~((uint64_t(1) << lo) - 1));
      };
      s.win0 = window(col0), s.win1 = window(col0 + 2);
      l.segs.push_back(s);
      lane += run, t += run;
    }
  }
  l.first[l.groups] = static_cast<int32_t>(l.segs.size());
  return l;
}

namespace {

// y += residual, then the ReLU when relu, on the outputs of channels k < nk and tile groups [q0, q1)
// that the output transform has just written (y and residual point at channel 0 of image 0 of the
// item's first channel). The transforms (winograd_simd.inc) write bias and ReLU only, so the residual
// is added here, per work item while its outputs are still in cache, rather than in a pass over y.
void add_residual(const WinoLayout& l, int64_t nk, int64_t q0, int64_t q1, const float* residual, bool relu,
                  float* y) {
  for (int64_t k = 0; k < nk; ++k)
    for (int32_t si = l.first[q0]; si < l.first[q1]; ++si) {
      const WinoSegment& s = l.segs[si];
      const int64_t count = __builtin_popcount(s.out_lo) + __builtin_popcount(s.out_hi);
      for (int64_t row = 0; row < (s.row1 ? 2 : 1); ++row) {
        const int64_t off = k * l.PQ + s.yoff + row * l.Q;
        float* d = y + off;
        const float* r = residual + off;
        for (int64_t j = 0; j < count; ++j) {
          const float sum = d[j] + r[j];
          d[j] = relu && sum < 0.0f ? 0.0f : sum;
        }
      }
    }
}

}  // namespace

void winograd_forward(const Conv2dProblem& p, const float* x, const WinoWeight& w, const float* b, float* y,
                      bool relu, Capability cap, const float* residual) {
  const WinoKernels& kern = winograd_kernels(cap);
  const WinoLayout l = winograd_layout(p);
  const int64_t G = p.groups, Cg = p.C_per_group(), Kg = p.K_per_group(), PQ = l.PQ;
  const int64_t threads = num_threads();
  // The weight as stored: [G][A][B][3][3]; U is computed on it as stored, [xi][a][b].
  const bool tr = w.transposed;
  const int64_t A = tr ? Cg : Kg, B = tr ? Kg : Cg, ld = B * 9;
  const bool out_relu = relu && !residual;  // with a residual, the ReLU follows its addition


  const int64_t Tpad = l.groups * kWinoLanes;
  if (Tpad > Kg) {
    // Tile-major. U[g][xi][a][b] for all filters.
    const int64_t u_xi = xi_stride(A * B);
    Scratch<float> u(G * 16 * u_xi);
    // (In one thread when small: a parallel loop costs more than a few thousand filters.)
    parallel_for(0, G * A, std::max<int64_t>(8, 16384 / B), [&](int64_t begin, int64_t end) {
      for (int64_t ga = begin; ga < end; ++ga) {
        const int64_t g = ga / A, a = ga % A;
        kern.filter(w.w + (g * A + a) * ld, ld, 1, B, u.data() + g * 16 * u_xi + a * B, u_xi, B);
      }
    });
    // Tile blocks of at most kBlockGroups groups, as many as a multiple of the thread count (equal
    // work per thread); when there are still too few items, output channels are cut into chunks too
    // (each chunk transforms its block's input again).
    const int64_t blocks = std::min(l.groups, round_up(ceil_div(l.groups, kBlockGroups), threads));
    int64_t kchunks = 1;
    if (G * blocks < 2 * threads) kchunks = std::min(ceil_div(2 * threads, G * blocks), ceil_div(Kg, 24));
    const Chunks kc_rows(Kg, 6, kchunks);
    // Output channels per GEMM pass: M (16 x kb x 64 floats) stays in L2.
    const int64_t kb = std::min(Kg <= 96 ? Kg : int64_t(48), kc_rows.max_len);
    const int64_t v_xi = xi_stride(Cg * kBlockTiles), m_xi = xi_stride(kb * kBlockTiles);
    parallel_for(0, G * blocks * kchunks, 1, [&](int64_t begin, int64_t end) {
      Scratch<float> v(16 * v_xi), m(16 * m_xi);
      for (int64_t item = begin; item < end; ++item) {
        const int64_t kc = item % kchunks, blk = (item / kchunks) % blocks, g = item / (kchunks * blocks);
        const int64_t q0 = blk * l.groups / blocks, q1 = (blk + 1) * l.groups / blocks;
        const int64_t ncol = (q1 - q0) * kWinoLanes;
        const int64_t k_begin = kc_rows.begin(kc), k_end = kc_rows.end(kc);
        if (k_begin >= k_end) continue;
        kern.input(l, x + g * Cg * l.HW, Cg, q0, q1, v.data(), v_xi, kBlockTiles);
        for (int64_t k0 = k_begin; k0 < k_end; k0 += kb) {
          const int64_t kn = std::min(kb, k_end - k0);
          const float* ug = u.data() + g * 16 * u_xi;
          const UView uv = tr ? UView{ug + k0, u_xi, 1, B, true} : UView{ug + k0 * B, u_xi, B, 1, false};
          gemm16(cap, kn, ncol, Cg, uv, v.data(), v_xi, kBlockTiles, m.data(), m_xi);
          kern.output(l, m.data(), m_xi, kBlockTiles, kn, q0, q1, b ? b + g * Kg + k0 : nullptr, out_relu,
                      y + (g * Kg + k0) * PQ);
          if (residual)
            add_residual(l, kn, q0, q1, residual + (g * Kg + k0) * PQ, relu, y + (g * Kg + k0) * PQ);
        }
      }
    });
    return;
  }

  // Channel-major. V[xi][c][t] for all channels and tiles.
  const int64_t blocks = ceil_div(l.groups, kBlockGroups);
  const int64_t v_xi = xi_stride(p.C * Tpad);
  Scratch<float> v(16 * v_xi);
  parallel_for(0, p.C * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t c = item / blocks, q0 = (item % blocks) * kBlockGroups, q1 = std::min(l.groups, q0 + kBlockGroups);
      kern.input(l, x + c * l.HW, 1, q0, q1, v.data() + c * Tpad + q0 * kWinoLanes, v_xi, Tpad);
    }
  });
  // Chunks of output channels, one per item: each chunk's U (16 x rows x Cg floats) at most about
  // 1 MB, at least two chunks per thread and a multiple of the thread count, in units of the GEMM's
  // 6-row register block (of 16 when transposed: the filter transform's vectors run along them).
  const int64_t unit = tr ? 16 : 6, units = ceil_div(Kg, unit);
  const int64_t rows_max = std::max<int64_t>(unit, (int64_t(1) << 20) / (64 * Cg));
  const int64_t kchunks = std::min(units, round_up(std::max(ceil_div(Kg, rows_max), 2 * threads), threads));
  const Chunks kc_rows(Kg, unit, kchunks);
  const int64_t kb = kc_rows.max_len;
  const int64_t u_xi = xi_stride(kb * Cg), m_xi = xi_stride(kb * kBlockTiles);  // Cg: the reduction (A or B)
  parallel_for(0, G * kchunks, 1, [&](int64_t begin, int64_t end) {
    Scratch<float> u(16 * u_xi), m(16 * m_xi);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t kc = item % kchunks, g = item / kchunks;
      const int64_t k0 = kc_rows.begin(kc), kn = kc_rows.end(kc) - k0;
      if (kn <= 0) continue;
      // This item's filters: rows [k0, k0 + kn) of the weight, or columns when transposed.
      const float* wg = w.w + g * A * ld;
      if (tr) {
        kern.filter(wg + k0 * 9, ld, A, kn, u.data(), u_xi, kb);
      } else {
        kern.filter(wg + k0 * ld, ld, kn, B, u.data(), u_xi, B);
      }
      const UView uv = tr ? UView{u.data(), u_xi, 1, kb, true} : UView{u.data(), u_xi, B, 1, false};
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t q0 = blk * kBlockGroups, q1 = std::min(l.groups, q0 + kBlockGroups);
        gemm16(cap, kn, (q1 - q0) * kWinoLanes, Cg, uv, v.data() + g * Cg * Tpad + q0 * kWinoLanes, v_xi, Tpad, m.data(), m_xi);
        kern.output(l, m.data(), m_xi, kBlockTiles, kn, q0, q1, b ? b + g * Kg + k0 : nullptr, out_relu,
                    y + (g * Kg + k0) * PQ);
        if (residual)
          add_residual(l, kn, q0, q1, residual + (g * Kg + k0) * PQ, relu, y + (g * Kg + k0) * PQ);
      }
    }
  });
}

void winograd_grad_weight(const Conv2dProblem& p, const float* dy, const float* x, float* dw, Capability cap) {
  const WinoKernels& kern = winograd_kernels(cap);
  const WinoLayout l = winograd_layout(p);
  const int64_t G = p.groups, Cg = p.C_per_group(), Kg = p.K_per_group(), PQ = l.PQ;
  const int64_t threads = num_threads();
  const int64_t Tpad = l.groups * kWinoLanes, blocks = ceil_div(l.groups, kBlockGroups);

  if (Tpad > kGradWeightGlobalTiles) {
    // Many tiles: items (group, chunk of the tiles) sum their tiles' products into a partial dU
    // [xi][k][c], a block of 64 tiles at a time (both operands of a block in L2); the partials are
    // added in chunk order. The chunk count comes from the problem alone (never the thread count).
    const int64_t pbytes = 64 * Kg * Cg * G;
    const int64_t chunks = std::clamp<int64_t>(kGradWeightPartialBytes / pbytes, 1, std::min<int64_t>(8, blocks));
    const int64_t du_xi = xi_stride(Kg * Cg), part = G * 16 * du_xi;
    const int64_t vt_xi = xi_stride(kBlockTiles * Cg), d_xi = xi_stride(Kg * kBlockTiles);
    Scratch<float> du(chunks * part);
    parallel_for(0, G * chunks, 1, [&](int64_t begin, int64_t end) {
      Scratch<float> vt(16 * vt_xi), d(16 * d_xi);
      for (int64_t item = begin; item < end; ++item) {
        const int64_t chunk = item % chunks, g = item / chunks;
        float* acc = du.data() + chunk * part + g * 16 * du_xi;
        const int64_t b0 = chunk * blocks / chunks, b1 = (chunk + 1) * blocks / chunks;
        for (int64_t blk = b0; blk < b1; ++blk) {
          const int64_t q0 = blk * kBlockGroups, q1 = std::min(l.groups, q0 + kBlockGroups);
          kern.input_t(l, x + g * Cg * l.HW, Cg, q0, q1, vt.data(), vt_xi, Cg);
          kern.grad_output(l, dy + g * Kg * PQ, Kg, q0, q1, d.data(), d_xi, kBlockTiles);
          for (int64_t xi = 0; xi < 16; ++xi) {
            GemmArgs<float> a;
            a.M = Kg, a.N = Cg, a.K = (q1 - q0) * kWinoLanes;
            a.a = d.data() + xi * d_xi, a.a_rs = kBlockTiles, a.a_ks = 1;
            a.b = vt.data() + xi * vt_xi, a.ldb = Cg;
            a.c = acc + xi * du_xi, a.ldc = Cg;
            a.accumulate = blk > b0;
            gemm(cap, a);
          }
        }
      }
    });
    // dU = the partials added in chunk order, then dW = G^T dU G; items own blocks of 8 rows.
    const int64_t rblocks = ceil_div(Kg, 8);
    parallel_for(0, G * rblocks, std::max<int64_t>(1, 512 / Cg), [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        const int64_t g = item / rblocks, k0 = (item % rblocks) * 8, kn = std::min<int64_t>(8, Kg - k0);
        float* first = du.data() + g * 16 * du_xi;
        for (int64_t xi = 0; xi < 16; ++xi)
          for (int64_t chunk = 1; chunk < chunks; ++chunk) {
            float* dst = first + xi * du_xi + k0 * Cg;
            const float* src = dst + chunk * part;
            for (int64_t e = 0; e < kn * Cg; ++e) dst[e] += src[e];
          }
        kern.filter_grad(first + k0 * Cg, du_xi, Cg, kn, Cg, dw + (g * Kg + k0) * Cg * 9, Cg * 9);
      }
    });
    return;
  }

  // Few tiles. Both operands of the 16 GEMMs for all tiles: V transposed, vt[xi][t][c], and the output
  // gradient's tiles d[xi][k][t] (zero in the lanes past the last tile, which so add nothing).
  const int64_t vt_xi = xi_stride(Tpad * p.C), d_xi = xi_stride(p.K * Tpad);
  Scratch<float> vt(16 * vt_xi), d(16 * d_xi);
  // One parallel loop for both: items [0, cblocks * blocks) build vt, 16 channels at a time, the
  // others d, 8 channels at a time.
  const int64_t cblocks = ceil_div(p.C, kWinoLanes), kblocks = ceil_div(p.K, 8);
  parallel_for(0, (cblocks + kblocks) * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t q0 = (item % blocks) * kBlockGroups, q1 = std::min(l.groups, q0 + kBlockGroups);
      if (item < cblocks * blocks) {
        const int64_t c0 = (item / blocks) * kWinoLanes, cn = std::min(kWinoLanes, p.C - c0);
        kern.input_t(l, x + c0 * l.HW, cn, q0, q1, vt.data() + q0 * kWinoLanes * p.C + c0, vt_xi, p.C);
      } else {
        const int64_t k0 = (item / blocks - cblocks) * 8, kn = std::min<int64_t>(8, p.K - k0);
        kern.grad_output(l, dy + k0 * PQ, kn, q0, q1, d.data() + k0 * Tpad + q0 * kWinoLanes, d_xi, Tpad);
      }
    }
  });

  // Items own chunks of output channels (units of the GEMM's 6-row block, as many as a multiple of the
  // thread count, each chunk's dU about 1 MB at most): dU[xi][k][c] = sum_t d[xi][k][t] vt[xi][t][c]
  // over all tiles in one GEMM (a fixed order), then dW = G^T dU G.
  const int64_t units = ceil_div(Kg, 6);
  const int64_t rows_max = std::max<int64_t>(6, (int64_t(1) << 20) / (64 * Cg));
  const int64_t kchunks = std::min(units, round_up(std::max(ceil_div(Kg, rows_max), ceil_div(2 * threads, G)), threads));
  const Chunks kc_rows(Kg, 6, kchunks);
  const int64_t du_xi = xi_stride(kc_rows.max_len * Cg);
  parallel_for(0, G * kchunks, 1, [&](int64_t begin, int64_t end) {
    Scratch<float> du(16 * du_xi);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t kc = item % kchunks, g = item / kchunks;
      const int64_t k0 = kc_rows.begin(kc), kn = kc_rows.end(kc) - k0;
      if (kn <= 0) continue;
      for (int64_t xi = 0; xi < 16; ++xi) {
        GemmArgs<float> a;
        a.M = kn, a.N = Cg, a.K = Tpad;
        a.a = d.data() + xi * d_xi + (g * Kg + k0) * Tpad, a.a_rs = Tpad, a.a_ks = 1;
        a.b = vt.data() + xi * vt_xi + g * Cg, a.ldb = p.C;
        a.c = du.data() + xi * du_xi, a.ldc = Cg;
        gemm(cap, a);
      }
      kern.filter_grad(du.data(), du_xi, Cg, kn, Cg, dw + (g * Kg + k0) * Cg * 9, Cg * 9);
    }
  });
}

WinoTransforms winograd_transforms(Capability cap, const Conv2dProblem& p, const float* x, const float* w,
                                   const float* dy, const float* m, const float* du, const float* bias, bool relu) {
  const WinoKernels& kern = winograd_kernels(cap);
  const WinoLayout l = winograd_layout(p);
  const int64_t C = p.C, K = p.K, Tp = l.groups * kWinoLanes;
  WinoTransforms r;
  r.v.resize(16 * C * Tp), r.y.resize(p.output_numel()), r.u.resize(16 * K * C);
  r.vt.resize(16 * Tp * C), r.d.resize(16 * K * Tp), r.dw.resize(K * C * 9);
  kern.input(l, x, C, 0, l.groups, r.v.data(), C * Tp, Tp);
  kern.output(l, m, K * Tp, Tp, K, 0, l.groups, bias, relu, r.y.data());
  kern.filter(w, C * 9, K, C, r.u.data(), K * C, C);
  kern.input_t(l, x, C, 0, l.groups, r.vt.data(), Tp * C, C);
  kern.grad_output(l, dy, K, 0, l.groups, r.d.data(), K * Tp, Tp);
  kern.filter_grad(du, K * C, C, K, C, r.dw.data(), C * 9);
  return r;
}

}  // namespace cnnfast::cpu
