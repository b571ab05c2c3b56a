// extern "C" entry points over the CPU max_pool2d's images-per-vector pooling of each ISA
// (cpu/max_pool2d/max_pool2d_simd.h), for tests/test_max_pool2d.py. The kernels are framework-free, so
// they build here with g++ alone: parallel_for runs its range in chunks of one plane, in the order
// set_order chose (forward or reversed), standing in for ATen's thread pool.
#include <cstdint>

#include "cpu/common/parallel.h"
#include "cpu/max_pool2d/max_pool2d_simd.h"

namespace cnnfast::cpu {

static int g_reversed = 0;

void parallel_for_erased(int64_t begin, int64_t end, int64_t, RangeFn fn, void* context) {
  for (int64_t i = 0; i < end - begin; ++i) {
    const int64_t c = g_reversed ? end - 1 - i : begin + i;
    fn(context, c, c + 1);
  }
}
int num_threads() { return 1; }

}  // namespace cnnfast::cpu

namespace {

// a: H, W, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, ceil_mode.
cnnfast::Pool2dProblem problem(const int64_t* a) {
  cnnfast::Pool2dProblem p;
  p.N = 1, p.C = 1, p.H = a[0], p.W = a[1];
  p.kernel_h = a[2], p.kernel_w = a[3], p.stride_h = a[4], p.stride_w = a[5];
  p.pad_h = a[6], p.pad_w = a[7], p.dilation_h = a[8], p.dilation_w = a[9], p.ceil_mode = a[10] != 0;
  p.compute_output_size();
  return p;
}

}  // namespace

extern "C" {

void set_order(int reversed) { cnnfast::cpu::g_reversed = reversed; }

// isa: 2 = AVX2, 3 = AVX-512. Returns the kernel's answer (1: done).
int pool_ipv(int isa, const int64_t* a, int64_t planes, const float* x, float* y, int32_t* idx) {
  const cnnfast::Pool2dProblem p = problem(a);
  return isa == 3 ? cnnfast::cpu::max_pool2d_ipv_avx512(p, planes, x, y, idx)
                  : cnnfast::cpu::max_pool2d_ipv_avx2(p, planes, x, y, idx);
}

int pool_backward_ipv(int isa, const int64_t* a, int64_t planes, const float* dy, const int32_t* idx, float* dx,
                      int64_t dx_plane, int64_t dx_row, int64_t dx_first) {
  const cnnfast::Pool2dProblem p = problem(a);
  return isa == 3 ? cnnfast::cpu::max_pool2d_backward_ipv_avx512(p, planes, dy, idx, dx, dx_plane, dx_row, dx_first)
                  : cnnfast::cpu::max_pool2d_backward_ipv_avx2(p, planes, dy, idx, dx, dx_plane, dx_row, dx_first);
}

}  // extern "C"
