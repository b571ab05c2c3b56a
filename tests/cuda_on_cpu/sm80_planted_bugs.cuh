// Misuses of the sm_80 primitives that a GPU would fault on or compute wrongly, each of which the
// harness must report (tests/test_cuda_on_cpu_sm80.py). One warp of 32 threads; `which` picks the bug.
#pragma once

#include <cstdint>

#include "sm80_kernels.cuh"

namespace cnnfast_test {
namespace sm80_planted {

namespace s80 = cnnfast::cuda::sm80;

enum Bug : int {
  kMisalignedLdmatrix = 0,  // a row address 8 bytes past a 16-byte boundary
  kLdmatrixFromGlobal = 1,  // row addresses in global memory
  kLaneSkipsMma = 2,        // lane 31 returns before the warp's mma.sync
  kMisalignedCpAsync = 3,   // a 16-byte copy from a source 4 bytes off
  kCpAsyncToGlobal = 4,     // a copy whose destination is not shared memory
  kBugs = 5
};

__global__ void sm80_planted_kernel(int which, const float* in, float* out) {
  __shared__ __align__(16) uint16_t tile[32 * 8 + 8];
  const int lane = threadIdx.x;
  for (int i = lane; i < 32 * 8 + 8; i += 32) tile[i] = static_cast<uint16_t>(i);
  __syncwarp();
  uint32_t r[4] = {0u, 0u, 0u, 0u};
  if (which == kMisalignedLdmatrix) s80::ldmatrix<4>(r, tile + 8 * lane + 4);
  if (which == kLdmatrixFromGlobal) s80::ldmatrix<4>(r, in + 4 * lane);
  if (which == kLaneSkipsMma) {
    if (lane == 31) return;
    const uint32_t b[2] = {0u, 0u};
    const float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    float d[4];
    s80::mma<s80::MmaType::f16>(d, r, b, c);
    out[lane] = d[0];
  }
  if (which == kMisalignedCpAsync) {
    s80::cp_async<16>(tile + 8 * lane, in + 4 * lane + 1, 16);
    s80::cp_async_commit();
    s80::cp_async_wait<0>();
  }
  if (which == kCpAsyncToGlobal) {
    s80::cp_async<16>(out + 4 * lane, in + 4 * lane, 16);
    s80::cp_async_commit();
    s80::cp_async_wait<0>();
  }
  out[lane] = static_cast<float>(r[0]);
}

template <class Stream>
void sm80_planted(int which, const float* in, float* out, Stream stream) {
  CNNFAST_LAUNCH((cnnfast::cuda::LaunchConfig{dim3(1), dim3(32), 0}), stream, sm80_planted_kernel)(which, in, out);
}

}  // namespace sm80_planted
}  // namespace cnnfast_test
