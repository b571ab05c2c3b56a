// The AVX-512 paths of the CPU max_pool2d (max_pool2d.h describes the algorithms): L = 16 (float) or
// 8 (double) outputs of a row at once, the write-once backward of non-overlapping 2-wide windows, and
// the pooling of planes in the images-per-vector layout. Standard headers and windows.h come before
// the target pragma, so only the functions below are compiled for AVX-512; they are reached only when
// the capability in use is AVX-512 (max_pool2d.cpp checks).
#include "cpu/max_pool2d/max_pool2d_avx512.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu/common/parallel.h"
#include "cpu/max_pool2d/windows.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CNNFAST_POOL_AVX512 1
#endif

namespace cnnfast::cpu {

#if CNNFAST_POOL_AVX512
// GCC 12 flags its own _mm512_undefined_* idiom inside the masked-load intrinsics.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")
namespace {

// One vector of L values, a vector of L int32 indices and an L-bit mask, for float and double.
struct Avx512F32 {
  using T = float;
  using V = __m512;
  using I = __m512i;
  using M = __mmask16;
  static constexpr int L = 16;
  static V set1(T a) { return _mm512_set1_ps(a); }
  static V load(const T* p) { return _mm512_loadu_ps(p); }
  static V loadz(M k, const T* p) { return _mm512_maskz_loadu_ps(k, p); }
  static void store(T* p, M k, V v) { _mm512_mask_storeu_ps(p, k, v); }
  // The even lanes of the 2L values a, b.
  static V even(V a, V b) {
    return _mm512_permutex2var_ps(a, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), b);
  }
  // a0 b0 a1 b1 ... : the first and second L of the 2L interleaved values.
  static V zip_lo(V a, V b) {
    return _mm512_permutex2var_ps(a, _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b);
  }
  static V zip_hi(V a, V b) {
    return _mm512_permutex2var_ps(a, _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31),
                                  b);
  }
  // Lanes of k where tap value a replaces the best b so far: a > b, or a is NaN (torch's rule).
  static M takes(M k, V a, V b) {
    return _mm512_mask_cmp_ps_mask(k, a, b, _CMP_GT_OQ) | _mm512_mask_cmp_ps_mask(k, a, a, _CMP_UNORD_Q);
  }
  static V blend(M k, V a, V b) { return _mm512_mask_mov_ps(a, k, b); }
  static V zero_unless(M k, V a) { return _mm512_maskz_mov_ps(k, a); }
  static I iset1(int32_t a) { return _mm512_set1_epi32(a); }
  static I iota(int32_t step) {
    return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), iset1(step));
  }
  static I iadd(I a, I b) { return _mm512_add_epi32(a, b); }
  static I iblend(M k, I a, I b) { return _mm512_mask_mov_epi32(a, k, b); }
  static M ieq(M k, I a, I b) { return _mm512_mask_cmpeq_epi32_mask(k, a, b); }
  static void store_index(int64_t* p, M k, I i) {
    _mm512_mask_storeu_epi64(p, static_cast<__mmask8>(k), _mm512_cvtepi32_epi64(_mm512_castsi512_si256(i)));
    _mm512_mask_storeu_epi64(p + 8, static_cast<__mmask8>(k >> 8),
                             _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(i, 1)));
  }
  // L int64 indices narrowed with signed saturation (a value outside int32 cannot alias a real one).
  static I load_index(M k, const int64_t* p) {
    const __m256i lo = _mm512_cvtsepi64_epi32(_mm512_maskz_loadu_epi64(static_cast<__mmask8>(k), p));
    const __m256i hi = _mm512_cvtsepi64_epi32(_mm512_maskz_loadu_epi64(static_cast<__mmask8>(k >> 8), p + 8));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
  }
  static int count(M k) { return __builtin_popcount(static_cast<unsigned>(k)); }
  // Two output rows in one vector (lanes [0, L/2) and [L/2, L)): rows of at most L/2 outputs.
  static constexpr bool kPairs = true;
  static void store_halves(T* lo, T* hi, unsigned half, V v) {
    _mm256_mask_storeu_ps(lo, static_cast<__mmask8>(half), _mm512_castps512_ps256(v));
    _mm256_mask_storeu_ps(hi, static_cast<__mmask8>(half), _mm512_extractf32x8_ps(v, 1));
  }
  static void store_index_halves(int64_t* lo, int64_t* hi, unsigned half, I i) {
    _mm512_mask_storeu_epi64(lo, static_cast<__mmask8>(half), _mm512_cvtepi32_epi64(_mm512_castsi512_si256(i)));
    _mm512_mask_storeu_epi64(hi, static_cast<__mmask8>(half), _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(i, 1)));
  }
  static I halves(int32_t lo, int32_t hi) { return _mm512_mask_set1_epi32(iset1(lo), 0xFF00, hi); }
};

struct Avx512F64 {
  using T = double;
  using V = __m512d;
  using I = __m256i;
  using M = __mmask8;
  static constexpr int L = 8;
  static constexpr bool kPairs = false;  // (not written for double)
  static V set1(T a) { return _mm512_set1_pd(a); }
  static V load(const T* p) { return _mm512_loadu_pd(p); }
  static V loadz(M k, const T* p) { return _mm512_maskz_loadu_pd(k, p); }
  static void store(T* p, M k, V v) { _mm512_mask_storeu_pd(p, k, v); }
  static V even(V a, V b) { return _mm512_permutex2var_pd(a, _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), b); }
  static V zip_lo(V a, V b) { return _mm512_permutex2var_pd(a, _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), b); }
  static V zip_hi(V a, V b) { return _mm512_permutex2var_pd(a, _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15), b); }
  static M takes(M k, V a, V b) {
    return _mm512_mask_cmp_pd_mask(k, a, b, _CMP_GT_OQ) | _mm512_mask_cmp_pd_mask(k, a, a, _CMP_UNORD_Q);
  }
  static V blend(M k, V a, V b) { return _mm512_mask_mov_pd(a, k, b); }
  static V zero_unless(M k, V a) { return _mm512_maskz_mov_pd(k, a); }
  static I iset1(int32_t a) { return _mm256_set1_epi32(a); }
  static I iota(int32_t step) { return _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), iset1(step)); }
  static I iadd(I a, I b) { return _mm256_add_epi32(a, b); }
  static I iblend(M k, I a, I b) { return _mm256_mask_mov_epi32(a, k, b); }
  static M ieq(M k, I a, I b) { return _mm256_mask_cmpeq_epi32_mask(k, a, b); }
  static void store_index(int64_t* p, M k, I i) { _mm512_mask_storeu_epi64(p, k, _mm512_cvtepi32_epi64(i)); }
  static I load_index(M k, const int64_t* p) { return _mm512_cvtsepi64_epi32(_mm512_maskz_loadu_epi64(k, p)); }
  static int count(M k) { return __builtin_popcount(static_cast<unsigned>(k)); }
};

// One output row of the SIMD forward: element offset of its window's first row (h0 * W, may be
// negative) in the input tensor and in its plane, and where its outputs go.
template <typename T>
struct PoolRowJob {
  int64_t base;     // c * H * W + h0 * W
  int64_t h0w;      // h0 * W
  const T* xc;      // input plane
  T* y;             // output row
  int64_t* idx;     // index row
  int64_t oh;
};

// Forward of U output rows (whose windows cover the same kernel rows [kh_lo, kh_hi)), chunk ch of L
// output columns, window column stride S (1 or 2). The U rows are independent chains, which hides
// the latency of each tap's compare-and-blend. Per lane: best starts at -inf and arg at a sentinel;
// a tap is taken where it is valid and v > best or v is NaN (so the last NaN is kept): the rule
// of max_pool2d_one with a first tap of -inf never taken. arg holds the tap's offset in the window
// (tap_offset); the index is completed at the store. Lanes still at the sentinel (every tap -inf)
// are redone by max_pool2d_one (rare).
// Loads: a tap whose L lanes reach past its row (padding, the row's last chunk, short rows) still
// loads whole vectors when the elements read lie inside the input tensor (the stray lanes are left
// out of the compare); only reads that would leave the tensor use masked loads (LoadMasked).
template <class A, int S, int U, bool LoadMasked>
void max_pool2d_rows_avx512(const Pool2dProblem& p, const PoolForwardGeom& g, const typename A::T* x,
                            const PoolRowJob<typename A::T>* jobs, int64_t kh_lo, int64_t kh_hi, int64_t ch) {
  using T = typename A::T;
  using V = typename A::V;
  using I = typename A::I;
  using M = typename A::M;
  constexpr int L = A::L;
  const int64_t W = p.W, KW = p.kernel_w;
  const PoolTapCols* taps = g.taps.data() + ch * KW;
  const I none = A::iset1(std::numeric_limits<int32_t>::min());
  V best[U];
  I arg[U];
  for (int u = 0; u < U; ++u) {
    best[u] = A::set1(-std::numeric_limits<T>::infinity());
    arg[u] = none;
  }
  for (int64_t kh = kh_lo; kh < kh_hi; ++kh) {
    const int64_t dh = kh * p.dilation_h * W;
    const T* xr[U];
    for (int u = 0; u < U; ++u) xr[u] = x + (jobs[u].base + dh);
    const int32_t* tap_offset = g.tap_offset.data() + kh * KW;
    for (int64_t kw = 0; kw < KW; ++kw) {
      const PoolTapCols& t = taps[kw];
      const M lanes = static_cast<M>(t.lanes);
      const I tap = A::iset1(tap_offset[kw]);
      for (int u = 0; u < U; ++u) {
        const T* q = xr[u] + t.off;
        V v;
        if constexpr (LoadMasked)
          v = S == 2 ? A::even(A::loadz(static_cast<M>(t.m0), q), A::loadz(static_cast<M>(t.m1), q + L))
                     : A::loadz(static_cast<M>(t.m0), q);
        else
          v = S == 2 ? A::even(A::load(q), A::load(q + L)) : A::load(q);
        const M take = A::takes(lanes, v, best[u]);
        best[u] = A::blend(take, best[u], v);
        arg[u] = A::iblend(take, arg[u], tap);
      }
    }
  }
  const int64_t ow0 = ch * L;
  const M st = static_cast<M>(g.store[ch]);
  const I lane_col = A::iadd(A::iota(S), A::iset1(static_cast<int32_t>(ow0 * S - p.pad_w)));
  for (int u = 0; u < U; ++u) {
    T* yr = jobs[u].y + ow0;
    int64_t* ir = jobs[u].idx + ow0;
    A::store(yr, st, best[u]);
    A::store_index(ir, st, A::iadd(arg[u], A::iadd(lane_col, A::iset1(static_cast<int32_t>(jobs[u].h0w)))));
    unsigned untaken = A::ieq(st, arg[u], none);
    while (untaken) {
      const int j = __builtin_ctz(untaken);
      untaken &= untaken - 1;
      max_pool2d_one(p, jobs[u].xc, jobs[u].oh, ow0 + j, yr + j, ir + j);
    }
  }
}

// Forward of 2U output rows of at most L/2 outputs, window column stride 2, every kernel row inside
// the input and every load inside the tensor: rows jobs[2u] and jobs[2u + 1] share one vector (lanes
// [0, L/2) and [L/2, L)), so short rows fill the lanes. The two loads of each tap come one from each
// row; the even-lane permute puts each row's L/2 taps in its half. Otherwise as
// max_pool2d_rows_avx512.
template <class A, int U>
void max_pool2d_row_pairs_avx512(const Pool2dProblem& p, const PoolForwardGeom& g, const typename A::T* x,
                                 const PoolRowJob<typename A::T>* jobs) {
  using T = typename A::T;
  using V = typename A::V;
  using I = typename A::I;
  using M = typename A::M;
  constexpr int L = A::L, H2 = L / 2;
  const int64_t W = p.W, KW = p.kernel_w;
  const PoolTapCols* taps = g.taps.data();  // one chunk: Q <= L / 2
  const I none = A::iset1(std::numeric_limits<int32_t>::min());
  V best[U];
  I arg[U];
  for (int u = 0; u < U; ++u) {
    best[u] = A::set1(-std::numeric_limits<T>::infinity());
    arg[u] = none;
  }
  for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
    const int64_t dh = kh * p.dilation_h * W;
    const T* xa[U];
    const T* xb[U];
    for (int u = 0; u < U; ++u) {
      xa[u] = x + (jobs[2 * u].base + dh);
      xb[u] = x + (jobs[2 * u + 1].base + dh);
    }
    const int32_t* tap_offset = g.tap_offset.data() + kh * KW;
    for (int64_t kw = 0; kw < KW; ++kw) {
      const PoolTapCols& t = taps[kw];
      const M lanes = static_cast<M>(t.lanes | t.lanes << H2);
      const I tap = A::iset1(tap_offset[kw]);
      for (int u = 0; u < U; ++u) {
        const V v = A::even(A::load(xa[u] + t.off), A::load(xb[u] + t.off));
        const M take = A::takes(lanes, v, best[u]);
        best[u] = A::blend(take, best[u], v);
        arg[u] = A::iblend(take, arg[u], tap);
      }
    }
  }
  const unsigned half = g.store[0];
  const int32_t pw = static_cast<int32_t>(p.pad_w);
  const I cols = A::iadd(A::iota(2), A::halves(-pw, -pw - 2 * H2));  // lane j: 2 * (j % (L/2)) - pad_w
  for (int u = 0; u < U; ++u) {
    const PoolRowJob<T>& a = jobs[2 * u];
    const PoolRowJob<T>& b = jobs[2 * u + 1];
    A::store_halves(a.y, b.y, half, best[u]);
    const I row = A::halves(static_cast<int32_t>(a.h0w), static_cast<int32_t>(b.h0w));
    A::store_index_halves(a.idx, b.idx, half, A::iadd(arg[u], A::iadd(cols, row)));
    unsigned untaken = A::ieq(static_cast<M>(half | half << H2), arg[u], none);
    while (untaken) {
      const int j = __builtin_ctz(untaken);
      untaken &= untaken - 1;
      const PoolRowJob<T>& r = j < H2 ? a : b;
      const int ow = j % H2;
      max_pool2d_one(p, r.xc, r.oh, ow, r.y + ow, r.idx + ow);
    }
  }
}

// All chunks of U output rows (in increasing order in the tensor, which has `total` elements).
template <class A, int S, int U>
void max_pool2d_rows_avx512(const Pool2dProblem& p, const PoolForwardGeom& g, const typename A::T* x,
                            int64_t total, const PoolRowJob<typename A::T>* jobs, int64_t kh_lo, int64_t kh_hi) {
  const int64_t first = jobs[0].base + kh_lo * p.dilation_h * p.W;
  const int64_t last = jobs[U - 1].base + (kh_hi - 1) * p.dilation_h * p.W;
  for (int64_t ch = 0; ch < g.chunks; ++ch) {
    if (g.row_masked[ch] && (first + g.read_lo[ch] < 0 || last + g.read_hi[ch] > total))
      max_pool2d_rows_avx512<A, S, U, true>(p, g, x, jobs, kh_lo, kh_hi, ch);
    else
      max_pool2d_rows_avx512<A, S, U, false>(p, g, x, jobs, kh_lo, kh_hi, ch);
  }
}

// Forward of planes [c0, c1). Output rows whose windows lie inside the input rows are gathered 4 at
// a time (4 pairs of short rows), across planes when a plane has few rows; the others (top and
// bottom padding, ceil_mode's last row) go one at a time.
template <class A, int S>
void max_pool2d_planes_avx512(const Pool2dProblem& p, const PoolForwardGeom& g, const typename A::T* x,
                              typename A::T* y, int64_t* idx, int64_t c0, int64_t c1) {
  using T = typename A::T;
  constexpr int U = 4;
  const int64_t in_plane = p.H * p.W, out_plane = p.P * p.Q, total = p.planes() * in_plane;
  // Rows [full_lo, full_hi) have every kernel row inside [0, H).
  const int64_t full_lo = (p.pad_h + p.stride_h - 1) / p.stride_h;
  const int64_t last = p.H - 1 - (p.kernel_h - 1) * p.dilation_h + p.pad_h;  // h0 + pad_h of the last full row
  const int64_t full_hi = std::max(full_lo, last < 0 ? int64_t(0) : std::min(p.P, last / p.stride_h + 1));
  // Rows of at most L/2 outputs (stride 2) go in pairs, one per half vector: 2U rows per batch.
  constexpr int L = A::L;
  const bool pairs = A::kPairs && S == 2 && p.Q <= L / 2;
  const int batch_rows = pairs ? 2 * U : U;
  PoolRowJob<T> batch[2 * U], single;
  int n = 0;
  const auto rows = [&](const PoolRowJob<T>* b, int m) {
    switch (m) {
      case 4: max_pool2d_rows_avx512<A, S, 4>(p, g, x, total, b, 0, p.kernel_h); break;
      case 3: max_pool2d_rows_avx512<A, S, 3>(p, g, x, total, b, 0, p.kernel_h); break;
      case 2: max_pool2d_rows_avx512<A, S, 2>(p, g, x, total, b, 0, p.kernel_h); break;
      case 1: max_pool2d_rows_avx512<A, S, 1>(p, g, x, total, b, 0, p.kernel_h); break;
      default: break;
    }
  };
  const auto flush = [&] {
    if constexpr (A::kPairs && S == 2) {
      // The pairs' loads are whole vectors: every one must lie inside the tensor.
      if (pairs && n == 2 * U && batch[0].base + g.read_lo[0] >= 0 &&
          batch[n - 1].base + (p.kernel_h - 1) * p.dilation_h * p.W + g.read_hi[0] <= total) {
        max_pool2d_row_pairs_avx512<A, U>(p, g, x, batch);
        n = 0;
        return;
      }
    }
    for (int i = 0; i < n; i += U) rows(batch + i, std::min(U, n - i));
    n = 0;
  };
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t oh = 0; oh < p.P; ++oh) {
      // (Fields written one by one: a whole-struct copy compiled to vector moves that stalled on
      // store forwarding.)
      const bool full = oh >= full_lo && oh < full_hi;
      PoolRowJob<T>& job = full ? batch[n] : single;
      job.h0w = (oh * p.stride_h - p.pad_h) * p.W;
      job.base = c * in_plane + job.h0w;
      job.xc = x + c * in_plane;
      job.y = y + c * out_plane + oh * p.Q;
      job.idx = idx + c * out_plane + oh * p.Q;
      job.oh = oh;
      if (full) {
        if (++n == batch_rows) flush();
      } else {
        int64_t kh_lo, kh_hi;
        valid_pool_rows(p, oh, kh_lo, kh_hi);
        max_pool2d_rows_avx512<A, S, 1>(p, g, x, total, &single, kh_lo, kh_hi);
      }
    }
  }
  flush();
}

// Backward of one plane whose windows are 2 columns wide with column stride 2, no column dilation or
// padding, and do not overlap along rows (row_window: the output row of each input row, or -1). For
// each input row, L outputs at a time: the gradient goes to the even column where the index points
// there, to the odd column where it points there, 0 elsewhere; the two are interleaved into 2L
// columns of dx. Rows and columns no window covers are zeroed. Returns how many of the plane's
// indices were found inside their own window. (Going output row by output row, loading each index
// once for both input rows, measured no faster.)
template <class A>
int64_t max_pool2d_backward_plane_k2s2_avx512(const Pool2dProblem& p, const typename A::T* dy, const int64_t* idx,
                                              typename A::T* dx, const int32_t* row_window) {
  using T = typename A::T;
  using V = typename A::V;
  using I = typename A::I;
  using M = typename A::M;
  constexpr int L = A::L;
  const int64_t W = p.W, Q = p.Q;
  const I col_step = A::iota(2), one = A::iset1(1);
  const int64_t covered = std::min(W, 2 * Q);  // columns [covered, W) belong to no window
  int64_t hits = 0;
  for (int64_t ih = 0; ih < p.H; ++ih) {
    T* dxr = dx + ih * W;
    const int64_t oh = row_window[ih];
    if (oh < 0) {
      std::fill(dxr, dxr + W, T(0));
      continue;
    }
    const T* dyr = dy + oh * Q;
    const int64_t* ir = idx + oh * Q;
    for (int64_t ow0 = 0; ow0 < Q; ow0 += L) {
      const int64_t n = std::min<int64_t>(L, Q - ow0);
      const M k = static_cast<M>(n >= L ? ~0u : (1u << n) - 1u);
      const V g = A::loadz(k, dyr + ow0);
      const I i = A::load_index(k, ir + ow0);
      const I even_col = A::iadd(A::iset1(static_cast<int32_t>(ih * W + 2 * ow0)), col_step);
      const M at_even = A::ieq(k, i, even_col), at_odd = A::ieq(k, i, A::iadd(even_col, one));
      hits += A::count(static_cast<M>(at_even | at_odd));
      const V ve = A::zero_unless(at_even, g), vo = A::zero_unless(at_odd, g);
      // Columns of dx to write, >= 1 (every window starts inside the row).
      const int64_t e = std::min<int64_t>(2 * L, covered - 2 * ow0);
      const M m_lo = static_cast<M>(e >= L ? ~0u : (1u << e) - 1u);
      const M m_hi = static_cast<M>(e >= 2 * L ? ~0u : e <= L ? 0u : (1u << (e - L)) - 1u);
      A::store(dxr + 2 * ow0, m_lo, A::zip_lo(ve, vo));
      A::store(dxr + 2 * ow0 + L, m_hi, A::zip_hi(ve, vo));
    }
    std::fill(dxr + covered, dxr + W, T(0));
  }
  return hits;
}

// Output row oh of one plane x of 16-lane pixels: for each output pixel, the window's taps in torch's order, the first one taken as it is, then
// compare-and-blend as max_pool2d_one (a NaN wins, the last NaN kept).
void max_pool2d_row_ipv_avx512(const Pool2dProblem& p, int64_t oh, const float* x, float* y, int32_t* idx) {
  int64_t kh0, kh1;
  valid_pool_rows(p, oh, kh0, kh1);
  // The taps of a window whose columns all lie inside the row (load offset and plane position relative
  // to its first column), in torch's order: such windows run without a bounds check.
  constexpr int64_t kMaxTaps = 64;
  int64_t off[kMaxTaps];
  int32_t pos[kMaxTaps];
  int64_t taps = 0;
  if ((kh1 - kh0) * p.kernel_w <= kMaxTaps) {
    for (int64_t kh = kh0; kh < kh1; ++kh) {
      const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dilation_h;
      for (int64_t kw = 0; kw < p.kernel_w; ++kw, ++taps) {
        off[taps] = (ih * p.W + kw * p.dilation_w) * 16;
        pos[taps] = static_cast<int32_t>(ih * p.W + kw * p.dilation_w);
      }
    }
  }
  const int64_t last_tap = (p.kernel_w - 1) * p.dilation_w;
  for (int64_t ow = 0; ow < p.Q; ++ow) {
    const int64_t iw0 = ow * p.stride_w - p.pad_w;
    if (taps > 0 && iw0 >= 0 && iw0 + last_tap < p.W) {
      const float* base = x + iw0 * 16;
      const int32_t col = static_cast<int32_t>(iw0);
      __m512 best = _mm512_loadu_ps(base + off[0]);
      __m512i arg = _mm512_set1_epi32(pos[0] + col);
      for (int64_t t = 1; t < taps; ++t) {
        const __m512 v = _mm512_loadu_ps(base + off[t]);
        const __mmask16 take = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        best = _mm512_mask_mov_ps(best, take, v);
        arg = _mm512_mask_mov_epi32(arg, take, _mm512_set1_epi32(pos[t] + col));
      }
      _mm512_storeu_ps(y + ow * 16, best);
      _mm512_storeu_si512(idx + ow * 16, arg);
      continue;
    }
    __m512 best = _mm512_setzero_ps();
    __m512i arg = _mm512_setzero_si512();
    bool first = true;
    for (int64_t kh = kh0; kh < kh1; ++kh) {
      const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dilation_h;
      for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
        const int64_t iw = ow * p.stride_w - p.pad_w + kw * p.dilation_w;
        if (iw < 0 || iw >= p.W) continue;
        const int32_t at = static_cast<int32_t>(ih * p.W + iw);
        const __m512 v = _mm512_loadu_ps(x + at * 16);
        if (first) {
          best = v, arg = _mm512_set1_epi32(at), first = false;
          continue;
        }
        const __mmask16 take = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        best = _mm512_mask_mov_ps(best, take, v);
        arg = _mm512_mask_mov_epi32(arg, take, _mm512_set1_epi32(at));
      }
    }
    _mm512_storeu_ps(y + ow * 16, best);
    _mm512_storeu_si512(idx + ow * 16, arg);
  }
}

// One plane of the backward in the 16-lane layout: the plane (plane floats) zeroed, then, output by
// output in order, each dy lane added at the tap of its window its index names, dx being the plane's
// element (0, 0) and its rows dx_row floats apart. Returns false when a lane's index names no tap of
// its window.
bool max_pool2d_backward_plane_ipv_avx512(const Pool2dProblem& p, const float* dy, const int32_t* idx,
                                              float* plane_start, int64_t plane, float* dx, int64_t dx_row) {
  std::fill(plane_start, plane_start + plane, 0.0f);
  bool ok = true;
  for (int64_t oh = 0; oh < p.P; ++oh) {
    int64_t kh0, kh1;
    valid_pool_rows(p, oh, kh0, kh1);
    for (int64_t ow = 0; ow < p.Q; ++ow) {
      const __m512 g = _mm512_loadu_ps(dy + (oh * p.Q + ow) * 16);
      const __m512i at = _mm512_loadu_si512(idx + (oh * p.Q + ow) * 16);
      __mmask16 matched = 0;
      for (int64_t kh = kh0; kh < kh1; ++kh) {
        const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dilation_h;
        for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
          const int64_t iw = ow * p.stride_w - p.pad_w + kw * p.dilation_w;
          if (iw < 0 || iw >= p.W) continue;
          const __mmask16 m = _mm512_cmpeq_epi32_mask(at, _mm512_set1_epi32(static_cast<int32_t>(ih * p.W + iw)));
          if (m == 0) continue;
          float* d = dx + ih * dx_row + iw * 16;
          _mm512_storeu_ps(d, _mm512_mask_add_ps(_mm512_loadu_ps(d), m, _mm512_loadu_ps(d), g));
          matched |= m;
        }
      }
      ok &= matched == 0xFFFF;
    }
  }
  return ok;
}

}  // namespace
#pragma GCC pop_options
#pragma GCC diagnostic pop

template <typename T>
bool max_pool2d_forward_avx512(const Pool2dProblem& p, const T* xp, T* yp, int64_t* ip) {
  if (p.stride_w > 2 || p.H * p.W >= kSimdPlaneLimit) return false;
  using A = std::conditional_t<std::is_same_v<T, float>, Avx512F32, Avx512F64>;
  const PoolForwardGeom g = make_forward_geom(p, A::L);
  if (!g.ok) return false;
  parallel_for(0, p.planes(), 1, [&](int64_t begin, int64_t end) {
    if (p.stride_w == 2)
      max_pool2d_planes_avx512<A, 2>(p, g, xp, yp, ip, begin, end);
    else
      max_pool2d_planes_avx512<A, 1>(p, g, xp, yp, ip, begin, end);
  });
  return true;
}

template <typename T>
bool max_pool2d_write_once_fits(const Pool2dProblem& p) {
  using A = std::conditional_t<std::is_same_v<T, float>, Avx512F32, Avx512F64>;
  return !windows_overlap(p.kernel_h, p.stride_h, p.dilation_h) && p.kernel_w == 2 && p.stride_w == 2 &&
         p.dilation_w == 1 && p.pad_w == 0 && p.Q > A::L / 2 && p.H * p.W < kSimdPlaneLimit;
}

template <typename T>
bool max_pool2d_backward_plane_write_once(const Pool2dProblem& p, const T* dy, const int64_t* idx, T* dx,
                                          const int32_t* row_window) {
  using A = std::conditional_t<std::is_same_v<T, float>, Avx512F32, Avx512F64>;
  return max_pool2d_backward_plane_k2s2_avx512<A>(p, dy, idx, dx, row_window) == p.P * p.Q;
}

bool max_pool2d_ipv_avx512(const Pool2dProblem& p, int64_t planes, const float* x, float* y, int32_t* indices) {
  if (p.H * p.W >= kSimdPlaneLimit) return false;
  const int64_t in_plane = p.H * p.W * 16, out_plane = p.P * p.Q * 16;
  parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c)
      for (int64_t oh = 0; oh < p.P; ++oh)
        max_pool2d_row_ipv_avx512(p, oh, x + c * in_plane, y + c * out_plane + oh * p.Q * 16,
                                  indices + c * out_plane + oh * p.Q * 16);
  });
  return true;
}

bool max_pool2d_backward_ipv_avx512(const Pool2dProblem& p, int64_t planes, const float* dy, const int32_t* indices,
                                    float* dx, int64_t dx_plane, int64_t dx_row, int64_t dx_first) {
  if (p.H * p.W >= kSimdPlaneLimit) return false;
  std::atomic<bool> ok{true};
  const int64_t out_plane = p.P * p.Q * 16;
  parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c)
      if (!max_pool2d_backward_plane_ipv_avx512(p, dy + c * out_plane, indices + c * out_plane, dx + c * dx_plane,
                                                dx_plane, dx + c * dx_plane + dx_first, dx_row))
        ok = false;
  });
  return ok.load();
}

#else  // no AVX-512 compiler support: nothing applies

template <typename T>
bool max_pool2d_forward_avx512(const Pool2dProblem&, const T*, T*, int64_t*) {
  return false;
}
template <typename T>
bool max_pool2d_write_once_fits(const Pool2dProblem&) {
  return false;
}
template <typename T>
bool max_pool2d_backward_plane_write_once(const Pool2dProblem&, const T*, const int64_t*, T*, const int32_t*) {
  return false;
}
bool max_pool2d_ipv_avx512(const Pool2dProblem&, int64_t, const float*, float*, int32_t*) { return false; }
bool max_pool2d_backward_ipv_avx512(const Pool2dProblem&, int64_t, const float*, const int32_t*, float*, int64_t,
                                    int64_t, int64_t) {
  return false;
}

#endif  // CNNFAST_POOL_AVX512

#define CNNFAST_INSTANTIATE(T)                                                                             \
  template bool max_pool2d_forward_avx512<T>(const Pool2dProblem&, const T*, T*, int64_t*);              \
  template bool max_pool2d_write_once_fits<T>(const Pool2dProblem&);                                      \
  template bool max_pool2d_backward_plane_write_once<T>(const Pool2dProblem&, const T*, const int64_t*, T*, \
                                                        const int32_t*);
CNNFAST_INSTANTIATE(float)
CNNFAST_INSTANTIATE(double)
#undef CNNFAST_INSTANTIATE

}  // namespace cnnfast::cpu
