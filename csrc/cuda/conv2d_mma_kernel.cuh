// conv2d forward as an implicit GEMM on tensor cores with mma.sync, ldmatrix and a multi-stage
// cp.async pipeline (the primitives of common/mma.cuh and common/cp_async.cuh): float16 and
// bfloat16 storage, and float storage as TF32 (operands rounded to nearest in registers). float
// accumulation, the bias + ReLU epilogue.
//
// GEMM view: M = N*P*Q output pixels, N = K filters, reduction = R*S*C, NHWC input and KRSC
// weight (an NCHW call is transposed once into a workspace: common/transpose.cuh; its output is
// written in NCHW by the epilogue). The reduction runs filter position outside, channels inside:
// a slice is RowBytes (64 or 128) of the flat reduction index k = (r * S + s) * C + c per operand
// row, so every row of a slice is 4 or 8 16-byte chunks; with C % (16 / sizeof(T)) == 0 each chunk
// is contiguous channels of one tap (r, s).
//   Loads: each thread copies the same chunk column of BM * kChunks / threads rows of A and
//   BN * kChunks / threads rows of B per slice with cp.async (16 bytes, zero-filled where the tap
//   falls in the padding, past R*S*C or past M/K). A row's address is a base (image, top-left input
//   pixel) plus the tap's offset; its validity is a bit of two masks (input rows and columns in
//   bounds for each r and s). Bases and masks are computed once per tile row, by one thread each,
//   into a table in shared memory past the pipeline. The iterator advances (c, s, r) with a fixed
//   count of predicated adds: no division in the main loop.
//   Vector path: C % 8 == 0 (halves) or C % 4 == 0 (float), aligned tensors.
//   Masked path (any C): each element of a chunk is gathered with its own predicate (the reduction
//   index split by FastDivmod) and the chunk stored to shared memory as one 16-byte store.
//   Shared memory: Stages x (BM + BN) rows of RowBytes, chunks XOR-swizzled (RowSwizzle) so that
//   the 8 rows of an ldmatrix fall on 8 different groups of banks.
//   Pipeline: Stages - 1 slices in flight; per slice one commit, one wait<Stages - 2>, one barrier.
//   Warps: WarpsM x WarpsN, each a (BM/WarpsM) x (BN/WarpsN) tile of m16n8 accumulators; per
//   slice two k-steps (k16 for the half types, k8 for TF32), each with ldmatrix.x4 for A (16 rows)
//   and for B (two n8 tiles), without .trans (both operands have the reduction contiguous).
//   Epilogue: one m16 row of fragments at a time through a float tile in shared memory
//   (conflict-free 8-byte stores, rows padded by 8 floats), then bias, ReLU and one 16-byte store per
//   thread along the channels (NHWC), or per-element stores along the pixels (NCHW).
// Tile configurations (MmaTile): 128x128 (8 warps, 3 stages, 64-byte slices), 128x64 (4 warps,
// 4 stages, 64 bytes), 64x64 (4 warps, 3 stages, 128 bytes) and 128x32 for narrow layers (K <= 32;
// 4 warps, 3 stages, 128 bytes); the host picks one from the waves each makes on the device's SM
// count (mma_forward_choice). The masked path runs 64x64. Groups, depthwise and problems past 32-bit pixel counts
// stay on conv2d_wmma_kernel.cuh / conv2d_depthwise_kernel.cuh.
#pragma once

#include <type_traits>

#include "common/cp_async.cuh"
#include "common/fast_divmod.cuh"
#include "common/kernel_utils.cuh"
#include "common/swizzle.cuh"
#include "common/transpose.cuh"
#include "problem.h"

namespace cnnfast {
namespace cuda {

template <class T> struct MmaInputOf;
template <> struct MmaInputOf<__half> { static constexpr sm80::MmaType kType = sm80::MmaType::f16; };
template <> struct MmaInputOf<__nv_bfloat16> { static constexpr sm80::MmaType kType = sm80::MmaType::bf16; };
template <> struct MmaInputOf<float> { static constexpr sm80::MmaType kType = sm80::MmaType::tf32; };

// RowBytes: one slice of one operand row (64 or 128 bytes: 2 or 4 k-steps per slice).
template <int BM_, int BN_, int WarpsM_, int WarpsN_, int Stages_, int RowBytes_>
struct MmaTile {
  static constexpr int BM = BM_, BN = BN_, kWarpsM = WarpsM_, kWarpsN = WarpsN_, kStages = Stages_;
  static constexpr int kRowBytes = RowBytes_, kChunks = kRowBytes / 16, kKSteps = kRowBytes / 32;
  using Swz = RowSwizzle<kRowBytes>;
  static constexpr int kThreads = 32 * kWarpsM * kWarpsN;
  static constexpr int WTM = BM / kWarpsM, WTN = BN / kWarpsN;  // a warp's tile
  static constexpr int MI = WTM / 16, NI = WTN / 8;             // its m16 and n8 fragments
  static constexpr int kStageBytes = (BM + BN) * kRowBytes;
  static constexpr int kOutLd = BN + 8;  // floats per row of the epilogue tile
  static constexpr int kOutRows = kWarpsM * 16;
  static constexpr int kPipeBytes =
      kStages * kStageBytes > kOutRows * kOutLd * 4 ? kStages * kStageBytes : kOutRows * kOutLd * 4;
  static constexpr int kRowTableOffset = kPipeBytes;  // BM row addresses of 16 bytes
  static constexpr int kSharedBytes = kPipeBytes + BM * 16;
  static constexpr int kRowStep = kThreads / kChunks;  // rows between one thread's loads
  static constexpr int kARows = BM / kRowStep, kBRows = BN / kRowStep;
  static_assert(WTM % 16 == 0 && WTN % 16 == 0, "warp tiles of whole m16 rows and n8 pairs");
  static_assert(kARows * kRowStep == BM && kBRows * kRowStep == BN && kBRows >= 1, "whole rows per thread");
  static_assert(kStages >= 3, "a pipeline of at least 3 stages");
  static_assert(kRowBytes == 64 || kRowBytes == 128, "slices of 64 or 128 bytes per row");
  static_assert(kSharedBytes <= 160 * 1024, "dynamic shared memory within an SM's");
};

// The configurations, by id (mma_forward_choice returns one).
// Every configuration issues 32 mma per warp per slice: 64x32 warp tiles with 64-byte slices, 32x32
// ones with 128-byte slices.
using MmaTile128x128 = MmaTile<128, 128, 2, 4, 3, 64>;
using MmaTile128x64 = MmaTile<128, 64, 2, 2, 4, 64>;
using MmaTile64x64 = MmaTile<64, 64, 2, 2, 3, 128>;
using MmaTile128x32 = MmaTile<128, 32, 4, 1, 3, 128>;
enum MmaTileId : int { kMma128x128 = 0, kMma128x64 = 1, kMma64x64 = 2, kMma128x32 = 3, kMmaTiles = 4 };
struct MmaTileShape { int bm, bn, threads, shared_bytes; };
constexpr MmaTileShape kMmaTileShapes[kMmaTiles] = {
    {128, 128, MmaTile128x128::kThreads, MmaTile128x128::kSharedBytes},
    {128, 64, MmaTile128x64::kThreads, MmaTile128x64::kSharedBytes},
    {64, 64, MmaTile64x64::kThreads, MmaTile64x64::kSharedBytes},
    {128, 32, MmaTile128x32::kThreads, MmaTile128x32::kSharedBytes},
};

// Everything a forward launch needs (by value). Sizes in 32 bits (mma_forward_supported checks).
struct ConvMmaParams {
  int N = 0, H = 0, W = 0, C = 0, K = 0, R = 0, S = 0, P = 0, Q = 0;
  int stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1;
  int M = 0;       // N * P * Q
  int RSC = 0;     // reduction length
  int slices = 0;  // reduction slices: ceil(RSC / elements per slice)
  FastDivmod div_PQ, div_Q, div_C, div_S;
  const void* x = nullptr;     // NHWC input
  const void* w = nullptr;     // KRSC weight
  const void* bias = nullptr;  // or null
  void* y = nullptr;
  bool relu = false;
  bool y_nhwc = true;
  bool vec_out = false;  // NHWC output and bias 16 bytes at a time (K a multiple of the vector, aligned)
  // Split-K: blockIdx.z takes slices [z * slices_per_split, ...) and writes float partial sums to
  // partial[z][M][K] (no bias or ReLU); conv2d_mma_splitk_kernel adds the splits in order.
  int splits = 1, slices_per_split = 0;
  float* partial = nullptr;
};

// Bits t of [0, taps) (taps <= 32) for which 0 <= start + t * dilation < extent: the taps of one
// filter dimension that fall inside the input (once per tile row, so a short loop).
CNNFAST_DEVICE uint32_t tap_mask(int start, int taps, int extent, int dilation) {
  uint32_t mask = 0u;
#pragma unroll 1
  for (int t = 0, i = start; t < taps; ++t, i += dilation) mask |= static_cast<uint32_t>(i >= 0 && i < extent) << t;
  return mask;
}

// One A row's addressing (see the kernel).
struct alignas(16) RowAddress {
  int64_t base;
  uint32_t mask_h, mask_w;
};

template <class T, class Tile, bool kVec>
__global__ void __launch_bounds__(Tile::kThreads) conv2d_mma_fprop_kernel(ConvMmaParams P) {
  constexpr int BM = Tile::BM, BN = Tile::BN, kStages = Tile::kStages;
  constexpr int kARows = Tile::kARows, kBRows = Tile::kBRows, kRowStep = Tile::kRowStep;
  constexpr int MI = Tile::MI, NI = Tile::NI;
  constexpr int E = 16 / static_cast<int>(sizeof(T));       // elements per chunk
  constexpr int kRowBytes = Tile::kRowBytes, kChunks = Tile::kChunks;
  using Swz = typename Tile::Swz;
  constexpr int kSlice = kRowBytes / static_cast<int>(sizeof(T));  // elements per slice
  constexpr sm80::MmaType kType = MmaInputOf<T>::kType;
  CNNFAST_DYNAMIC_SHARED(unsigned char, smem);

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = warp / Tile::kWarpsN, wn = warp % Tile::kWarpsN;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN, split = blockIdx.z;
  const int first_slice = split * P.slices_per_split;
  const int slice_count = min(P.slices_per_split, P.slices - first_slice);
  const int cc = tid % kChunks, row0 = tid / kChunks;
  const T* x = static_cast<const T*>(P.x);
  const T* w = static_cast<const T*>(P.w);

  // The A rows' addressing, computed once per row by one thread into a table past the pipeline's
  // memory (one copy of the code, whatever the rows per thread): the offset of the row's top-left
  // input pixel and the masks of its taps inside the input.
  RowAddress* table = reinterpret_cast<RowAddress*>(smem + Tile::kRowTableOffset);
  for (int row = tid; row < BM; row += Tile::kThreads) {
    const int m = m0 + row;
    RowAddress ra{0, 0u, 0u};
    if (m < P.M) {
      int img, pq, oh, ow;
      P.div_PQ.divmod(m, img, pq);
      P.div_Q.divmod(pq, oh, ow);
      const int ih0 = oh * P.stride_h - P.pad_h, iw0 = ow * P.stride_w - P.pad_w;
      ra.base = ((static_cast<int64_t>(img) * P.H + ih0) * P.W + iw0) * P.C;
      ra.mask_h = tap_mask(ih0, P.R, P.H, P.dil_h);
      ra.mask_w = tap_mask(iw0, P.S, P.W, P.dil_w);
    }
    table[row] = ra;
  }
  __syncthreads();
  int64_t a_base[kARows];
  uint32_t a_mask_h[kARows], a_mask_w[kARows];
#pragma unroll
  for (int i = 0; i < kARows; ++i) {
    const RowAddress ra = table[row0 + i * kRowStep];
    a_base[i] = ra.base;
    a_mask_h[i] = ra.mask_h;
    a_mask_w[i] = ra.mask_w;
  }
  // This thread's B rows (filters): offset of the filter, or -1 past K.
  int64_t b_base[kBRows];
#pragma unroll
  for (int i = 0; i < kBRows; ++i) {
    const int n = n0 + row0 + i * kRowStep;
    b_base[i] = n < P.K ? static_cast<int64_t>(n) * P.RSC : -1;
  }

  // Reduction iterator of this thread's chunk (vector path): its flat index k = (r * S + s) * C + c
  // (the KRSC weight's own offset), its tap (r, s) and channel c, and the tap's input offset.
  int it_k = first_slice * kSlice + cc * E, it_r = 0, it_s = 0, it_c = 0;
  int64_t it_tap = 0;  // (r * dil_h * W + s * dil_w) * C
  if constexpr (kVec) {
    int rs;
    P.div_C.divmod(it_k, rs, it_c);
    P.div_S.divmod(rs, it_r, it_s);
    it_tap = (static_cast<int64_t>(it_r) * P.dil_h * P.W + static_cast<int64_t>(it_s) * P.dil_w) * P.C;
  }
  int loaded = first_slice;  // the next slice to issue

  auto load_slice = [&](int stage) {
    unsigned char* As = smem + stage * Tile::kStageBytes;
    unsigned char* Bs = As + BM * kRowBytes;
    if constexpr (kVec) {
      // C % E == 0: the chunk's E channels belong to one tap.
      const bool k_ok = it_k < P.RSC;
#pragma unroll
      for (int i = 0; i < kARows; ++i) {
        const int row = row0 + i * kRowStep;
        const bool ok = k_ok && ((a_mask_h[i] >> it_r) & (a_mask_w[i] >> it_s) & 1u);
        const T* src = ok ? x + (a_base[i] + it_tap + it_c) : x;
        sm80::cp_async_zfill<16>(As + Swz::apply(row * kRowBytes + cc * 16), src, ok);
      }
#pragma unroll
      for (int i = 0; i < kBRows; ++i) {
        const int row = row0 + i * kRowStep;
        const bool ok = k_ok && b_base[i] >= 0;
        const T* src = ok ? w + (b_base[i] + it_k) : w;
        sm80::cp_async_zfill<16>(Bs + Swz::apply(row * kRowBytes + cc * 16), src, ok);
      }
      // The next slice: k + kSlice, carried through c, s and r with adds. C >= E, so there are at
      // most kSlice / E carries: a fixed count of predicated steps, no divergent loop before the
      // warp-synchronous ldmatrix and mma.
      it_k += kSlice;
      it_c += kSlice;
#pragma unroll
      for (int t = 0; t < kSlice / E; ++t) {
        const bool carry = it_c >= P.C;
        it_c -= carry ? P.C : 0;
        it_s += carry ? 1 : 0;
        const bool wrap = it_s == P.S;
        it_s = wrap ? 0 : it_s;
        it_r += wrap ? 1 : 0;
      }
      it_tap = (static_cast<int64_t>(it_r) * P.dil_h * P.W + static_cast<int64_t>(it_s) * P.dil_w) * P.C;
    } else {
      // Masked path: the slice is kSlice consecutive reduction indices k = (r * S + s) * C + c; this
      // thread's E of them split once (FastDivmod) and shared by its rows.
      const int k0 = loaded * kSlice + cc * E;
      int tap_r[E], tap_s[E];
      int64_t tap_off[E];
      bool tap_ok[E];
#pragma unroll
      for (int e = 0; e < E; ++e) {
        const int k = k0 + e;
        int rs, c;
        P.div_C.divmod(k, rs, c);
        P.div_S.divmod(rs, tap_r[e], tap_s[e]);
        tap_ok[e] = k < P.RSC;
        tap_off[e] = (static_cast<int64_t>(tap_r[e]) * P.dil_h * P.W + static_cast<int64_t>(tap_s[e]) * P.dil_w) * P.C +
                     c;
      }
#pragma unroll
      for (int i = 0; i < kARows; ++i) {
        const int row = row0 + i * kRowStep;
        Vec16<T> v;
#pragma unroll
        for (int e = 0; e < E; ++e) {
          const bool ok = tap_ok[e] && ((a_mask_h[i] >> tap_r[e]) & (a_mask_w[i] >> tap_s[e]) & 1u);
          v.v[e] = ok ? x[a_base[i] + tap_off[e]] : from_float<T>(0.0f);
        }
        store16(reinterpret_cast<T*>(As + Swz::apply(row * kRowBytes + cc * 16)), v);
      }
#pragma unroll
      for (int i = 0; i < kBRows; ++i) {
        const int row = row0 + i * kRowStep;
        Vec16<T> v;
#pragma unroll
        for (int e = 0; e < E; ++e) {
          const int k = k0 + e;
          v.v[e] = b_base[i] >= 0 && k < P.RSC ? w[b_base[i] + k] : from_float<T>(0.0f);
        }
        store16(reinterpret_cast<T*>(Bs + Swz::apply(row * kRowBytes + cc * 16)), v);
      }
    }
    ++loaded;
  };

  float acc[MI][NI][4];
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

  // ldmatrix row addresses within a stage (byte offsets before the swizzle), for k-step 0.
  // A, matrix j = lane / 8: rows +8 for odd j, the second 16-byte chunk for j >= 2.
  const int a_row = wm * Tile::WTM + ((lane / 8) % 2) * 8 + lane % 8, a_chunk = lane / 16;
  // B, matrix j: the second chunk for odd j, the second n8 tile for j >= 2.
  const int b_row = wn * Tile::WTN + (lane / 16) * 8 + lane % 8, b_chunk = (lane / 8) % 2;

  // The pipeline: Stages - 1 slices in flight, one group per slice (empty past the end). The first
  // Stages - 1 steps only load (one copy of the loader's code for the prologue and the loop).
  for (int it = 1 - kStages; it < slice_count; ++it) {
    if (it + kStages - 1 < slice_count) load_slice((it + kStages - 1) % kStages);
    sm80::cp_async_commit();
    if (it < 0) {
      sm80::cp_async_wait<kStages - 2>();
      __syncthreads();
      continue;
    }
    const int stage = it % kStages;
    const unsigned char* As = smem + stage * Tile::kStageBytes;
    const unsigned char* Bs = As + BM * kRowBytes;
#pragma unroll
    for (int ks = 0; ks < Tile::kKSteps; ++ks) {
      uint32_t a[MI][4], b[NI][2];
#pragma unroll
      for (int i = 0; i < MI; ++i)
        sm80::ldmatrix<4>(a[i], As + Swz::apply((a_row + i * 16) * kRowBytes + (2 * ks + a_chunk) * 16));
#pragma unroll
      for (int jp = 0; jp < NI / 2; ++jp) {
        uint32_t r[4];
        sm80::ldmatrix<4>(r, Bs + Swz::apply((b_row + jp * 16) * kRowBytes + (2 * ks + b_chunk) * 16));
        b[2 * jp][0] = r[0];
        b[2 * jp][1] = r[1];
        b[2 * jp + 1][0] = r[2];
        b[2 * jp + 1][1] = r[3];
      }
      if constexpr (kType == sm80::MmaType::tf32) {  // round to nearest, as cuDNN's TF32 does
#pragma unroll
        for (int i = 0; i < MI; ++i)
#pragma unroll
          for (int e = 0; e < 4; ++e) a[i][e] = sm80::to_tf32(__uint_as_float(a[i][e]));
#pragma unroll
        for (int j = 0; j < NI; ++j)
#pragma unroll
          for (int e = 0; e < 2; ++e) b[j][e] = sm80::to_tf32(__uint_as_float(b[j][e]));
      }
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j) sm80::mma<kType>(acc[i][j], a[i], b[j], acc[i][j]);
    }
    sm80::cp_async_wait<kStages - 2>();
    __syncthreads();
  }
  sm80::cp_async_wait<0>();  // only empty groups remain; the pipeline's memory is free after the barrier
  __syncthreads();

  // Epilogue, one m16 fragment row of every warp per pass: accumulators -> float tile in shared
  // memory -> bias, ReLU -> output. The passes and the read-out are loops (one copy of the code).
  float* Cs = reinterpret_cast<float*>(smem);
  constexpr int LD = Tile::kOutLd, kRows = Tile::kOutRows;
  const T* bias = static_cast<const T*>(P.bias);
  T* y = static_cast<T*>(P.y);
#pragma unroll 1
  for (int pass = 0; pass < MI; ++pass) {
    const int lr = wm * 16 + lane / 4;
#pragma unroll
    for (int i = 0; i < MI; ++i) {
      if (i != pass) continue;
#pragma unroll
      for (int j = 0; j < NI; ++j) {
        const int col = wn * Tile::WTN + j * 8 + 2 * (lane % 4);
        sm80::sts(reinterpret_cast<float2*>(Cs + lr * LD + col), make_float2(acc[i][j][0], acc[i][j][1]));
        sm80::sts(reinterpret_cast<float2*>(Cs + (lr + 8) * LD + col), make_float2(acc[i][j][2], acc[i][j][3]));
      }
    }
    __syncthreads();
    // Row r of the pass is tile row (r / 16) * WTM + pass * 16 + r % 16.
    if (P.y_nhwc || P.partial) {
      constexpr int V = 16 / static_cast<int>(sizeof(T));  // outputs per 16-byte store
      constexpr int kVecsPerRow = BN / V, kIters = kRows * kVecsPerRow / Tile::kThreads;
      static_assert(kIters * Tile::kThreads == kRows * kVecsPerRow, "whole epilogue passes");
#pragma unroll 1
      for (int t = 0; t < kIters; ++t) {
        const int idx = t * Tile::kThreads + tid;
        const int r = idx / kVecsPerRow, vc = idx % kVecsPerRow;
        float v[V];
        const float* src = Cs + r * LD + vc * V;
        if constexpr (V == 4) {
          const float4 q = sm80::lds(reinterpret_cast<const float4*>(src));
          v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
        } else {
          // Two 16-byte reads per lane, in swapped order on lanes 4..7 of each 8, so that the 8 lanes
          // of a phase read 8 different groups of banks.
          const int flip = (lane >> 2) & 1;
          const float4 q0 = sm80::lds(reinterpret_cast<const float4*>(src + 4 * flip));
          const float4 q1 = sm80::lds(reinterpret_cast<const float4*>(src + 4 * (1 - flip)));
          const float4 lo = flip ? q1 : q0, hi = flip ? q0 : q1;
          v[0] = lo.x; v[1] = lo.y; v[2] = lo.z; v[3] = lo.w;
          v[4] = hi.x; v[5] = hi.y; v[6] = hi.z; v[7] = hi.w;
        }
        const int m = m0 + (r / 16) * Tile::WTM + pass * 16 + r % 16, n = n0 + vc * V;
        if (m >= P.M) continue;
        if (P.partial) {  // split-K: this split's float sums, whole
          float* part = P.partial + (static_cast<int64_t>(split) * P.M + m) * P.K + n;
#pragma unroll
          for (int e = 0; e < V; ++e)
            if (n + e < P.K) part[e] = v[e];
          continue;
        }
        T* dst = y + static_cast<int64_t>(m) * P.K + n;
        if (P.vec_out && n + V <= P.K) {
          Vec16<T> b;
          if (bias) b = load16(bias + n);
          Vec16<T> out;
#pragma unroll
          for (int e = 0; e < V; ++e) {
            float u = v[e] + (bias ? to_float(b.v[e]) : 0.0f);
            if (P.relu) u = u < 0.0f ? 0.0f : u;  // relu(NaN) stays NaN
            out.v[e] = from_float<T>(u);
          }
          store16(dst, out);
        } else {
#pragma unroll
          for (int e = 0; e < V; ++e) {
            if (n + e >= P.K) break;
            float u = v[e] + (bias ? to_float(bias[n + e]) : 0.0f);
            if (P.relu) u = u < 0.0f ? 0.0f : u;
            dst[e] = from_float<T>(u);
          }
        }
      }
    } else {
      // NCHW: consecutive threads take consecutive pixels of one channel.
      constexpr int kIters = kRows * BN / Tile::kThreads;
      static_assert(kIters * Tile::kThreads == kRows * BN, "whole epilogue passes");
      const int PQ = P.P * P.Q;
#pragma unroll 1
      for (int t = 0; t < kIters; ++t) {
        const int idx = t * Tile::kThreads + tid;
        const int r = idx % kRows, c = idx / kRows;
        const int m = m0 + (r / 16) * Tile::WTM + pass * 16 + r % 16, n = n0 + c;
        if (m >= P.M || n >= P.K) continue;
        int img, pq;
        P.div_PQ.divmod(m, img, pq);
        float u = Cs[r * LD + c] + (bias ? to_float(bias[n]) : 0.0f);
        if (P.relu) u = u < 0.0f ? 0.0f : u;
        y[(static_cast<int64_t>(img) * P.K + n) * PQ + pq] = from_float<T>(u);
      }
    }
    __syncthreads();
  }
}

// ---- host side -------------------------------------------------------------------------------

// Whether the tensor-core forward takes a problem: no groups, R and S within the 32-bit tap masks,
// pixel counts and the reduction in 32 bits.
inline bool mma_forward_supported(const Conv2dProblem& p) {
  const int64_t lim = int64_t(1) << 30;
  return p.groups == 1 && p.R <= 32 && p.S <= 32 && p.N * p.P * p.Q < lim && p.N * p.H * p.W < lim &&
         p.C * p.R * p.S < lim && p.K < lim && p.N <= 65535 && p.K <= 65535;
}

// The tile configuration for a problem on a device with sm_count SMs, and what it makes.
struct MmaChoice {
  int tile = kMma128x128;
  int64_t ctas = 0;
  double waves = 0;       // ctas / (sm_count * resident CTAs per SM)
  double efficiency = 0;  // useful share of the tile area times the share of the last wave used
};

// CTAs of a configuration resident per SM by threads and shared memory (registers: about 128 per
// thread for 8 warps, which ptxas's report checks), on sm_80/sm_90's limits.
inline int mma_resident_ctas(const MmaTileShape& t) {
  const int by_threads = 2048 / t.threads;
  const int by_smem = (164 * 1024) / (t.shared_bytes + 1024);
  const int by_regs = 65536 / (t.threads * 128);
  int r = by_threads < by_smem ? by_threads : by_smem;
  return r < by_regs ? r : by_regs;
}

inline MmaChoice mma_forward_choice(int64_t M, int64_t K, int sm_count) {
  MmaChoice best;
  best.efficiency = -1;
  const int first = K <= 32 ? kMma128x32 : kMma128x128;
  const int last = K <= 32 ? kMma128x32 : kMma64x64;
  for (int id = first; id <= last; ++id) {
    const MmaTileShape& t = kMmaTileShapes[id];
    const int64_t mt = (M + t.bm - 1) / t.bm, nt = (K + t.bn - 1) / t.bn, ctas = mt * nt;
    const int64_t slots = static_cast<int64_t>(sm_count) * mma_resident_ctas(t);
    const int64_t full_waves = (ctas + slots - 1) / slots;
    const double area = static_cast<double>(M * K) / static_cast<double>(ctas * t.bm * t.bn);
    const double fill = static_cast<double>(ctas) / static_cast<double>(full_waves * slots);
    // Larger tiles reuse each loaded operand more: weigh the estimate by the tile's arithmetic
    // intensity relative to 128x128 (2*bm*bn/(bm+bn) FLOPs per element loaded), a mild preference.
    const double intensity = (2.0 * t.bm * t.bn / (t.bm + t.bn)) / 128.0;
    const double e = area * fill * (0.75 + 0.25 * intensity);
    if (e > best.efficiency + 1e-9) {
      best.tile = id;
      best.ctas = ctas;
      best.waves = static_cast<double>(ctas) / static_cast<double>(slots);
      best.efficiency = e;
    }
  }
  return best;
}

// Split-K for a grid under one wave: enough splits to fill the resident slots, each of at least
// kMinSlicesPerSplit slices (the pipeline's depth and then some), at most kMaxSplits. A function
// of the problem, the tile and the SM count only, so a device gives the same bits every run.
constexpr int kMaxSplits = 16, kMinSlicesPerSplit = 4;

struct MmaSplit {
  int splits = 1, slices_per_split = 0;
};

inline MmaSplit mma_split_plan(int64_t M, int64_t K, int64_t slices, int tile, int sm_count) {
  const MmaTileShape& t = kMmaTileShapes[tile];
  const int64_t ctas = ((M + t.bm - 1) / t.bm) * ((K + t.bn - 1) / t.bn);
  const int64_t slots = static_cast<int64_t>(sm_count) * mma_resident_ctas(t);
  int64_t splits = ctas < slots ? slots / ctas : 1;
  const int64_t by_depth = slices / kMinSlicesPerSplit;
  splits = splits < by_depth ? splits : by_depth;
  splits = splits < kMaxSplits ? splits : kMaxSplits;
  MmaSplit plan;
  if (splits < 2) {
    plan.slices_per_split = static_cast<int>(slices);
    return plan;
  }
  plan.slices_per_split = static_cast<int>((slices + splits - 1) / splits);
  plan.splits = static_cast<int>((slices + plan.slices_per_split - 1) / plan.slices_per_split);  // none empty
  return plan;
}

// Slices of the reduction for a tile id and element type.
template <class T>
inline int64_t mma_slices(const Conv2dProblem& p, int tile) {
  const int row_bytes = tile == kMma128x128 || tile == kMma128x64 ? 64 : 128;
  const int64_t slice = row_bytes / static_cast<int64_t>(sizeof(T));
  return (p.R * p.S * p.C + slice - 1) / slice;
}

// y = the splits of partial added in order (+ bias, then ReLU), as the forward's epilogue would.
constexpr int kSplitkTileN = 32, kSplitkTileM = 8;

template <class T>
__global__ void __launch_bounds__(kSplitkTileN * kSplitkTileM)
    conv2d_mma_splitk_kernel(const float* partial, int splits, int M, int K, const T* bias, bool relu, T* y,
                             bool y_nhwc, FastDivmod div_PQ) {
  const int n = blockIdx.x * kSplitkTileN + threadIdx.x % kSplitkTileN;
  const int m = blockIdx.y * kSplitkTileM + threadIdx.x / kSplitkTileN;
  if (m >= M || n >= K) return;
  const int64_t mk = static_cast<int64_t>(M) * K, at = static_cast<int64_t>(m) * K + n;
  float u = 0.0f;
  for (int z = 0; z < splits; ++z) u += partial[z * mk + at];
  u += bias ? to_float(bias[n]) : 0.0f;
  if (relu) u = u < 0.0f ? 0.0f : u;  // relu(NaN) stays NaN
  if (y_nhwc) {
    y[at] = from_float<T>(u);
  } else {
    int img, pq;
    div_PQ.divmod(m, img, pq);
    y[(static_cast<int64_t>(img) * K + n) * (div_PQ.divisor) + pq] = from_float<T>(u);
  }
}

// Whether a call takes the vector path (16-byte chunks of channels, aligned tensors).
template <class T>
inline bool mma_vector_path(const Conv2dProblem& p, const void* x, const void* w) {
  return p.C % (16 / sizeof(T)) == 0 && aligned_to(x, 16) && aligned_to(w, 16);
}

// The tile a call runs: the masked path's, a requested one, or the choice for the SM count.
inline int mma_tile_for(bool vector_path, int tile, int64_t M, int64_t K, int sm_count) {
  if (!vector_path) return kMma64x64;
  return tile >= 0 ? tile : mma_forward_choice(M, K, sm_count).tile;
}

// Bytes of the layout transposes of an NCHW call (the NHWC input, 16-byte aligned, then the KRSC
// weight).
template <class T>
inline int64_t mma_transpose_bytes(const Conv2dProblem& p, bool nhwc) {
  if (nhwc) return 0;
  const int64_t align = 16 / sizeof(T);
  const int64_t xs = (p.input_numel() + align - 1) / align * align;
  const int64_t ws = (p.weight_numel() + align - 1) / align * align;
  return (xs + ws) * static_cast<int64_t>(sizeof(T));
}

// Bytes of workspace conv2d_mma_forward needs for (tile, sm_count): the transposes of an NCHW call,
// then the split-K partial sums, for whichever of the vector and the masked path the call takes.
template <class T>
inline int64_t mma_forward_workspace(const Conv2dProblem& p, bool nhwc, int sm_count, int tile = -1) {
  const int64_t M = p.N * p.P * p.Q;
  int64_t split_bytes = 0;
  for (bool vector_path : {true, false}) {
    const int t = mma_tile_for(vector_path, tile, M, p.K, sm_count);
    const MmaSplit plan = mma_split_plan(M, p.K, mma_slices<T>(p, t), t, sm_count);
    const int64_t bytes = plan.splits > 1 ? plan.splits * M * p.K * static_cast<int64_t>(sizeof(float)) : 0;
    split_bytes = bytes > split_bytes ? bytes : split_bytes;
  }
  return mma_transpose_bytes<T>(p, nhwc) + split_bytes;
}

template <class T, class Tile>
inline ConvMmaParams mma_forward_params(const Conv2dProblem& p, const T* x, const T* w, const T* bias, bool relu,
                                        T* y, bool y_nhwc) {
  ConvMmaParams P;
  P.N = static_cast<int>(p.N); P.H = static_cast<int>(p.H); P.W = static_cast<int>(p.W); P.C = static_cast<int>(p.C);
  P.K = static_cast<int>(p.K); P.R = static_cast<int>(p.R); P.S = static_cast<int>(p.S);
  P.P = static_cast<int>(p.P); P.Q = static_cast<int>(p.Q);
  P.stride_h = static_cast<int>(p.stride_h); P.stride_w = static_cast<int>(p.stride_w);
  P.pad_h = static_cast<int>(p.pad_h); P.pad_w = static_cast<int>(p.pad_w);
  P.dil_h = static_cast<int>(p.dilation_h); P.dil_w = static_cast<int>(p.dilation_w);
  P.M = P.N * P.P * P.Q;
  P.RSC = P.R * P.S * P.C;
  constexpr int kSlice = Tile::kRowBytes / static_cast<int>(sizeof(T));
  P.slices = (P.RSC + kSlice - 1) / kSlice;
  P.div_PQ = FastDivmod(P.P * P.Q);
  P.div_Q = FastDivmod(P.Q);
  P.div_C = FastDivmod(P.C);
  P.div_S = FastDivmod(P.S);
  P.x = x; P.w = w; P.bias = bias; P.y = y; P.relu = relu; P.y_nhwc = y_nhwc;
  P.vec_out = y_nhwc && P.K % (16 / static_cast<int>(sizeof(T))) == 0 && aligned_to(y, 16) &&
              (bias == nullptr || aligned_to(bias, 16));
  return P;
}

// A kernel's dynamic shared memory past the 48 KiB a launch gets without asking.
template <class Kernel>
void allow_dynamic_shared(Kernel kernel, int bytes) {
#if defined(__CUDACC__)
  if (bytes > 48 * 1024) cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
#else
  (void)kernel;
  (void)bytes;
#endif
}

// One forward launch, split-K (partial: the workspace's float sums) when the plan has splits.
template <class T, class Tile, bool kVec, class Stream>
void launch_mma_tile(const Conv2dProblem& p, const T* x, const T* w, const T* bias, bool relu, T* y, bool y_nhwc,
                     const MmaSplit& plan, float* partial, Stream stream) {
  ConvMmaParams P = mma_forward_params<T, Tile>(p, x, w, bias, relu, y, y_nhwc);
  P.splits = plan.splits;
  P.slices_per_split = plan.splits > 1 ? plan.slices_per_split : P.slices;
  P.partial = plan.splits > 1 ? partial : nullptr;
  const LaunchConfig c{dim3(ceil_div(P.M, Tile::BM), ceil_div(P.K, Tile::BN), static_cast<unsigned>(P.splits)),
                       dim3(Tile::kThreads), static_cast<size_t>(Tile::kSharedBytes)};
  allow_dynamic_shared(conv2d_mma_fprop_kernel<T, Tile, kVec>, Tile::kSharedBytes);
  CNNFAST_LAUNCH(c, stream, conv2d_mma_fprop_kernel<T, Tile, kVec>)(P);
  if (P.partial) {
    const LaunchConfig r{dim3(ceil_div(P.K, kSplitkTileN), ceil_div(P.M, kSplitkTileM)),
                         dim3(kSplitkTileN * kSplitkTileM), 0};
    CNNFAST_LAUNCH(r, stream, conv2d_mma_splitk_kernel<T>)(partial, P.splits, P.M, P.K, bias, relu, y, y_nhwc,
                                                           P.div_PQ);
  }
}

// y = conv2d(x, w) (+ bias) (then ReLU) on tensor cores; mma_forward_supported(p). nhwc: x, w, y
// NHWC / KRSC / NHWC; else NCHW / KCRS / NCHW, transposed through workspace
// (mma_forward_workspace bytes for the same sm_count and tile, 16-byte aligned), which also holds
// the split-K partial sums of a grid under a wave. tile: a kMma* id, or -1 to choose from sm_count.
template <class T, class Stream>
void conv2d_mma_forward(const Conv2dProblem& p, bool nhwc, const T* x, const T* w, const T* bias, bool relu, T* y,
                        void* workspace, int sm_count, int tile, Stream stream) {
  static_assert(sizeof(T) == 2 || sizeof(T) == 4, "half types and float (TF32)");
  const T* xn = x;
  const T* wn = w;
  if (!nhwc) {
    T* xt = static_cast<T*>(workspace);
    const int64_t align = 16 / sizeof(T);
    T* wt = xt + (p.input_numel() + align - 1) / align * align;
    transpose(x, xt, p.N, static_cast<int>(p.C), static_cast<int>(p.H * p.W), stream);
    transpose(w, wt, p.K, static_cast<int>(p.C), static_cast<int>(p.R * p.S), stream);
    xn = xt;
    wn = wt;
  }
  const bool vector_path = mma_vector_path<T>(p, xn, wn);
  const int64_t M = p.N * p.P * p.Q;
  tile = mma_tile_for(vector_path, tile, M, p.K, sm_count);
  const MmaSplit plan = mma_split_plan(M, p.K, mma_slices<T>(p, tile), tile, sm_count);
  float* partial = reinterpret_cast<float*>(static_cast<unsigned char*>(workspace) + mma_transpose_bytes<T>(p, nhwc));
  if (!vector_path) {  // any C: one masked configuration
    launch_mma_tile<T, MmaTile64x64, false>(p, xn, wn, bias, relu, y, nhwc, plan, partial, stream);
    return;
  }
  switch (tile) {
    case kMma128x128:
      launch_mma_tile<T, MmaTile128x128, true>(p, xn, wn, bias, relu, y, nhwc, plan, partial, stream);
      break;
    case kMma128x64:
      launch_mma_tile<T, MmaTile128x64, true>(p, xn, wn, bias, relu, y, nhwc, plan, partial, stream);
      break;
    case kMma64x64:
      launch_mma_tile<T, MmaTile64x64, true>(p, xn, wn, bias, relu, y, nhwc, plan, partial, stream);
      break;
    default: launch_mma_tile<T, MmaTile128x32, true>(p, xn, wn, bias, relu, y, nhwc, plan, partial, stream); break;
  }
}

}  // namespace cuda
}  // namespace cnnfast
