// conv2d as implicit GEMM on CUDA cores (FFMA, float accumulation): forward (with the fused
// bias + ReLU epilogue of common/epilogue.cuh), grad-input, grad-weight (deterministic split-K),
// grad-bias. NCHW (contiguous) and NHWC (channels_last) storage, any stride, padding, dilation and
// groups.
//
// The three passes are one GEMM C[M x Ng] = A[M x Kr] * B[Kr x Ng] per group, whose operands are
// gathered from the tensors on the fly (no im2col buffer in global memory):
//   fprop: M = N*P*Q output pixels,  Ng = K/G filters,     Kr = C/G*R*S;  A = input, B = weight
//   dgrad: M = N*H*W input pixels,   Ng = C/G channels,    Kr = K/G*R*S;  A = grad_output
//          (zero where (h + pad - r*dil) is not a multiple of the stride), B = the filter,
//          flipped and transposed (read as w[k][c][r][s] for column c, reduction (k, r, s))
//   wgrad: M = K/G filters,          Ng = C/G*R*S taps,    Kr = N*P*Q;    A = grad_output,
//          B = input; the reduction is split over gridDim.z, each split writes its own float
//          partial tile, and splitk_reduce_kernel adds the splits in a fixed order (no atomics:
//          repeated runs give identical bits).
// The reduction order is (r, s, c) in NHWC (channels innermost, contiguous) and (c, r, s) in
// NCHW, which is also the order of the weight's storage in that layout (KRSC / KCRS), so a filter
// row is contiguous along the reduction in fprop.
//
// Tiles: a block of 128 threads computes a 128 x 64 tile of C, each thread an 8 x 8 register block
// (rows tm*4..+3 and 64+tm*4..+3, columns tn*4..+3 and 32+tn*4..+3: conflict-free shared loads,
// 16 shared loads per 64 FFMA). The reduction advances 8 at a time through double-buffered
// shared memory: the next slice is loaded from global memory into registers while the current
// one is multiplied, then stored to the other buffer; one barrier per slice. Each thread loads
// one A row and half a B row per slice in units of 4 consecutive reduction indices: one 128-bit
// load (float) or 64-bit load (half types) when the unit is contiguous and aligned (NHWC input
// with C/G % 4 == 0, filter rows with Kr % 4 == 0, NCHW grad_output planes with P*Q % 4 == 0),
// four gathered scalar loads otherwise.
//
// grad_output may be masked by a ReLU output (the backward of conv2d_relu): an element counts
// only where that output is > 0. Storage types float, __half, __nv_bfloat16; all math in float.
// The half types (and float under TF32) run on tensor cores instead, with the same operand
// gathers and GEMM parameters: conv2d_wmma_kernel.cuh, which also holds the entry points
// (conv2d_forward, conv2d_grad_input, conv2d_grad_weight) that choose the engine.
#pragma once

#include "common/epilogue.cuh"
#include "common/kernel_utils.cuh"
#include "conv2d_depthwise_kernel.cuh"
#include "problem.h"

namespace cnnfast {
namespace cuda {

enum ConvMode : int { kFprop = 0, kDgrad = 1, kWgrad = 2 };

constexpr int kConvBM = 128, kConvBN = 64, kConvBK = 8, kConvThreads = 128;
// A thread's kConvRegs x kConvRegs register block: kConvHalfRegs rows (columns) in each half of the
// tile's rows (columns); threads tile each half as kConvThreadRows x kConvThreadCols.
constexpr int kConvRegs = 8, kConvHalfRegs = kConvRegs / 2;
constexpr int kConvHalfBM = kConvBM / 2, kConvHalfBN = kConvBN / 2;
constexpr int kConvThreadCols = kConvHalfBN / kConvHalfRegs, kConvThreadRows = kConvHalfBM / kConvHalfRegs;
static_assert(kConvThreadRows * kConvThreadCols == kConvThreads, "one register block per thread");

// Everything a conv2d_gemm_kernel launch needs (passed by value).
struct ConvGemmParams {
  Conv2dProblem p;
  int64_t M = 0, Ng = 0, Kr = 0;  // GEMM sizes of one group
  int64_t split_len = 0;          // wgrad: reduction length of one split (multiple of kConvBK)
  int splits = 1;
  const void* a = nullptr;     // fprop: input; dgrad, wgrad: grad_output
  const void* b = nullptr;     // fprop, dgrad: weight; wgrad: input
  const void* mask = nullptr;  // ReLU output masking grad_output (dgrad, wgrad), or null
  const void* bias = nullptr;  // fprop: bias or null
  void* out = nullptr;         // fprop: output; dgrad: grad_input; wgrad: float partials
  bool relu = false;           // fprop: ReLU in the epilogue
  bool vec_a = false, vec_b = false;
};

// The epilogue of a pass (common/epilogue.cuh): the forward's bias and ReLU; the backward passes
// store their sums as they are.
template <class T, int MODE>
CNNFAST_DEVICE BiasReluEpilogue<T> conv_epilogue(const ConvGemmParams& P) {
  if constexpr (MODE != kFprop) return {};
  return {static_cast<const T*>(P.bias), P.relu};
}

// The fixed part of one operand row's addressing, computed once before the main loop.
struct RowInfo {
  int64_t off = 0;  // element offset of the row's base
  int i0 = 0, i1 = 0, i2 = 0;
  bool valid = false;
};

// ---- A operand ---------------------------------------------------------------------------------
// A reduction index k as (channel, tap rs = r * S + s): NHWC orders the reduction tap-major
// (k = rs * channels + c, so consecutive k are contiguous channels), NCHW channel-major (k = c * RS + rs).
template <bool NHWC>
CNNFAST_DEVICE void split_reduction_index(int k, int channels, int RS, int& c, int& rs) {
  if (NHWC) {
    rs = k / channels;
    c = k - rs * channels;
  } else {
    c = k / RS;
    rs = k - c * RS;
  }
}

template <int MODE, bool NHWC>
CNNFAST_DEVICE RowInfo a_row(const ConvGemmParams& P, int64_t m, int g) {
  const Conv2dProblem& p = P.p;
  RowInfo r;
  r.valid = m < P.M;
  if (!r.valid) return r;
  if (MODE == kFprop) {  // m = (n, oh, ow)
    const int64_t PQ = p.P * p.Q, n = m / PQ;
    const int pq = static_cast<int>(m - n * PQ), oh = pq / static_cast<int>(p.Q), ow = pq - oh * static_cast<int>(p.Q);
    r.off = NHWC ? n * p.H * p.W * p.C + g * p.C_per_group() : (n * p.C + g * p.C_per_group()) * p.H * p.W;
    r.i0 = oh * static_cast<int>(p.stride_h) - static_cast<int>(p.pad_h);
    r.i1 = ow * static_cast<int>(p.stride_w) - static_cast<int>(p.pad_w);
  } else if (MODE == kDgrad) {  // m = (n, h, w)
    const int64_t HW = p.H * p.W, n = m / HW;
    const int hw = static_cast<int>(m - n * HW), h = hw / static_cast<int>(p.W), w = hw - h * static_cast<int>(p.W);
    r.off = NHWC ? n * p.P * p.Q * p.K + g * p.K_per_group() : (n * p.K + g * p.K_per_group()) * p.P * p.Q;
    r.i0 = h + static_cast<int>(p.pad_h);
    r.i1 = w + static_cast<int>(p.pad_w);
  } else {  // wgrad: m = filter k of the group
    const int64_t k = g * p.K_per_group() + m;
    r.off = NHWC ? k : k * p.P * p.Q;
  }
  return r;
}

// A[m][kk..kk+3] into v (zeros outside the problem or past k_end).
template <class T, int MODE, bool NHWC>
CNNFAST_DEVICE void a_unit(const ConvGemmParams& P, const RowInfo& row, int64_t kk, int64_t k_end, float v[4]) {
  const Conv2dProblem& p = P.p;
  const T* A = static_cast<const T*>(P.a);
  const T* mask = static_cast<const T*>(P.mask);
#pragma unroll
  for (int i = 0; i < 4; ++i) v[i] = 0.0f;
  if (!row.valid || kk >= k_end) return;
  if (MODE == kFprop) {
    const int Cg = static_cast<int>(p.C_per_group()), S = static_cast<int>(p.S), RS = static_cast<int>(p.R * p.S);
    if (NHWC && P.vec_a) {  // 4 channels of one tap, contiguous and aligned
      const int k = static_cast<int>(kk), rs = k / Cg, c = k - rs * Cg, r = rs / S, s = rs - r * S;
      const int h = row.i0 + r * static_cast<int>(p.dilation_h), w = row.i1 + s * static_cast<int>(p.dilation_w);
      if (h >= 0 && h < p.H && w >= 0 && w < p.W) load4(A + row.off + (static_cast<int64_t>(h) * p.W + w) * p.C + c, v);
      return;
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (kk + i >= k_end) break;
      const int k = static_cast<int>(kk) + i;
      int c, rs;
      split_reduction_index<NHWC>(k, Cg, RS, c, rs);
      const int r = rs / S, s = rs - r * S;
      const int h = row.i0 + r * static_cast<int>(p.dilation_h), w = row.i1 + s * static_cast<int>(p.dilation_w);
      if (h < 0 || h >= p.H || w < 0 || w >= p.W) continue;
      const int64_t idx = NHWC ? row.off + (static_cast<int64_t>(h) * p.W + w) * p.C + c
                               : row.off + (static_cast<int64_t>(c) * p.H + h) * p.W + w;
      v[i] = to_float(A[idx]);
    }
  } else if (MODE == kDgrad) {
    const int Kg = static_cast<int>(p.K_per_group()), S = static_cast<int>(p.S), RS = static_cast<int>(p.R * p.S);
    const int sh = static_cast<int>(p.stride_h), sw = static_cast<int>(p.stride_w);
    if (NHWC && P.vec_a) {  // 4 filters of one tap: contiguous channels of one grad_output pixel
      const int k = static_cast<int>(kk), rs = k / Kg, kc = k - rs * Kg, r = rs / S, s = rs - r * S;
      const int th = row.i0 - r * static_cast<int>(p.dilation_h), tw = row.i1 - s * static_cast<int>(p.dilation_w);
      if (th < 0 || tw < 0 || th % sh != 0 || tw % sw != 0) return;
      const int oh = th / sh, ow = tw / sw;
      if (oh >= p.P || ow >= p.Q) return;
      const int64_t idx = row.off + (static_cast<int64_t>(oh) * p.Q + ow) * p.K + kc;
      masked4(A, mask, idx, v);
      return;
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (kk + i >= k_end) break;
      const int k = static_cast<int>(kk) + i;
      int kc, rs;
      split_reduction_index<NHWC>(k, Kg, RS, kc, rs);
      const int r = rs / S, s = rs - r * S;
      const int th = row.i0 - r * static_cast<int>(p.dilation_h), tw = row.i1 - s * static_cast<int>(p.dilation_w);
      if (th < 0 || tw < 0 || th % sh != 0 || tw % sw != 0) continue;
      const int oh = th / sh, ow = tw / sw;
      if (oh >= p.P || ow >= p.Q) continue;
      const int64_t idx = NHWC ? row.off + (static_cast<int64_t>(oh) * p.Q + ow) * p.K + kc
                               : row.off + (static_cast<int64_t>(kc) * p.P + oh) * p.Q + ow;
      v[i] = masked(A, mask, idx);
    }
  } else {  // wgrad: A[k][npq] = grad_output[n, k, p, q]
    const int64_t PQ = p.P * p.Q;
    if (!NHWC && P.vec_a) {  // 4 pixels of one plane (P*Q % 4 == 0), contiguous and aligned
      const int64_t n = kk / PQ, idx = row.off + n * p.K * PQ + (kk - n * PQ);
      masked4(A, mask, idx, v);
      return;
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (kk + i >= k_end) break;
      const int64_t j = kk + i;
      const int64_t idx = NHWC ? j * p.K + row.off : (j / PQ) * p.K * PQ + row.off + j % PQ;
      v[i] = masked(A, mask, idx);
    }
  }
}

// ---- B operand (row = GEMM column n) -------------------------------------------------------------
template <int MODE, bool NHWC>
CNNFAST_DEVICE RowInfo b_row(const ConvGemmParams& P, int64_t n, int g) {
  const Conv2dProblem& p = P.p;
  RowInfo r;
  r.valid = n < P.Ng;
  if (!r.valid) return r;
  if (MODE == kFprop) {  // filter g*Kg + n, contiguous along the reduction
    r.off = (g * p.K_per_group() + n) * P.Kr;
  } else if (MODE == kDgrad) {  // channel c of the group
    r.i0 = static_cast<int>(n);
    r.off = g * p.K_per_group();  // first filter of the group
  } else {  // wgrad: tap (c, r, s) in the reduction order of the layout
    const int Cg = static_cast<int>(p.C_per_group()), S = static_cast<int>(p.S), RS = static_cast<int>(p.R * p.S);
    const int t = static_cast<int>(n);
    int c, rr, s;
    if (NHWC) {
      const int rs = t / Cg;
      c = t - rs * Cg; rr = rs / S; s = rs - rr * S;
    } else {
      c = t / RS;
      const int rs = t - c * RS;
      rr = rs / S; s = rs - rr * S;
    }
    r.off = g * p.C_per_group() + c;  // input channel
    r.i0 = rr * static_cast<int>(p.dilation_h) - static_cast<int>(p.pad_h);
    r.i1 = s * static_cast<int>(p.dilation_w) - static_cast<int>(p.pad_w);
  }
  return r;
}

template <class T, int MODE, bool NHWC>
CNNFAST_DEVICE void b_unit(const ConvGemmParams& P, const RowInfo& row, int64_t kk, int64_t k_end, float v[4]) {
  const Conv2dProblem& p = P.p;
  const T* B = static_cast<const T*>(P.b);
#pragma unroll
  for (int i = 0; i < 4; ++i) v[i] = 0.0f;
  if (!row.valid || kk >= k_end) return;
  if (MODE == kFprop) {
    if (P.vec_b) {
      load4(B + row.off + kk, v);
      return;
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
      if (kk + i < k_end) v[i] = to_float(B[row.off + kk + i]);
  } else if (MODE == kDgrad) {
    const int Kg = static_cast<int>(p.K_per_group()), Cg = static_cast<int>(p.C_per_group());
    const int S = static_cast<int>(p.S), R = static_cast<int>(p.R), RS = R * S;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (kk + i >= k_end) break;
      const int k = static_cast<int>(kk) + i;
      int kc, rs;
      split_reduction_index<NHWC>(k, Kg, RS, kc, rs);
      const int64_t f = row.off + kc;  // global filter index
      const int64_t idx = NHWC ? (f * RS + rs) * Cg + row.i0 : (f * Cg + row.i0) * RS + rs;
      v[i] = to_float(B[idx]);
    }
  } else {  // wgrad: B[npq][tap] = input[n, c, oh*sh + r*dh - ph, ow*sw + s*dw - pw]
    const int64_t PQ = p.P * p.Q;
    const int Q = static_cast<int>(p.Q);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (kk + i >= k_end) break;
      const int64_t j = kk + i, n = j / PQ;
      const int pq = static_cast<int>(j - n * PQ), oh = pq / Q, ow = pq - oh * Q;
      const int h = oh * static_cast<int>(p.stride_h) + row.i0, w = ow * static_cast<int>(p.stride_w) + row.i1;
      if (h < 0 || h >= p.H || w < 0 || w >= p.W) continue;
      const int64_t idx = NHWC ? ((n * p.H + h) * p.W + w) * p.C + row.off
                               : ((n * p.C + row.off) * p.H + h) * p.W + w;
      v[i] = to_float(B[idx]);
    }
  }
}

// ---- the kernel ------------------------------------------------------------------------------
template <class T, int MODE, bool NHWC>
__global__ void __launch_bounds__(kConvThreads) conv2d_gemm_kernel(ConvGemmParams P) {
  constexpr int BM = kConvBM, BN = kConvBN, BK = kConvBK;
  __shared__ __align__(16) float As[2][BK][BM];
  __shared__ __align__(16) float Bs[2][BK][BN];

  const int tid = threadIdx.x;
  const int G = static_cast<int>(P.p.groups);
  const int g = static_cast<int>(blockIdx.z % G);
  const int split = static_cast<int>(blockIdx.z / G);
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * BM, n0 = static_cast<int64_t>(blockIdx.y) * BN;
  int64_t k_begin = 0, k_end = P.Kr;
  if (MODE == kWgrad) {
    k_begin = split * P.split_len;
    k_end = k_begin + P.split_len < P.Kr ? k_begin + P.split_len : P.Kr;
  }

  // Loader mapping: A row tid (8 reduction indices: two units), B row tid % 64 (one unit).
  const RowInfo arow = a_row<MODE, NHWC>(P, m0 + tid, g);
  const RowInfo brow = b_row<MODE, NHWC>(P, n0 + tid % BN, g);
  const int bk = (tid / BN) * 4;
  float ra[8], rb[4];

  // Compute mapping: 8 x 8 outputs per thread.
  const int tm = tid / kConvThreadCols, tn = tid % kConvThreadCols;
  float acc[kConvRegs][kConvRegs];
#pragma unroll
  for (int i = 0; i < kConvRegs; ++i)
#pragma unroll
    for (int j = 0; j < kConvRegs; ++j) acc[i][j] = 0.0f;

  a_unit<T, MODE, NHWC>(P, arow, k_begin, k_end, ra);
  a_unit<T, MODE, NHWC>(P, arow, k_begin + 4, k_end, ra + 4);
  b_unit<T, MODE, NHWC>(P, brow, k_begin + bk, k_end, rb);
#pragma unroll
  for (int i = 0; i < 8; ++i) As[0][i][tid] = ra[i];
#pragma unroll
  for (int i = 0; i < 4; ++i) Bs[0][bk + i][tid % BN] = rb[i];
  __syncthreads();

  int buf = 0;
  for (int64_t k0 = k_begin; k0 < k_end; k0 += BK) {
    const bool has_next = k0 + BK < k_end;
    if (has_next) {  // next slice into registers while this one is multiplied
      a_unit<T, MODE, NHWC>(P, arow, k0 + BK, k_end, ra);
      a_unit<T, MODE, NHWC>(P, arow, k0 + BK + 4, k_end, ra + 4);
      b_unit<T, MODE, NHWC>(P, brow, k0 + BK + bk, k_end, rb);
    }
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[kConvRegs], b[kConvRegs];
#pragma unroll
      for (int i = 0; i < kConvHalfRegs; ++i) {
        a[i] = As[buf][kk][tm * kConvHalfRegs + i];
        a[kConvHalfRegs + i] = As[buf][kk][kConvHalfBM + tm * kConvHalfRegs + i];
        b[i] = Bs[buf][kk][tn * kConvHalfRegs + i];
        b[kConvHalfRegs + i] = Bs[buf][kk][kConvHalfBN + tn * kConvHalfRegs + i];
      }
#pragma unroll
      for (int i = 0; i < kConvRegs; ++i)
#pragma unroll
        for (int j = 0; j < kConvRegs; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (has_next) {
#pragma unroll
      for (int i = 0; i < 8; ++i) As[buf ^ 1][i][tid] = ra[i];
#pragma unroll
      for (int i = 0; i < 4; ++i) Bs[buf ^ 1][bk + i][tid % BN] = rb[i];
    }
    __syncthreads();
    buf ^= 1;
  }

  // Epilogue: bias and ReLU in registers, one store per output.
  const Conv2dProblem& p = P.p;
  const BiasReluEpilogue<T> epilogue = conv_epilogue<T, MODE>(P);
#pragma unroll
  for (int i = 0; i < kConvRegs; ++i) {
    const int64_t m = m0 + tm * kConvHalfRegs + (i < kConvHalfRegs ? i : kConvHalfBM + i - kConvHalfRegs);
    if (m >= P.M) continue;
    int64_t base = 0, step = 1;  // output (m, n) at base + n * step
    if (MODE == kFprop) {
      const int64_t PQ = p.P * p.Q, n = m / PQ, pq = m - n * PQ;
      base = NHWC ? m * p.K + g * p.K_per_group() : (n * p.K + g * p.K_per_group()) * PQ + pq;
      step = NHWC ? 1 : PQ;
    } else if (MODE == kDgrad) {
      const int64_t HW = p.H * p.W, n = m / HW, hw = m - n * HW;
      base = NHWC ? m * p.C + g * p.C_per_group() : (n * p.C + g * p.C_per_group()) * HW + hw;
      step = NHWC ? 1 : HW;
    } else {
      base = ((static_cast<int64_t>(split) * G + g) * P.M + m) * P.Ng;
    }
#pragma unroll
    for (int j = 0; j < kConvRegs; ++j) {
      const int64_t n = n0 + tn * kConvHalfRegs + (j < kConvHalfRegs ? j : kConvHalfBN + j - kConvHalfRegs);
      if (n >= P.Ng) continue;
      if (MODE == kWgrad)
        static_cast<float*>(P.out)[base + n] = acc[i][j];
      else  // the forward's channel is filter g * K/G + n (bias and ReLU); dgrad has neither
        epilogue.store(static_cast<T*>(P.out), base + n * step, acc[i][j], g * p.K_per_group() + n);
    }
  }
}

// ---- grad-bias: sums of grad_output per channel, per split (then splitk_reduce_kernel) -----------
constexpr int kBiasGradThreads = 256;
constexpr int kBiasGradChannels = 32, kBiasGradLanes = kBiasGradThreads / kBiasGradChannels;  // NHWC block

// NHWC: a block is 32 channels x 8 row lanes; lanes stride over the split's rows (coalesced along
// channels), then the 8 lane sums are added in lane order.
template <class T>
__global__ void __launch_bounds__(kBiasGradThreads)
    bias_grad_nhwc_kernel(const T* dy, const T* mask, int64_t rows, int64_t K, int64_t split_len, float* partial) {
  __shared__ float sums[kBiasGradLanes][kBiasGradChannels + 1];
  const int lane = threadIdx.x % kBiasGradChannels, ry = threadIdx.x / kBiasGradChannels;
  const int64_t k = static_cast<int64_t>(blockIdx.x) * kBiasGradChannels + lane;
  const int64_t begin = static_cast<int64_t>(blockIdx.y) * split_len;
  const int64_t end = begin + split_len < rows ? begin + split_len : rows;
  float s = 0.0f;
  if (k < K)
    for (int64_t r = begin + ry; r < end; r += kBiasGradLanes) s += masked(dy, mask, r * K + k);
  sums[ry][lane] = s;
  __syncthreads();
  if (ry == 0 && k < K) {
    float t = 0.0f;
    for (int i = 0; i < kBiasGradLanes; ++i) t += sums[i][lane];
    partial[blockIdx.y * K + k] = t;
  }
}

// NCHW: a block per (channel, split); 256 threads stride over the split's (n, pixel) pairs, then a
// fixed-shape tree adds the thread sums.
template <class T>
__global__ void __launch_bounds__(kBiasGradThreads)
    bias_grad_nchw_kernel(const T* dy, const T* mask, int64_t rows, int64_t K, int64_t PQ, int64_t split_len,
                          float* partial) {
  __shared__ float sums[kBiasGradThreads];
  const int64_t k = blockIdx.x;
  const int64_t begin = static_cast<int64_t>(blockIdx.y) * split_len;
  const int64_t end = begin + split_len < rows ? begin + split_len : rows;
  float s = 0.0f;
  for (int64_t j = begin + threadIdx.x; j < end; j += kBiasGradThreads) {
    const int64_t n = j / PQ;
    s += masked(dy, mask, (n * K + k) * PQ + (j - n * PQ));
  }
  sums[threadIdx.x] = s;
  __syncthreads();
  for (int w = kBiasGradThreads / 2; w > 0; w /= 2) {
    if (static_cast<int>(threadIdx.x) < w) sums[threadIdx.x] += sums[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.y * K + k] = sums[0];
}

// ---- host side -------------------------------------------------------------------------------

// The GEMM view of one pass (sizes per group).
inline ConvGemmParams conv_gemm_params(const Conv2dProblem& p, int mode) {
  ConvGemmParams P;
  P.p = p;
  if (mode == kFprop) {
    P.M = p.N * p.P * p.Q; P.Ng = p.K_per_group(); P.Kr = p.C_per_group() * p.R * p.S;
  } else if (mode == kDgrad) {
    P.M = p.N * p.H * p.W; P.Ng = p.C_per_group(); P.Kr = p.K_per_group() * p.R * p.S;
  } else {
    P.M = p.K_per_group(); P.Ng = p.C_per_group() * p.R * p.S; P.Kr = p.N * p.P * p.Q;
    // Splits: enough blocks to fill a large GPU, each split at least 32 slices long.
    const int64_t tiles = ((P.M + kConvBM - 1) / kConvBM) * ((P.Ng + kConvBN - 1) / kConvBN) * p.groups;
    int64_t splits = (512 + tiles - 1) / tiles;
    const int64_t max_by_len = (P.Kr + 32 * kConvBK - 1) / (32 * kConvBK);
    if (splits > max_by_len) splits = max_by_len;
    if (splits > 64) splits = 64;
    if (splits * p.groups > 65535) splits = 65535 / p.groups;
    if (splits < 1) splits = 1;
    int64_t len = (P.Kr + splits - 1) / splits;
    len = (len + kConvBK - 1) / kConvBK * kConvBK;
    P.split_len = len;
    P.splits = static_cast<int>((P.Kr + len - 1) / len);
  }
  return P;
}

// Float elements of the wgrad workspace (the splits' partial weight gradients).
inline int64_t conv_wgrad_workspace(const Conv2dProblem& p) {
  if (is_depthwise(p)) return pixel_splits(p) * p.C * p.R * p.S;
  const ConvGemmParams P = conv_gemm_params(p, kWgrad);
  return static_cast<int64_t>(P.splits) * p.groups * P.M * P.Ng;
}

inline LaunchConfig conv_gemm_config(const ConvGemmParams& P) {
  return {dim3(ceil_div(P.M, kConvBM), ceil_div(P.Ng, kConvBN), static_cast<unsigned>(P.p.groups * P.splits)),
          dim3(kConvThreads), 0};
}

template <class T, int MODE, class Stream>
void launch_gemm(const ConvGemmParams& P, bool nhwc, Stream stream) {
  if (nhwc)
    CNNFAST_LAUNCH(conv_gemm_config(P), stream, conv2d_gemm_kernel<T, MODE, true>)(P);
  else
    CNNFAST_LAUNCH(conv_gemm_config(P), stream, conv2d_gemm_kernel<T, MODE, false>)(P);
}

// The forward's GEMM parameters (operands, epilogue, vector paths).
template <class T>
inline ConvGemmParams conv_forward_params(const Conv2dProblem& p, bool nhwc, const T* x, const T* w, const T* bias,
                                          bool relu, T* y) {
  ConvGemmParams P = conv_gemm_params(p, kFprop);
  P.a = x; P.b = w; P.bias = bias; P.out = y; P.relu = relu;
  P.vec_a = nhwc && p.C_per_group() % 4 == 0 && p.C % 4 == 0 && aligned_to(x, 4 * sizeof(T));
  P.vec_b = P.Kr % 4 == 0 && aligned_to(w, 4 * sizeof(T));
  return P;
}

// The grad-input GEMM's parameters: dy masked by relu_out > 0 when relu_out is not null.
template <class T>
inline ConvGemmParams conv_grad_input_params(const Conv2dProblem& p, bool nhwc, const T* dy, const T* relu_out,
                                             const T* w, T* dx) {
  ConvGemmParams P = conv_gemm_params(p, kDgrad);
  P.a = dy; P.b = w; P.mask = relu_out; P.out = dx;
  P.vec_a = nhwc && p.K_per_group() % 4 == 0 && p.K % 4 == 0 && aligned_to(dy, 4 * sizeof(T)) &&
            (relu_out == nullptr || aligned_to(relu_out, 4 * sizeof(T)));
  return P;
}

// The grad-weight GEMM's parameters: the split partials go to workspace (conv_wgrad_workspace(p)
// floats), which splitk_reduce then adds into dw.
template <class T>
inline ConvGemmParams conv_grad_weight_params(const Conv2dProblem& p, bool nhwc, const T* dy, const T* relu_out,
                                              const T* x, float* workspace) {
  ConvGemmParams P = conv_gemm_params(p, kWgrad);
  P.a = dy; P.b = x; P.mask = relu_out; P.out = workspace;
  P.vec_a = !nhwc && (p.P * p.Q) % 4 == 0 && aligned_to(dy, 4 * sizeof(T)) &&
            (relu_out == nullptr || aligned_to(relu_out, 4 * sizeof(T)));
  return P;
}

// db[k] = sum of dy (masked) over n, p, q; workspace holds pixel_splits(p) * K floats.
template <class T, class Stream>
void conv2d_grad_bias(const Conv2dProblem& p, bool nhwc, const T* dy, const T* relu_out, T* db, float* workspace,
                      Stream stream) {
  const int64_t rows = p.N * p.P * p.Q, len = pixel_split_len(p), splits = pixel_splits(p);
  if (nhwc) {
    const LaunchConfig c{dim3(ceil_div(p.K, kBiasGradChannels), static_cast<unsigned>(splits)),
                         dim3(kBiasGradThreads), 0};
    CNNFAST_LAUNCH(c, stream, bias_grad_nhwc_kernel<T>)(dy, relu_out, rows, p.K, len, workspace);
  } else {
    const LaunchConfig c{dim3(static_cast<unsigned>(p.K), static_cast<unsigned>(splits)), dim3(kBiasGradThreads), 0};
    CNNFAST_LAUNCH(c, stream, bias_grad_nchw_kernel<T>)(dy, relu_out, rows, p.K, p.P * p.Q, len, workspace);
  }
  splitk_reduce(workspace, static_cast<int>(splits), p.K, db, stream);
}

}  // namespace cuda
}  // namespace cnnfast
