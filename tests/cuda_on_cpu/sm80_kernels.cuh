// Kernels of the sm_80 primitives (csrc/cuda/common/mma.cuh, cp_async.cuh, swizzle.cuh) that the
// harness must run exactly and nvcc must compile unchanged (tests/test_cuda_on_cpu_sm80.py).
// One warp per block unless said otherwise; 16-bit values travel as uint16_t bit patterns.
#pragma once

#include <cstdint>

#include "../../csrc/cuda/common/cp_async.cuh"
#include "../../csrc/cuda/common/fast_divmod.cuh"
#include "../../csrc/cuda/common/launch.cuh"
#include "../../csrc/cuda/common/mma.cuh"
#include "../../csrc/cuda/common/swizzle.cuh"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#endif

namespace cnnfast_test {
namespace sm80k {

namespace s80 = cnnfast::cuda::sm80;
using cnnfast::cuda::LaunchConfig;

// ---- mma fragments built by hand from the PTX ISA's layout: D = A (16 x k) B (k x 8) + C ----
// Half types: A, B as 16-bit patterns (A row-major 16x16, B row-major 16x8); TF32: floats (A 16x8,
// B 8x8), rounded with to_tf32. C and D 16x8 row-major floats.
template <s80::MmaType Type>
__global__ void mma_fragment_kernel(const void* A, const void* B, const float* C, float* D) {
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  uint32_t a[4], b[2];
  if constexpr (Type == s80::MmaType::tf32) {
    const float* Af = static_cast<const float*>(A);
    const float* Bf = static_cast<const float*>(B);
    a[0] = s80::to_tf32(Af[g * 8 + t]);
    a[1] = s80::to_tf32(Af[(g + 8) * 8 + t]);
    a[2] = s80::to_tf32(Af[g * 8 + t + 4]);
    a[3] = s80::to_tf32(Af[(g + 8) * 8 + t + 4]);
    b[0] = s80::to_tf32(Bf[t * 8 + g]);
    b[1] = s80::to_tf32(Bf[(t + 4) * 8 + g]);
  } else {
    const uint16_t* Ah = static_cast<const uint16_t*>(A);
    const uint16_t* Bh = static_cast<const uint16_t*>(B);
    const auto pair = [](uint16_t lo, uint16_t hi) { return static_cast<uint32_t>(lo) | static_cast<uint32_t>(hi) << 16; };
    a[0] = pair(Ah[g * 16 + 2 * t], Ah[g * 16 + 2 * t + 1]);
    a[1] = pair(Ah[(g + 8) * 16 + 2 * t], Ah[(g + 8) * 16 + 2 * t + 1]);
    a[2] = pair(Ah[g * 16 + 2 * t + 8], Ah[g * 16 + 2 * t + 9]);
    a[3] = pair(Ah[(g + 8) * 16 + 2 * t + 8], Ah[(g + 8) * 16 + 2 * t + 9]);
    b[0] = pair(Bh[(2 * t) * 8 + g], Bh[(2 * t + 1) * 8 + g]);
    b[1] = pair(Bh[(2 * t + 8) * 8 + g], Bh[(2 * t + 9) * 8 + g]);
  }
  const float c[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t], C[(g + 8) * 8 + 2 * t + 1]};
  float d[4];
  s80::mma<Type>(d, a, b, c);
  D[g * 8 + 2 * t] = d[0];
  D[g * 8 + 2 * t + 1] = d[1];
  D[(g + 8) * 8 + 2 * t] = d[2];
  D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

template <s80::MmaType Type, class Stream>
void mma_fragment(const void* A, const void* B, const float* C, float* D, Stream stream) {
  CNNFAST_LAUNCH((LaunchConfig{dim3(1), dim3(32), 0}), stream, mma_fragment_kernel<Type>)(A, B, C, D);
}

// ---- ldmatrix.x{N}[.trans]: 32 rows of 8 16-bit values in shared memory; lane l gives the address
// of row rows[l]; out[l * N + j] = register j of lane l ----
template <int N, bool Trans>
__global__ void ldmatrix_kernel(const uint16_t* in, const int* rows, uint32_t* out) {
  __shared__ __align__(16) uint16_t tile[32 * 8];
  const int lane = threadIdx.x;
  for (int i = lane; i < 32 * 8; i += 32) tile[i] = in[i];
  __syncwarp();
  uint32_t r[N];
  s80::ldmatrix<N, Trans>(r, tile + 8 * rows[lane]);
  for (int j = 0; j < N; ++j) out[lane * N + j] = r[j];
}

template <int N, bool Trans, class Stream>
void ldmatrix_test(const uint16_t* in, const int* rows, uint32_t* out, Stream stream) {
  CNNFAST_LAUNCH((LaunchConfig{dim3(1), dim3(32), 0}), stream, ldmatrix_kernel<N, Trans>)(in, rows, out);
}

// ---- A 16x8x16 float16 product through shared memory, as the engine loads its operands: A row-major
// (reduction contiguous) by ldmatrix.x4, B stored k-major ([k][n], n contiguous) by ldmatrix.x2.trans.
// kTransB false is the planted bug of a B operand loaded without .trans. ----
template <bool kTransB>
__global__ void mma_gemm_kernel(const __half* A, const __half* B, float* D) {
  __shared__ __align__(16) __half As[16 * 16];
  __shared__ __align__(16) __half Bs[16 * 8];
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  for (int i = lane; i < 16 * 16; i += 32) As[i] = A[i];
  for (int i = lane; i < 16 * 8; i += 32) Bs[i] = B[i];
  __syncwarp();
  uint32_t a[4], b[2];
  s80::ldmatrix<4>(a, As + (lane % 16) * 16 + (lane / 16) * 8);
  s80::ldmatrix<2, kTransB>(b, Bs + (lane % 16) * 8);
  const float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  float d[4];
  s80::mma<s80::MmaType::f16>(d, a, b, c);
  D[g * 8 + 2 * t] = d[0];
  D[g * 8 + 2 * t + 1] = d[1];
  D[(g + 8) * 8 + 2 * t] = d[2];
  D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

template <bool kTransB, class Stream>
void mma_gemm(const __half* A, const __half* B, float* D, Stream stream) {
  CNNFAST_LAUNCH((LaunchConfig{dim3(1), dim3(32), 0}), stream, mma_gemm_kernel<kTransB>)(A, B, D);
}

// ---- Bank conflicts of a layout: a 16 x 64-byte tile stored with 16-byte sts (chunk c of row r at
// Swz::apply(r * 64 + c * 16)) and read back by two ldmatrix.x4 as the engine reads an A operand
// (rows 0..15, chunks 0-1 then 2-3). out: lane l's 8 registers. ----
template <class Swz>
__global__ void swizzle_kernel(const uint4* in, uint32_t* out) {
  __shared__ __align__(16) unsigned char tile[16 * 64];
  const int lane = threadIdx.x;
  for (int i = lane; i < 64; i += 32) {
    const int r = i / 4, c = i % 4;
    s80::sts(reinterpret_cast<uint4*>(tile + Swz::apply(r * 64 + c * 16)), in[i]);
  }
  __syncwarp();
  for (int step = 0; step < 2; ++step) {
    uint32_t r[4];
    s80::ldmatrix<4>(r, tile + Swz::apply((lane % 16) * 64 + (2 * step + lane / 16) * 16));
    for (int j = 0; j < 4; ++j) out[lane * 8 + step * 4 + j] = r[j];
  }
}

using NoSwizzle = cnnfast::cuda::Swizzle<0, 4, 3>;
using RowSwizzle64 = cnnfast::cuda::RowSwizzle<64>;
using HalfSwizzle = cnnfast::cuda::Swizzle<1, 4, 3>;  // one bit of the three a 64-byte row needs

template <class Swz, class Stream>
void swizzle_test(const uint4* in, uint32_t* out, Stream stream) {
  CNNFAST_LAUNCH((LaunchConfig{dim3(1), dim3(32), 0}), stream, swizzle_kernel<Swz>)(in, out);
}

// ---- A cp.async pipeline: one block of 32 threads copies n floats through Stages shared buffers of
// 32 chunks (16 bytes each; the last chunk zero-filled past n), out = in with the tail padded by
// zeros to whole chunks. kWait: wait_group's N (Stages - 2 is right; Stages - 1 lets a read run
// ahead of its copy); kWaits false drops the wait (the planted bugs). ----
template <int Stages, int kWait, bool kWaits>
__global__ void cp_async_pipeline_kernel(const float* in, float* out, int n) {
  CNNFAST_DYNAMIC_SHARED(float, buf);  // Stages x 32 chunks x 4 floats
  const int lane = threadIdx.x, chunks = (n + 3) / 4, tiles = (chunks + 31) / 32;
  const auto load = [&](int tile) {
    const int ch = tile * 32 + lane;
    const int bytes = ch < chunks ? 4 * (n - 4 * ch < 4 ? n - 4 * ch : 4) : 0;
    s80::cp_async<16>(buf + ((tile % Stages) * 32 + lane) * 4, bytes > 0 ? in + 4 * ch : in, bytes);
  };
  for (int t = 0; t < Stages - 1; ++t) {
    if (t < tiles) load(t);
    s80::cp_async_commit();
  }
  for (int t = 0; t < tiles; ++t) {
    if constexpr (kWaits) s80::cp_async_wait<kWait>();
    __syncthreads();
    // Each thread reads its neighbour's chunk: the barrier, not the thread's own wait, orders it.
    const int src = lane ^ 1, ch = t * 32 + src;
    if (ch < chunks)
      for (int e = 0; e < 4; ++e) out[4 * ch + e] = buf[((t % Stages) * 32 + src) * 4 + e];
    if (t + Stages - 1 < tiles) load(t + Stages - 1);
    s80::cp_async_commit();
  }
  s80::cp_async_wait<0>();
}

template <int Stages, int kWait, bool kWaits, class Stream>
void cp_async_pipeline(const float* in, float* out, int n, Stream stream) {
  CNNFAST_LAUNCH((LaunchConfig{dim3(1), dim3(32), static_cast<size_t>(Stages * 32 * 16)}), stream,
                 cp_async_pipeline_kernel<Stages, kWait, kWaits>)(in, out, n);
}

}  // namespace sm80k
}  // namespace cnnfast_test
