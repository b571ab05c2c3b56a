// C entry points of the harness tests' kernels, for ctypes (tests/test_cuda_on_cpu.py) and for
// the standalone driver (driver.cpp). Built with g++ and the CPU harness; no torch header.
#include "kernels.cuh"
#include "planted_bugs.cuh"
#include "scheduler_cases.cuh"

#include "../../csrc/cuda_on_cpu/c_api.h"

using cuda_on_cpu::c_api::guarded;

extern "C" {

int coc_tiled_matmul(const float* A, const float* B, float* C, int M, int N, int K) {
  return guarded([&] { cnnfast_test::tiled_matmul(A, B, C, M, N, K, nullptr); });
}

int coc_warp_sum(const float* x, float* block_sums, int n, int threads) {
  return guarded([&] { cnnfast_test::warp_sum(x, block_sums, n, threads, nullptr); });
}

int coc_collectives(int* out, int blocks, int threads) {
  return guarded([&] { cnnfast_test::collectives(out, blocks, threads, nullptr); });
}

int coc_block_reverse(const float* x, float* y, int n, int threads) {
  return guarded([&] { cnnfast_test::block_reverse(x, y, n, threads, nullptr); });
}

int coc_atomics(const int* keys, int n, int* hist, float* fsum, double* dsum, void* hsum,
                int* imax, int* claimed, int* last) {
  return guarded([&] {
    cnnfast_test::atomics(keys, n, hist, fsum, dsum, static_cast<__half*>(hsum), imax, claimed,
                          last, nullptr);
  });
}

int coc_vector_copy(const void* x, void* y, int n4, int* counts) {
  return guarded([&] {
    cnnfast_test::vector_copy(static_cast<const float4*>(x), static_cast<float4*>(y), n4, counts, nullptr);
  });
}

// dtype: 0 half, 1 bfloat16, 2 tf32 (float storage)
int coc_wmma_gemm(int dtype, const void* A, const void* B, float* C, int M, int N, int K) {
  return guarded([&] {
    if (dtype == 0)
      cnnfast_test::wmma_gemm_half(static_cast<const __half*>(A), static_cast<const __half*>(B), C, M, N, K, nullptr);
    else if (dtype == 1)
      cnnfast_test::wmma_gemm_bf16(static_cast<const __nv_bfloat16*>(A), static_cast<const __nv_bfloat16*>(B), C, M, N, K, nullptr);
    else
      cnnfast_test::wmma_gemm_tf32(static_cast<const float*>(A), static_cast<const float*>(B), C, M, N, K, nullptr);
  });
}

int coc_wmma_layouts(const void* A, const void* Bt, const float* C0, float* Dt, int M, int N, int K) {
  return guarded([&] {
    cnnfast_test::wmma_layouts(static_cast<const __half*>(A), static_cast<const __half*>(Bt), C0, Dt, M, N, K, nullptr);
  });
}

// Rounding of the CPU build's conversions (cuda_fp16.h / cuda_bf16.h host code and tf32).
void coc_round(int dtype, const float* in, float* out, int n) {
  for (int i = 0; i < n; ++i) {
    if (dtype == 0) out[i] = __half2float(__float2half_rn(in[i]));
    else if (dtype == 1) out[i] = __bfloat162float(__float2bfloat16_rn(in[i]));
    else out[i] = nvcuda::wmma::__float_to_tf32(in[i]);
  }
}

// sizes: N C H W K R S stride_h stride_w pad_h pad_w dilation_h dilation_w groups
int coc_conv2d_direct(const float* x, const float* w, const float* bias, float* y,
                      const long long* sizes) {
  return guarded([&] {
    cnnfast::Conv2dProblem p;
    p.N = sizes[0]; p.C = sizes[1]; p.H = sizes[2]; p.W = sizes[3];
    p.K = sizes[4]; p.R = sizes[5]; p.S = sizes[6];
    p.stride_h = sizes[7]; p.stride_w = sizes[8]; p.pad_h = sizes[9]; p.pad_w = sizes[10];
    p.dilation_h = sizes[11]; p.dilation_w = sizes[12]; p.groups = sizes[13];
    p.compute_output_size();
    cnnfast_test::conv2d_direct(x, w, bias, y, p, nullptr);
  });
}

// The planted bugs; x holds n floats (or the block size for single-block kernels), y as many.
int coc_planted(const char* name, const float* x, float* y, int n, int threads) {
  namespace pb = cnnfast_test::planted;
  const std::string k = name;
  return guarded([&] {
    if (k == "missing_barrier") pb::missing_barrier(x, y, n, nullptr);
    else if (k == "divergent_barrier") pb::divergent_barrier(y, threads, nullptr);
    else if (k == "exit_before_barrier") pb::exit_before_barrier(x, y, n, threads, nullptr);
    else if (k == "wrong_mask_shuffle") pb::wrong_mask_shuffle(x, y, n, nullptr);
    else if (k == "missing_lane_shuffle") pb::missing_lane_shuffle(x, y, nullptr);
    else if (k == "shared_oob_write") pb::shared_oob_write(x, y, n, threads, nullptr);
    else if (k == "global_oob_read") pb::global_oob_read(x, y, n, nullptr);
    else if (k == "inter_block_race") pb::inter_block_race(x, y, n, nullptr);
    else throw std::runtime_error("no planted bug named " + k);
  });
}

// The scheduler cases: one block of `threads` threads, out holds `threads` ints.
int coc_scheduler_case(const char* name, int* out, int threads) {
  namespace sc = cnnfast_test::scheduler;
  const std::string k = name;
  const cnnfast::cuda::LaunchConfig cfg{dim3(1), dim3(threads), 0};
  return guarded([&] {
    if (k == "syncwarp_sites") CNNFAST_LAUNCH(cfg, nullptr, sc::syncwarp_sites_kernel)(out);
    else if (k == "partial_warp") CNNFAST_LAUNCH(cfg, nullptr, sc::partial_warp_kernel)(out);
    else if (k == "partial_warp_full_mask") CNNFAST_LAUNCH(cfg, nullptr, sc::partial_warp_full_mask_kernel)(out);
    else if (k == "warp_vs_barrier") CNNFAST_LAUNCH(cfg, nullptr, sc::warp_vs_barrier_kernel)(out);
    else if (k == "different_collectives") CNNFAST_LAUNCH(cfg, nullptr, sc::different_collectives_kernel)(out);
    else if (k == "mask_mismatch") CNNFAST_LAUNCH(cfg, nullptr, sc::mask_mismatch_kernel)(out);
    else if (k == "trap") CNNFAST_LAUNCH(cfg, nullptr, sc::trap_kernel)(out);
    else if (k == "stale_static_shared")  // two blocks of 32 threads; out holds 64 floats
      CNNFAST_LAUNCH((cnnfast::cuda::LaunchConfig{dim3(2), dim3(32), 0}), nullptr,
                     sc::stale_static_shared_kernel<32>)(reinterpret_cast<float*>(out));
    else throw std::runtime_error("no scheduler case named " + k);
  });
}

}  // extern "C"
