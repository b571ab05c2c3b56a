// conv2d forward, grad-input and grad-weight on tensor cores (WMMA, float accumulation): float16
// and bfloat16 storage, and float storage as TF32 when the caller allows it
// (torch.backends.cudnn.allow_tf32). The same implicit GEMMs as conv2d_kernel.cuh (operands
// gathered by a_unit / b_unit, no im2col buffer; grad-weight split over gridDim.z into float
// partials that splitk_reduce adds in order), with their own tiles:
//   block 128 threads = 4 warps, tile 64 x 64, reduction slice 32; warp w computes the 32 x 32
//   quarter (w / 2, w % 2) as 2 x 2 fragments of 16 x 16 (k-steps of 16; 8 for TF32).
//   A slice goes global -> registers (4 units of 4 per operand per thread, 64/128-bit loads where
//   contiguous) -> shared memory in the tensor-core input type (row-major A, column-major B, rows
//   padded by 16 bytes), double-buffered with one barrier per slice.
//   Epilogue: fragments -> shared float tile (over the operand buffers) -> bias and ReLU (forward,
//   common/epilogue.cuh) -> one store per output, mapped so consecutive threads write consecutive
//   addresses (channels in NHWC, pixels in NCHW, taps in the grad-weight partials).
#pragma once

#include <type_traits>

#include "common/wmma.cuh"
#include "conv2d_kernel.cuh"
#include "conv2d_mma_kernel.cuh"

namespace cnnfast {
namespace cuda {

constexpr int kWmmaBM = 64, kWmmaBN = 64, kWmmaBK = 32, kWmmaThreads = 128;

// Tensor-core input type and k-step of a storage type (float -> TF32).
template <class T> struct WmmaInput { using type = T; using prec = T; static constexpr int kStep = 16; };
template <> struct WmmaInput<float> { using type = float; using prec = nvcuda::wmma::precision::tf32; static constexpr int kStep = 8; };

template <class S>
CNNFAST_DEVICE S to_input(float v);
template <>
CNNFAST_DEVICE __half to_input<__half>(float v) { return __float2half_rn(v); }
template <>
CNNFAST_DEVICE __nv_bfloat16 to_input<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
CNNFAST_DEVICE float to_input<float>(float v) { return nvcuda::wmma::__float_to_tf32(v); }

template <class T, int MODE, bool NHWC>
__global__ void __launch_bounds__(kWmmaThreads) conv2d_wmma_kernel(ConvGemmParams P) {
  namespace wmma = nvcuda::wmma;
  using S = typename WmmaInput<T>::type;
  using Prec = typename WmmaInput<T>::prec;
  constexpr int KS = WmmaInput<T>::kStep;
  constexpr int BM = kWmmaBM, BN = kWmmaBN, BK = kWmmaBK;
  constexpr int LD = BK + 16 / static_cast<int>(sizeof(S));  // padded row: multiple of 16 bytes
  constexpr int LDC = BN + 4;
  // The float output tile reuses the operand buffers (it is written after the last slice's barrier).
  constexpr int kInBytes = 2 * (BM + BN) * LD * static_cast<int>(sizeof(S)), kOutBytes = BM * LDC * 4;
  __shared__ __align__(128) unsigned char smem[kInBytes > kOutBytes ? kInBytes : kOutBytes];
  S(*As)[BM][LD] = reinterpret_cast<S(*)[BM][LD]>(smem);
  S(*Bs)[BN][LD] = reinterpret_cast<S(*)[BN][LD]>(smem + 2 * BM * LD * sizeof(S));
  float(*Cs)[LDC] = reinterpret_cast<float(*)[LDC]>(smem);

  const int tid = threadIdx.x, warp = tid / 32;
  const int G = static_cast<int>(P.p.groups);
  const int g = static_cast<int>(blockIdx.z % G);
  const int split = static_cast<int>(blockIdx.z / G);
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * BM, n0 = static_cast<int64_t>(blockIdx.y) * BN;
  int64_t k_begin = 0, k_end = P.Kr;
  if (MODE == kWgrad) {
    k_begin = split * P.split_len;
    k_end = k_begin + P.split_len < P.Kr ? k_begin + P.split_len : P.Kr;
  }

  // Loader mapping: row tid / 2 of A and of B, reduction indices (tid % 2) * 16 + 0..15.
  const int lrow = tid / 2, lk = (tid % 2) * 16;
  const RowInfo arow = a_row<MODE, NHWC>(P, m0 + lrow, g);
  const RowInfo brow = b_row<MODE, NHWC>(P, n0 + lrow, g);
  float ra[16], rb[16];

  wmma::fragment<wmma::accumulator, 16, 16, KS, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

#pragma unroll
  for (int u = 0; u < 4; ++u) {
    a_unit<T, MODE, NHWC>(P, arow, k_begin + lk + 4 * u, k_end, ra + 4 * u);
    b_unit<T, MODE, NHWC>(P, brow, k_begin + lk + 4 * u, k_end, rb + 4 * u);
  }
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    As[0][lrow][lk + i] = to_input<S>(ra[i]);
    Bs[0][lrow][lk + i] = to_input<S>(rb[i]);
  }
  __syncthreads();

  const int wr = (warp / 2) * 32, wc = (warp % 2) * 32;
  int buf = 0;
  for (int64_t k0 = k_begin; k0 < k_end; k0 += BK) {
    const bool has_next = k0 + BK < k_end;
    if (has_next) {
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        a_unit<T, MODE, NHWC>(P, arow, k0 + BK + lk + 4 * u, k_end, ra + 4 * u);
        b_unit<T, MODE, NHWC>(P, brow, k0 + BK + lk + 4 * u, k_end, rb + 4 * u);
      }
    }
#pragma unroll
    for (int kk = 0; kk < BK; kk += KS) {
      wmma::fragment<wmma::matrix_a, 16, 16, KS, Prec, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, KS, Prec, wmma::col_major> b[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], &As[buf][wr + 16 * i][kk], LD);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], &Bs[buf][wc + 16 * j][kk], LD);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    if (has_next) {
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        As[buf ^ 1][lrow][lk + i] = to_input<S>(ra[i]);
        Bs[buf ^ 1][lrow][lk + i] = to_input<S>(rb[i]);
      }
    }
    __syncthreads();
    buf ^= 1;
  }

#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(&Cs[wr + 16 * i][wc + 16 * j], acc[i][j], LDC, wmma::mem_row_major);
  __syncthreads();

  const Conv2dProblem& p = P.p;
  const BiasReluEpilogue<T> epilogue = conv_epilogue<T, MODE>(P);
  // Consecutive threads take consecutive n (NHWC outputs, grad-weight partials) or m (NCHW outputs).
  constexpr bool kAlongN = NHWC || MODE == kWgrad;
  for (int e = tid; e < BM * BN; e += kWmmaThreads) {
    const int r = kAlongN ? e / BN : e % BM, c = kAlongN ? e % BN : e / BM;
    const int64_t m = m0 + r, n = n0 + c;
    if (m >= P.M || n >= P.Ng) continue;
    const float v = Cs[r][c];
    if (MODE == kFprop) {
      const int64_t PQ = p.P * p.Q, k = g * p.K_per_group() + n;
      const int64_t img = m / PQ, pq = m - img * PQ;
      epilogue.store(static_cast<T*>(P.out), NHWC ? m * p.K + k : (img * p.K + k) * PQ + pq, v, k);
    } else if (MODE == kDgrad) {
      const int64_t HW = p.H * p.W, c_in = g * p.C_per_group() + n;
      const int64_t img = m / HW, hw = m - img * HW;
      epilogue.store(static_cast<T*>(P.out), NHWC ? m * p.C + c_in : (img * p.C + c_in) * HW + hw, v, c_in);
    } else {
      static_cast<float*>(P.out)[((static_cast<int64_t>(split) * G + g) * P.M + m) * P.Ng + n] = v;
    }
  }
}

inline LaunchConfig conv_wmma_config(const ConvGemmParams& P) {
  return {dim3(ceil_div(P.M, kWmmaBM), ceil_div(P.Ng, kWmmaBN), static_cast<unsigned>(P.p.groups * P.splits)),
          dim3(kWmmaThreads), 0};
}

template <class T, int MODE, class Stream>
void launch_wmma(const ConvGemmParams& P, bool nhwc, Stream stream) {
  if (nhwc)
    CNNFAST_LAUNCH(conv_wmma_config(P), stream, conv2d_wmma_kernel<T, MODE, true>)(P);
  else
    CNNFAST_LAUNCH(conv_wmma_config(P), stream, conv2d_wmma_kernel<T, MODE, false>)(P);
}

// Which engine runs a GEMM of storage type T: tensor cores for the half types, and for float
// when TF32 is allowed; FFMA otherwise.
template <class T>
inline bool use_tensor_cores(bool allow_tf32) {
  return !std::is_same<T, float>::value || allow_tf32;
}

// Whether the forward runs on the mma.sync engine (conv2d_mma_kernel.cuh): tensor cores and a
// problem it takes; the rest (groups, depthwise, FFMA) stays on the kernels here.
template <class T>
inline bool forward_uses_mma(const Conv2dProblem& p, bool allow_tf32) {
  return use_tensor_cores<T>(allow_tf32) && !is_depthwise(p) && mma_forward_supported(p);
}

// Bytes of workspace conv2d_forward needs on a device of sm_count SMs (the mma engine's layout
// transposes of an NCHW call and its split-K partial sums).
template <class T>
inline int64_t conv2d_forward_workspace(const Conv2dProblem& p, bool nhwc, bool allow_tf32, int sm_count) {
  return forward_uses_mma<T>(p, allow_tf32) ? mma_forward_workspace<T>(p, nhwc, sm_count) : 0;
}

// y = conv2d(x, w) (+ bias) (then ReLU). x, w, y in one storage order (NCHW: KCRS weight; NHWC:
// KRSC weight). Output nonempty. workspace: conv2d_forward_workspace bytes, 16-byte aligned;
// sm_count: the device's SMs (the mma engine's tile choice). Depthwise problems:
// conv2d_depthwise_kernel.cuh.
template <class T, class Stream>
void conv2d_forward(const Conv2dProblem& p, bool nhwc, const T* x, const T* w, const T* bias, bool relu,
                    bool allow_tf32, T* y, void* workspace, int sm_count, Stream stream) {
  if (is_depthwise(p)) {
    conv2d_depthwise_forward(p, nhwc, x, w, bias, relu, y, stream);
    return;
  }
  if constexpr (sizeof(T) == 2 || sizeof(T) == 4) {
    if (forward_uses_mma<T>(p, allow_tf32)) {
      conv2d_mma_forward(p, nhwc, x, w, bias, relu, y, workspace, sm_count, /*tile=*/-1, stream);
      return;
    }
  }
  const ConvGemmParams P = conv_forward_params(p, nhwc, x, w, bias, relu, y);
  if (use_tensor_cores<T>(allow_tf32))
    launch_wmma<T, kFprop>(P, nhwc, stream);
  else if constexpr (std::is_same<T, float>::value)
    launch_gemm<T, kFprop>(P, nhwc, stream);
}

// dx = grad-input of conv2d, dy masked by relu_out > 0 when relu_out is not null. dx and dy
// nonempty.
template <class T, class Stream>
void conv2d_grad_input(const Conv2dProblem& p, bool nhwc, const T* dy, const T* relu_out, const T* w, bool allow_tf32,
                       T* dx, Stream stream) {
  if (is_depthwise(p)) {
    conv2d_depthwise_grad_input(p, nhwc, dy, relu_out, w, dx, stream);
    return;
  }
  const ConvGemmParams P = conv_grad_input_params(p, nhwc, dy, relu_out, w, dx);
  if (use_tensor_cores<T>(allow_tf32))
    launch_wmma<T, kDgrad>(P, nhwc, stream);
  else if constexpr (std::is_same<T, float>::value)
    launch_gemm<T, kDgrad>(P, nhwc, stream);
}

// dw = grad-weight of conv2d; workspace holds conv_wgrad_workspace(p) floats. dy nonempty.
template <class T, class Stream>
void conv2d_grad_weight(const Conv2dProblem& p, bool nhwc, const T* dy, const T* relu_out, const T* x, bool allow_tf32,
                        T* dw, float* workspace, Stream stream) {
  if (is_depthwise(p)) {
    conv2d_depthwise_grad_weight(p, nhwc, dy, relu_out, x, dw, workspace, stream);
    return;
  }
  const ConvGemmParams P = conv_grad_weight_params(p, nhwc, dy, relu_out, x, workspace);
  if (use_tensor_cores<T>(allow_tf32))
    launch_wmma<T, kWgrad>(P, nhwc, stream);
  else if constexpr (std::is_same<T, float>::value)
    launch_gemm<T, kWgrad>(P, nhwc, stream);
  splitk_reduce(workspace, P.splits, p.groups * P.M * P.Ng, dw, stream);
}

}  // namespace cuda
}  // namespace cnnfast
