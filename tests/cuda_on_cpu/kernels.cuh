// Correct kernels the harness must run exactly (and that nvcc must compile unchanged).
// Device code and launch configuration only: no torch header.
#pragma once

#include "../../csrc/cuda/common/launch.cuh"
#include "../../csrc/cuda/common/wmma.cuh"
#include "../../csrc/problem.h"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace cnnfast_test {

using cnnfast::cuda::ceil_div;
using cnnfast::cuda::LaunchConfig;

// ---- Tiled matrix product with static shared memory and barriers: C[M,N] = A[M,K] B[K,N] ----
template <int TILE>
__global__ void __launch_bounds__(TILE * TILE) tiled_matmul_kernel(const float* __restrict__ A, const float* __restrict__ B,
                                    float* __restrict__ C, int M, int N, int K) {
  __shared__ float As[TILE][TILE];
  __shared__ float Bs[TILE][TILE];
  const int ty = threadIdx.y, tx = threadIdx.x;
  const int row = blockIdx.y * TILE + ty, col = blockIdx.x * TILE + tx;
  float acc = 0.0f;
  for (int t = 0; t < (K + TILE - 1) / TILE; ++t) {
    const int ak = t * TILE + tx, bk = t * TILE + ty;
    As[ty][tx] = (row < M && ak < K) ? __ldg(&A[size_t(row) * K + ak]) : 0.0f;
    Bs[ty][tx] = (bk < K && col < N) ? __ldg(&B[size_t(bk) * N + col]) : 0.0f;
    __syncthreads();
#pragma unroll
    for (int k = 0; k < TILE; ++k) acc = fmaf(As[ty][k], Bs[k][tx], acc);
    __syncthreads();
  }
  if (row < M && col < N) C[size_t(row) * N + col] = acc;
}

constexpr int kMatmulTile = 16;

inline LaunchConfig tiled_matmul_config(int M, int N) {
  return {dim3(ceil_div(N, kMatmulTile), ceil_div(M, kMatmulTile)), dim3(kMatmulTile, kMatmulTile), 0};
}

template <class Stream>
void tiled_matmul(const float* A, const float* B, float* C, int M, int N, int K, Stream stream) {
  CNNFAST_LAUNCH(tiled_matmul_config(M, N), stream, tiled_matmul_kernel<kMatmulTile>)(A, B, C, M, N, K);
}

// ---- Block sums by warp shuffles: out[b] = sum of x[b*blockDim.x ...] (fixed tree order) ----
__global__ void warp_sum_kernel(const float* __restrict__ x, float* __restrict__ block_sums,
                                int n) {
  __shared__ float partial[32];
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const int lane = threadIdx.x % warpSize, warp = threadIdx.x / warpSize;
  float v = i < n ? x[i] : 0.0f;
  for (int offset = warpSize / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < int(blockDim.x / warpSize) ? partial[lane] : 0.0f;
    for (int offset = warpSize / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    if (lane == 0) block_sums[blockIdx.x] = v;
  }
}

inline LaunchConfig warp_sum_config(int n, int threads) { return {dim3(ceil_div(n, threads)), dim3(threads), 0}; }

template <class Stream>
void warp_sum(const float* x, float* block_sums, int n, int threads, Stream stream) {
  CNNFAST_LAUNCH(warp_sum_config(n, threads), stream, warp_sum_kernel)(x, block_sums, n);
}

// ---- Every warp collective, with widths and partial masks: 12 ints out per thread ----
__global__ void collectives_kernel(int* __restrict__ out) {
  const int t = threadIdx.x, lane = t % 32;
  int* o = out + (size_t(blockIdx.x) * blockDim.x + t) * 12;
  const int v = 100 * (t / 32) + lane;
  o[0] = __shfl_sync(0xffffffffu, v, 5);
  o[1] = __shfl_sync(0xffffffffu, v, lane + 3, 8);  // within groups of 8
  o[2] = __shfl_up_sync(0xffffffffu, v, 3);
  o[3] = __shfl_down_sync(0xffffffffu, v, 4, 16);
  o[4] = __shfl_xor_sync(0xffffffffu, v, 1);
  o[5] = static_cast<int>(__ballot_sync(0xffffffffu, lane % 3 == 0));
  o[6] = __any_sync(0xffffffffu, lane == 7);
  o[7] = __all_sync(0xffffffffu, lane < 31);
  __syncwarp();
  o[8] = -1;
  o[9] = -1;
  if (lane < 16) {  // half-warp collectives: masks name exactly the lanes that call them
    o[8] = __shfl_down_sync(0x0000ffffu, v, 1, 16);
    o[9] = static_cast<int>(__ballot_sync(0x0000ffffu, lane & 1));
  } else {
    o[8] = __shfl_sync(0xffff0000u, v, 31);
    o[9] = __all_sync(0xffff0000u, lane >= 16);
  }
  const double d = 0.5 * v;
  o[10] = static_cast<int>(2.0 * __shfl_xor_sync(0xffffffffu, d, 2));  // 8-byte shuffle
  __half h = __float2half(float(v));
  o[11] = static_cast<int>(__half2float(__shfl_sync(0xffffffffu, h, 0)));  // 2-byte shuffle
}

inline LaunchConfig collectives_config(int blocks, int threads) { return {dim3(blocks), dim3(threads), 0}; }

template <class Stream>
void collectives(int* out, int blocks, int threads, Stream stream) {
  CNNFAST_LAUNCH(collectives_config(blocks, threads), stream, collectives_kernel)(out);
}

// ---- Dynamic shared memory: reverse each block's chunk, y[i] = x[block_start + n_b - 1 - t] ----
__global__ void block_reverse_kernel(const float* __restrict__ x, float* __restrict__ y, int n) {
  CNNFAST_DYNAMIC_SHARED(float, s);
  const int start = blockIdx.x * blockDim.x;
  const int count = min(int(blockDim.x), n - start);
  const int t = threadIdx.x;
  if (t < count) s[t] = x[start + t];
  __syncthreads();
  if (t < count) y[start + t] = s[count - 1 - t];
}

inline LaunchConfig block_reverse_config(int n, int threads) {
  return {dim3(ceil_div(n, threads)), dim3(threads), size_t(threads) * sizeof(float)};
}

template <class Stream>
void block_reverse(const float* x, float* y, int n, int threads, Stream stream) {
  CNNFAST_LAUNCH(block_reverse_config(n, threads), stream, block_reverse_kernel)(x, y, n);
}

// ---- Atomics: histogram (int), float/double/half sums, max, CAS and exchange ----
__global__ void atomics_kernel(const int* __restrict__ keys, int n, int* __restrict__ hist,
                               float* __restrict__ fsum, double* __restrict__ dsum,
                               __half* __restrict__ hsum, int* __restrict__ imax,
                               int* __restrict__ claimed, int* __restrict__ last) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int k = keys[i];
  atomicAdd(&hist[k], 1);
  atomicAdd(fsum, 0.5f);
  atomicAdd(dsum, 0.25);
  atomicAdd(hsum, __float2half(1.0f));
  atomicMax(imax, k);
  atomicCAS(&claimed[k], -1, i);  // some i with keys[i] == k
  atomicExch(last, 7);
}

inline LaunchConfig atomics_config(int n) { return {dim3(ceil_div(n, 64)), dim3(64), 0}; }

template <class Stream>
void atomics(const int* keys, int n, int* hist, float* fsum, double* dsum, __half* hsum,
             int* imax, int* claimed, int* last, Stream stream) {
  CNNFAST_LAUNCH(atomics_config(n), stream, atomics_kernel)(keys, n, hist, fsum, dsum, hsum, imax, claimed, last);
}

// ---- WMMA product, one warp per 16x16 tile of C: C[M,N] = A[M,K] B[K,N], all row-major ----
// T is the storage type (half, __nv_bfloat16, float); Prec the fragment type (T, or tf32).
template <class T, class Prec, int KSTEP>
__global__ void wmma_gemm_kernel(const T* __restrict__ A, const T* __restrict__ B,
                                 float* __restrict__ C, int M, int N, int K) {
  namespace wmma = nvcuda::wmma;
  const int warp = threadIdx.x / 32;
  const int tile_m = blockIdx.y * 16;
  const int tile_n = (blockIdx.x * (blockDim.x / 32) + warp) * 16;
  if (tile_m >= M || tile_n >= N) return;  // whole warps only
  wmma::fragment<wmma::matrix_a, 16, 16, KSTEP, Prec, wmma::row_major> a;
  wmma::fragment<wmma::matrix_b, 16, 16, KSTEP, Prec, wmma::row_major> b;
  wmma::fragment<wmma::accumulator, 16, 16, KSTEP, float> c;
  wmma::fill_fragment(c, 0.0f);
  for (int k = 0; k < K; k += KSTEP) {
    wmma::load_matrix_sync(a, A + size_t(tile_m) * K + k, K);
    wmma::load_matrix_sync(b, B + size_t(k) * N + tile_n, N);
    if constexpr (sizeof(T) == 4) {  // tf32: round the float inputs as the GPU's cvt does
      for (int i = 0; i < a.num_elements; ++i) a.x[i] = wmma::__float_to_tf32(a.x[i]);
      for (int i = 0; i < b.num_elements; ++i) b.x[i] = wmma::__float_to_tf32(b.x[i]);
    }
    wmma::mma_sync(c, a, b, c);
  }
  wmma::store_matrix_sync(C + size_t(tile_m) * N + tile_n, c, N, wmma::mem_row_major);
}

inline LaunchConfig wmma_gemm_config(int M, int N) {
  const int warps = 2;  // tiles of C per block along N
  return {dim3(ceil_div(N, 16 * warps), ceil_div(M, 16)), dim3(32 * warps), 0};
}

template <class Stream>
void wmma_gemm_half(const __half* A, const __half* B, float* C, int M, int N, int K, Stream s) {
  CNNFAST_LAUNCH(wmma_gemm_config(M, N), s, wmma_gemm_kernel<__half, __half, 16>)(A, B, C, M, N, K);
}
template <class Stream>
void wmma_gemm_bf16(const __nv_bfloat16* A, const __nv_bfloat16* B, float* C, int M, int N, int K, Stream s) {
  CNNFAST_LAUNCH(wmma_gemm_config(M, N), s, wmma_gemm_kernel<__nv_bfloat16, __nv_bfloat16, 16>)(A, B, C, M, N, K);
}
template <class Stream>
void wmma_gemm_tf32(const float* A, const float* B, float* C, int M, int N, int K, Stream s) {
  CNNFAST_LAUNCH(wmma_gemm_config(M, N), s, wmma_gemm_kernel<float, nvcuda::wmma::precision::tf32, 8>)(A, B, C, M, N, K);
}

// ---- WMMA with the other layouts: D = A B + C0 with B column-major (Bt[N,K] row-major), C0
// loaded row-major, D stored column-major (Dt[N,M] row-major); one warp per 16x16 tile.
__global__ void wmma_layouts_kernel(const __half* __restrict__ A, const __half* __restrict__ Bt,
                                    const float* __restrict__ C0, float* __restrict__ Dt, int M,
                                    int N, int K) {
  namespace wmma = nvcuda::wmma;
  const int tile_m = blockIdx.y * 16, tile_n = blockIdx.x * 16;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
  wmma::load_matrix_sync(c, C0 + size_t(tile_m) * N + tile_n, N, wmma::mem_row_major);
  for (int k = 0; k < K; k += 16) {
    wmma::load_matrix_sync(a, A + size_t(tile_m) * K + k, K);
    wmma::load_matrix_sync(b, Bt + size_t(tile_n) * K + k, K);
    wmma::mma_sync(c, a, b, c);
  }
  for (int i = 0; i < c.num_elements; ++i) c.x[i] *= 2.0f;  // element-wise, as GPU code may do
  wmma::store_matrix_sync(Dt + size_t(tile_n) * M + tile_m, c, M, wmma::mem_col_major);
}

inline LaunchConfig wmma_layouts_config(int M, int N) { return {dim3(ceil_div(N, 16), ceil_div(M, 16)), dim3(32), 0}; }

template <class Stream>
void wmma_layouts(const __half* A, const __half* Bt, const float* C0, float* Dt, int M, int N, int K, Stream s) {
  CNNFAST_LAUNCH(wmma_layouts_config(M, N), s, wmma_layouts_kernel)(A, Bt, C0, Dt, M, N, K);
}

// ---- Direct conv2d, one thread per output element (NCHW, groups, stride, padding, dilation) ----
__global__ void conv2d_direct_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                     const float* __restrict__ bias, float* __restrict__ y,
                                     cnnfast::Conv2dProblem p) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= p.output_numel()) return;
  const int64_t q = idx % p.Q, pp = idx / p.Q % p.P, k = idx / (p.P * p.Q) % p.K, n = idx / (p.K * p.P * p.Q);
  const int64_t cpg = p.C_per_group(), g = k / p.K_per_group();
  float acc = bias ? bias[k] : 0.0f;
  for (int64_t c = 0; c < cpg; ++c)
    for (int64_t r = 0; r < p.R; ++r) {
      const int64_t h = pp * p.stride_h - p.pad_h + r * p.dilation_h;
      if (h < 0 || h >= p.H) continue;
      for (int64_t s = 0; s < p.S; ++s) {
        const int64_t wc = q * p.stride_w - p.pad_w + s * p.dilation_w;
        if (wc < 0 || wc >= p.W) continue;
        acc = fmaf(x[((n * p.C + g * cpg + c) * p.H + h) * p.W + wc],
                   w[((k * cpg + c) * p.R + r) * p.S + s], acc);
      }
    }
  y[idx] = acc;
}

inline LaunchConfig conv2d_direct_config(const cnnfast::Conv2dProblem& p) {
  return {dim3(ceil_div(p.output_numel(), 128)), dim3(128), 0};
}

template <class Stream>
void conv2d_direct(const float* x, const float* w, const float* bias, float* y,
                   const cnnfast::Conv2dProblem& p, Stream stream) {
  CNNFAST_LAUNCH(conv2d_direct_config(p), stream, conv2d_direct_kernel)(x, w, bias, y, p);
}

// ---- Vector types and barrier reductions: y = x (as float4), counts[b] = {count, and, or} ----
static_assert(alignof(float4) == 16 && sizeof(float4) == 16, "float4 layout");
static_assert(alignof(int4) == 16 && alignof(float2) == 8 && alignof(double2) == 16, "vector alignment");

__global__ void vector_copy_kernel(const float4* __restrict__ x, float4* __restrict__ y, int n4,
                                   int* __restrict__ counts) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n4) {
    const float4 v = __ldg(&x[i]);
    y[i] = make_float4(v.x, v.y, v.z, v.w);
  }
  const int positive = i < n4 && x[i].x > 0.0f;
  const int c = __syncthreads_count(positive);
  const int a = __syncthreads_and(positive);
  const int o = __syncthreads_or(positive);
  if (threadIdx.x == 0) {
    counts[3 * blockIdx.x] = c;
    counts[3 * blockIdx.x + 1] = a;
    counts[3 * blockIdx.x + 2] = o;
  }
}

inline LaunchConfig vector_copy_config(int n4) { return {dim3(ceil_div(n4, 64)), dim3(64), 0}; }

template <class Stream>
void vector_copy(const float4* x, float4* y, int n4, int* counts, Stream stream) {
  CNNFAST_LAUNCH(vector_copy_config(n4), stream, vector_copy_kernel)(x, y, n4, counts);
}

}  // namespace cnnfast_test
