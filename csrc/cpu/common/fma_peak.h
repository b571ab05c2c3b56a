// The CPU's peak arithmetic rate on a SIMD path, measured by a multiply-add throughput probe of
// cnnfast's own. The bench (cnnfast/bench/timing.py) takes it as the compute roof of %peak and of the
// roofline floors: a vendor GEMM's rate depends on the code path the vendor picked for this CPU, the
// probe's only on the cores. Framework-free.
//
// Each thread of parallel_for runs kFmaPeakChains independent chains acc = acc * m + a on vectors of
// the path's width, `iterations` steps: enough chains in flight to hide the multiply-add latency on
// every port (a latency of 4 cycles on 2 FMA ports needs 8), and few enough to stay in registers
// (12 accumulators and 2 constants fit the 16 registers of AVX2 and of SSE2). AVX-512 and AVX2 use
// FMA instructions (fma_peak_avx512.cpp, fma_peak_avx2.cpp). The portable path is GNU C++ vectors of
// 16 bytes, which the compiler lowers to the baseline ISA's SIMD as it vectorizes the portable
// kernels' plain loops (on x86-64: SSE2, a multiply and an add, no fused instruction), so its figure
// is the roof of that code, not of scalar code. Every path counts 2 FLOPs per lane and step.
#pragma once

#include <cstdint>

#include "cpu/common/capability.h"

namespace cnnfast::cpu {

constexpr int kFmaPeakChains = 12;

// Lanes of one chain: a zmm (AVX-512), a ymm (AVX2) or 16 bytes (portable) of T.
template <typename T>
constexpr int fma_peak_lanes(Capability cap) {
  return (cap == Capability::kAvx512 ? 64 : cap == Capability::kAvx2 ? 32 : 16) / static_cast<int>(sizeof(T));
}

struct FmaPeak {
  int64_t flops;    // 2 * iterations * kFmaPeakChains * lanes per thread, times threads
  double seconds;   // wall time of the whole parallel region
  int threads;      // parallel_for's items (num_threads()), one per thread
  int lanes;        // fma_peak_lanes<T>(cap)
  double checksum;  // the sum of every lane of every chain; the chains run with m = a = 1 from 0, so
                    // it is flops / 2 while the lanes stay exact (iterations <= 2^24 in float)
};

// One run of the probe for T (float or double) on `cap`, which must be at most
// supported_capability(), on num_threads() threads.
template <typename T>
FmaPeak fma_peak(Capability cap, int64_t iterations);

// One thread's chains on a path, from 0: the sum of their lanes. fma_peak_simd.inc compiled for
// AVX-512 (fma_peak_avx512.cpp), AVX2 (fma_peak_avx2.cpp) and the baseline ISA (fma_peak.cpp).
struct FmaChains {
  double (*f32)(int64_t iterations, float m, float a);
  double (*f64)(int64_t iterations, double m, double a);
};
extern const FmaChains kFmaChainsAvx512, kFmaChainsAvx2, kFmaChainsPortable;

}  // namespace cnnfast::cpu
