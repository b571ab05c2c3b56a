// C entry points of cnnfast's CUDA kernels built for the CPU harness (g++, no torch header), for the
// per-op tests (tests/test_<op>.py, through tests/cuda_harness.py and ctypes). dtype: 0 float,
// 1 half, 2 bfloat16 (storage types).
#include "cuda/conv2d_add_relu_kernel.cuh"
#include "cuda/conv2d_wmma_kernel.cuh"
#include "cuda/max_pool2d_kernel.cuh"
#include "cuda/relu_kernel.cuh"

#include "cuda_on_cpu/c_api.h"

#include <stdexcept>
#include <vector>

using cuda_on_cpu::c_api::guarded;

namespace {

template <class F>
void with_type(int dtype, F&& f) {
  if (dtype == 0) f(static_cast<float*>(nullptr));
  else if (dtype == 1) f(static_cast<__half*>(nullptr));
  else f(static_cast<__nv_bfloat16*>(nullptr));
}

#define CNNFAST_T std::remove_pointer_t<decltype(tag)>

// The SM count the mma engine chooses its tile for (cnnfast_set_sm_count; an H100's by default).
int kSmCount = 132;

// sizes: N C H W K R S stride_h stride_w pad_h pad_w dilation_h dilation_w groups
cnnfast::Conv2dProblem conv_problem(const long long* s) {
  cnnfast::Conv2dProblem p;
  p.N = s[0]; p.C = s[1]; p.H = s[2]; p.W = s[3];
  p.K = s[4]; p.R = s[5]; p.S = s[6];
  p.stride_h = s[7]; p.stride_w = s[8]; p.pad_h = s[9]; p.pad_w = s[10];
  p.dilation_h = s[11]; p.dilation_w = s[12]; p.groups = s[13];
  p.compute_output_size();
  return p;
}

// sizes: N C H W P Q kernel_h kernel_w stride_h stride_w pad_h pad_w dilation_h dilation_w
cnnfast::Pool2dProblem pool_problem(const long long* s) {
  cnnfast::Pool2dProblem p;
  p.N = s[0]; p.C = s[1]; p.H = s[2]; p.W = s[3]; p.P = s[4]; p.Q = s[5];
  p.kernel_h = s[6]; p.kernel_w = s[7]; p.stride_h = s[8]; p.stride_w = s[9];
  p.pad_h = s[10]; p.pad_w = s[11]; p.dilation_h = s[12]; p.dilation_w = s[13];
  return p;
}

}  // namespace

extern "C" {

int cnnfast_relu(int dtype, const void* x, void* y, long long n) {
  return guarded([&] {
    with_type(dtype, [&](auto* tag) {
      cnnfast::cuda::relu(static_cast<const CNNFAST_T*>(x), static_cast<CNNFAST_T*>(y), n, nullptr);
    });
  });
}

int cnnfast_relu_backward(int dtype, const void* dy, const void* y, void* dx, long long n) {
  return guarded([&] {
    with_type(dtype, [&](auto* tag) {
      cnnfast::cuda::relu_backward(static_cast<const CNNFAST_T*>(dy), static_cast<const CNNFAST_T*>(y),
                                   static_cast<CNNFAST_T*>(dx), n, nullptr);
    });
  });
}

// conv2d_add_relu's tail: y = relu(y + residual) in place.
int cnnfast_add_relu(int dtype, const void* residual, void* y, long long n) {
  return guarded([&] {
    with_type(dtype, [&](auto* tag) {
      cnnfast::cuda::add_relu(static_cast<const CNNFAST_T*>(residual), static_cast<CNNFAST_T*>(y), n, nullptr);
    });
  });
}

int cnnfast_max_pool2d(int dtype, const long long* sizes, int nhwc, const void* x, void* y, long long* idx) {
  return guarded([&] {
    with_type(dtype, [&](auto* tag) {
      cnnfast::cuda::max_pool2d_forward(pool_problem(sizes), nhwc != 0, static_cast<const CNNFAST_T*>(x),
                                        static_cast<CNNFAST_T*>(y), reinterpret_cast<int64_t*>(idx), nullptr);
    });
  });
}

int cnnfast_max_pool2d_backward(int dtype, const long long* sizes, int nhwc, int gather, const void* dy,
                                const long long* idx, void* dx) {
  return guarded([&] {
    with_type(dtype, [&](auto* tag) {
      cnnfast::cuda::max_pool2d_backward(pool_problem(sizes), nhwc != 0, gather != 0,
                                         static_cast<const CNNFAST_T*>(dy), reinterpret_cast<const int64_t*>(idx),
                                         static_cast<CNNFAST_T*>(dx), nullptr);
    });
  });
}

// conv2d passes; nhwc: every tensor in channels_last storage (weight as K R S C/G); tf32: float on
// tensor cores as TF32 (else FFMA); the half types always run on tensor cores.
int cnnfast_conv2d_forward(int dtype, const long long* sizes, int nhwc, const void* x, const void* w,
                           const void* bias, int relu, int tf32, void* y) {
  return guarded([&] {
    with_type(dtype, [&](auto* tag) {
      using T = CNNFAST_T;
      const cnnfast::Conv2dProblem p = conv_problem(sizes);
      std::vector<int4> work((cnnfast::cuda::conv2d_forward_workspace<T>(p, nhwc != 0, tf32 != 0, kSmCount) + 15) / 16);
      cnnfast::cuda::conv2d_forward(p, nhwc != 0, static_cast<const T*>(x), static_cast<const T*>(w),
                                    static_cast<const T*>(bias), relu != 0, tf32 != 0, static_cast<T*>(y),
                                    work.data(), kSmCount, nullptr);
    });
  });
}

void cnnfast_set_sm_count(int n) { kSmCount = n; }

// The mma.sync forward with a given tile configuration (a kMma* id; -1: chosen for the SM count);
// the half types and float as TF32.
int cnnfast_conv2d_mma_forward(int dtype, const long long* sizes, int nhwc, const void* x, const void* w,
                               const void* bias, int relu, int tile, void* y) {
  return guarded([&] {
    with_type(dtype, [&](auto* tag) {
      using T = CNNFAST_T;
      const cnnfast::Conv2dProblem p = conv_problem(sizes);
      if (!cnnfast::cuda::mma_forward_supported(p)) throw std::invalid_argument("mma forward: unsupported problem");
      std::vector<int4> work((cnnfast::cuda::mma_forward_workspace<T>(p, nhwc != 0, kSmCount, tile) + 15) / 16);
      cnnfast::cuda::conv2d_mma_forward(p, nhwc != 0, static_cast<const T*>(x), static_cast<const T*>(w),
                                        static_cast<const T*>(bias), relu != 0, static_cast<T*>(y), work.data(),
                                        kSmCount, tile, nullptr);
    });
  });
}

// The split-K plan of the mma forward (dtype, problem, tile id, SM count): the splits (1: none).
int cnnfast_conv2d_mma_splits(int dtype, const long long* sizes, int tile, int sm_count) {
  int splits = 1;
  with_type(dtype, [&](auto* tag) {
    using T = CNNFAST_T;
    const cnnfast::Conv2dProblem p = conv_problem(sizes);
    const int64_t M = p.N * p.P * p.Q;
    splits = cnnfast::cuda::mma_split_plan(M, p.K, cnnfast::cuda::mma_slices<T>(p, tile), tile, sm_count).splits;
  });
  return splits;
}

// The tile the mma forward picks for an M x K output on sm_count SMs; ctas and waves (x1000) out.
int cnnfast_conv2d_mma_choice(long long M, long long K, int sm_count, long long* ctas, long long* waves_x1000) {
  const cnnfast::cuda::MmaChoice c = cnnfast::cuda::mma_forward_choice(M, K, sm_count);
  *ctas = c.ctas;
  *waves_x1000 = static_cast<long long>(c.waves * 1000 + 0.5);
  return c.tile;
}

int cnnfast_conv2d_grad_input(int dtype, const long long* sizes, int nhwc, const void* dy, const void* relu_out,
                              const void* w, int tf32, void* dx) {
  return guarded([&] {
    with_type(dtype, [&](auto* tag) {
      using T = CNNFAST_T;
      cnnfast::cuda::conv2d_grad_input(conv_problem(sizes), nhwc != 0, static_cast<const T*>(dy),
                                       static_cast<const T*>(relu_out), static_cast<const T*>(w), tf32 != 0,
                                       static_cast<T*>(dx), nullptr);
    });
  });
}

long long cnnfast_conv2d_wgrad_workspace(const long long* sizes) {
  return cnnfast::cuda::conv_wgrad_workspace(conv_problem(sizes));
}

long long cnnfast_conv2d_bias_workspace(const long long* sizes) {
  const cnnfast::Conv2dProblem p = conv_problem(sizes);
  return cnnfast::cuda::pixel_splits(p) * p.K;
}

int cnnfast_conv2d_grad_weight(int dtype, const long long* sizes, int nhwc, const void* dy, const void* relu_out,
                               const void* x, int tf32, void* dw, float* workspace) {
  return guarded([&] {
    with_type(dtype, [&](auto* tag) {
      using T = CNNFAST_T;
      cnnfast::cuda::conv2d_grad_weight(conv_problem(sizes), nhwc != 0, static_cast<const T*>(dy),
                                        static_cast<const T*>(relu_out), static_cast<const T*>(x), tf32 != 0,
                                        static_cast<T*>(dw), workspace, nullptr);
    });
  });
}

int cnnfast_conv2d_grad_bias(int dtype, const long long* sizes, int nhwc, const void* dy, const void* relu_out,
                             void* db, float* workspace) {
  return guarded([&] {
    with_type(dtype, [&](auto* tag) {
      using T = CNNFAST_T;
      cnnfast::cuda::conv2d_grad_bias(conv_problem(sizes), nhwc != 0, static_cast<const T*>(dy),
                                      static_cast<const T*>(relu_out), static_cast<T*>(db), workspace, nullptr);
    });
  });
}

}  // extern "C"
