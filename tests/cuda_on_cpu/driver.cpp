// Standalone driver of the harness tests, for the AddressSanitizer build (and the guard page):
//   driver correct              run every correct kernel on exactly-sized heap buffers, check them
//   driver global_oob_read      planted bugs that only AddressSanitizer (or a signal) shows
//   driver shared_oob_write
//   driver static_shared_oob_write
//   driver static_shared_oob_template_write
//   driver misaligned_float4
//   driver stack_overflow
// Exit status 0 when the kernels ran and matched, 1 on a mismatch, 2 on a KernelError.
#include "entry_points.cpp"

#include <cstdio>
#include <vector>

namespace {

// A fiber stack overflow: the guard page below each thread's stack stops it.
__device__ int deep(volatile int* p, int depth) {
  volatile char frame[4096];
  frame[0] = static_cast<char>(depth);
  return depth == 0 ? *p : deep(p, depth - 1) + frame[0];
}
__global__ void stack_overflow_kernel(int* out) { out[threadIdx.x] = deep(out, 1 << 20); }

// Static __shared__ writes past the array, in a plain and in a template kernel.
__global__ void static_shared_oob_kernel(float* y, int extra) {
  __shared__ float s[32];
  s[threadIdx.x + extra] = 1.0f;
  __syncthreads();
  y[threadIdx.x] = s[threadIdx.x];
}
template <int TILE>
__global__ void static_shared_oob_template_kernel(float* y, int extra) {
  __shared__ float s[TILE][TILE];
  s[TILE - 1][threadIdx.x + extra] = 1.0f;
  __syncthreads();
  y[threadIdx.x] = s[0][threadIdx.x];
}

int failures = 0;
void expect(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "ok" : "MISMATCH", what);
  if (!ok) ++failures;
}
void check(int rc) {
  if (rc != 0) {
    std::fprintf(stderr, "%s\n", coc_last_error());
    std::exit(2);
  }
}

int run_correct() {
  for (int order = 0; order < 3; ++order) {
    coc_set_order(order, 11);
    {  // tiled matmul against the same fmaf order on the host
      const int M = 33, N = 20, K = 37;
      float* A = new float[M * K];
      float* B = new float[K * N];
      float* C = new float[M * N];
      for (int i = 0; i < M * K; ++i) A[i] = float((i * 7) % 11) - 5.0f;
      for (int i = 0; i < K * N; ++i) B[i] = float((i * 5) % 13) - 6.0f;
      check(coc_tiled_matmul(A, B, C, M, N, K));
      bool ok = true;
      for (int r = 0; r < M; ++r)
        for (int c = 0; c < N; ++c) {
          float acc = 0.0f;
          for (int k = 0; k < K; ++k) acc = std::fma(A[r * K + k], B[k * N + c], acc);
          ok &= acc == C[r * N + c];
        }
      expect(ok, "tiled_matmul");
      delete[] A; delete[] B; delete[] C;
    }
    {  // warp sums of integers (exact)
      const int n = 1000, threads = 128, blocks = (n + threads - 1) / threads;
      float* x = new float[n];
      float* s = new float[blocks];
      for (int i = 0; i < n; ++i) x[i] = float(i % 17);
      check(coc_warp_sum(x, s, n, threads));
      bool ok = true;
      for (int b = 0; b < blocks; ++b) {
        float ref = 0.0f;
        for (int i = b * threads; i < std::min(n, (b + 1) * threads); ++i) ref += x[i];
        ok &= ref == s[b];
      }
      expect(ok, "warp_sum");
      delete[] x; delete[] s;
    }
    {  // dynamic shared memory
      const int n = 300, threads = 64;
      float* x = new float[n];
      float* y = new float[n];
      for (int i = 0; i < n; ++i) x[i] = float(i);
      check(coc_block_reverse(x, y, n, threads));
      bool ok = true;
      for (int i = 0; i < n; ++i) {
        const int start = i / threads * threads, count = std::min(threads, n - start);
        ok &= y[i] == x[start + count - 1 - (i - start)];
      }
      expect(ok, "block_reverse");
      delete[] x; delete[] y;
    }
    {  // collectives and atomics run clean
      int* out = new int[2 * 64 * 12];
      check(coc_collectives(out, 2, 64));
      delete[] out;
      const int n = 200;
      int* keys = new int[n];
      for (int i = 0; i < n; ++i) keys[i] = i % 10;
      int* hist = new int[10]();
      int* claimed = new int[10];
      for (int i = 0; i < 10; ++i) claimed[i] = -1;
      float fsum = 0; double dsum = 0; __half hsum = __float2half(0.0f); int imax = -1, last = 0;
      check(coc_atomics(keys, n, hist, &fsum, &dsum, &hsum, &imax, claimed, &last));
      expect(hist[3] == 20 && fsum == 100.0f && dsum == 50.0 && __half2float(hsum) == 200.0f &&
                 imax == 9 && claimed[4] % 10 == 4 && last == 7, "atomics");
      delete[] keys; delete[] hist; delete[] claimed;
    }
    {  // WMMA, three input types, against the host product (exact for small integers)
      const int M = 32, N = 64, K = 32;
      std::vector<float> a(M * K), b(K * N);
      for (int i = 0; i < M * K; ++i) a[i] = float(i % 5) - 2.0f;
      for (int i = 0; i < K * N; ++i) b[i] = float(i % 7) - 3.0f;
      std::vector<float> ref(M * N, 0.0f);
      for (int r = 0; r < M; ++r)
        for (int c = 0; c < N; ++c)
          for (int k = 0; k < K; ++k) ref[r * N + c] += a[r * K + k] * b[k * N + c];
      // WMMA wants 256-bit aligned matrices (new[] gives 16 bytes).
      auto* ah = static_cast<__half*>(std::aligned_alloc(64, M * K * sizeof(__half)));
      auto* bh = static_cast<__half*>(std::aligned_alloc(64, K * N * sizeof(__half)));
      auto* ab = static_cast<__nv_bfloat16*>(std::aligned_alloc(64, M * K * sizeof(__nv_bfloat16)));
      auto* bb = static_cast<__nv_bfloat16*>(std::aligned_alloc(64, K * N * sizeof(__nv_bfloat16)));
      auto* af = static_cast<float*>(std::aligned_alloc(64, M * K * sizeof(float)));
      auto* bf = static_cast<float*>(std::aligned_alloc(64, K * N * sizeof(float)));
      for (int i = 0; i < M * K; ++i) { ah[i] = __float2half(a[i]); ab[i] = __float2bfloat16(a[i]); af[i] = a[i]; }
      for (int i = 0; i < K * N; ++i) { bh[i] = __float2half(b[i]); bb[i] = __float2bfloat16(b[i]); bf[i] = b[i]; }
      auto* C = static_cast<float*>(std::aligned_alloc(64, M * N * sizeof(float)));
      const void* As[3] = {ah, ab, af};
      const void* Bs[3] = {bh, bb, bf};
      const char* names[3] = {"wmma_half", "wmma_bf16", "wmma_tf32"};
      for (int d = 0; d < 3; ++d) {
        check(coc_wmma_gemm(d, As[d], Bs[d], C, M, N, K));
        bool ok = true;
        for (int i = 0; i < M * N; ++i) ok &= C[i] == ref[i];
        expect(ok, names[d]);
      }
      for (void* p : {(void*)ah, (void*)bh, (void*)ab, (void*)bb, (void*)af, (void*)bf, (void*)C}) std::free(p);
    }
    {  // conv2d with padding, stride, groups: exact-size buffers
      const long long sz[14] = {2, 4, 9, 8, 6, 3, 3, 2, 1, 1, 1, 1, 1, 2};
      const int P = (9 + 2 - 3) / 2 + 1, Q = (8 + 2 - 3) / 1 + 1;
      float* x = new float[2 * 4 * 9 * 8];
      float* w = new float[6 * 2 * 3 * 3];
      float* bias = new float[6];
      float* y = new float[2 * 6 * P * Q];
      for (int i = 0; i < 2 * 4 * 9 * 8; ++i) x[i] = float(i % 7) - 3.0f;
      for (int i = 0; i < 6 * 2 * 3 * 3; ++i) w[i] = float(i % 5) - 2.0f;
      for (int i = 0; i < 6; ++i) bias[i] = float(i);
      check(coc_conv2d_direct(x, w, bias, y, sz));
      expect(y[0] == y[0], "conv2d_direct");
      delete[] x; delete[] w; delete[] bias; delete[] y;
    }
  }
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s correct|global_oob_read|shared_oob_write|static_shared_oob_write|stack_overflow\n", argv[0]);
    return 64;
  }
  const std::string what = argv[1];
  if (what == "correct") return run_correct();
  const int n = 100, threads = 64;
  float* x = new float[n];
  float* y = new float[n];
  for (int i = 0; i < n; ++i) x[i] = float(i);
  if (what == "global_oob_read" || what == "shared_oob_write") {
    check(coc_planted(what.c_str(), x, y, n, threads));
  } else if (what == "static_shared_oob_write") {
    check(guarded([&] {
      CNNFAST_LAUNCH((cnnfast::cuda::LaunchConfig{dim3(1), dim3(32), 0}), nullptr, static_shared_oob_kernel)(y, 1);
    }));
  } else if (what == "static_shared_oob_template_write") {
    check(guarded([&] {
      CNNFAST_LAUNCH((cnnfast::cuda::LaunchConfig{dim3(1), dim3(16), 0}), nullptr, static_shared_oob_template_kernel<16>)(y, 1);
    }));
  } else if (what == "misaligned_float4") {
    // float4 loads from a pointer 4 bytes past a 16-byte boundary: a GPU faults.
    int counts[6];
    auto* x4 = static_cast<float*>(std::aligned_alloc(64, 128 * sizeof(float)));
    auto* y4 = static_cast<float*>(std::aligned_alloc(64, 128 * sizeof(float)));
    for (int i = 0; i < 128; ++i) x4[i] = float(i);
    check(coc_vector_copy(x4 + 1, y4, 16, counts));
  } else if (what == "stack_overflow") {
    int* out = new int[32]();
    check(guarded([&] {
      CNNFAST_LAUNCH((cnnfast::cuda::LaunchConfig{dim3(1), dim3(32), 0}), nullptr, stack_overflow_kernel)(out);
    }));
  } else {
    std::fprintf(stderr, "unknown case %s\n", what.c_str());
    return 64;
  }
  std::printf("ran without a report\n");
  delete[] x;
  delete[] y;
  return 0;
}
