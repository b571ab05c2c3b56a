// fma_peak.h's probe: the portable chains and the timed parallel region that runs a path's chains
// on every thread.
#include "cpu/common/fma_peak.h"

#include <chrono>
#include <type_traits>
#include <vector>

#include "cpu/common/parallel.h"

namespace cnnfast::cpu {
namespace fma_peak_portable_impl {
namespace {

// 16-byte GNU vectors: the baseline ISA's SIMD (SSE2 on x86-64, NEON on AArch64), or scalar code
// where the target has none; a multiply and an add (2 FLOPs a lane, as the fused paths count).
constexpr Capability kCapability = Capability::kDefault;
template <typename V>
inline V fused(V a, V b, V c) {
  return a * b + c;
}

#include "cpu/common/fma_peak_simd.inc"

}  // namespace
}  // namespace fma_peak_portable_impl

const FmaChains kFmaChainsPortable = fma_peak_portable_impl::kChains;

template <typename T>
FmaPeak fma_peak(Capability cap, int64_t iterations) {
  // m = a = 1 read through a volatile: neither value is known to the compiler.
  static volatile T one = T(1);
  const T m = one, a = one;
  const FmaChains& path = cap == Capability::kAvx512 ? kFmaChainsAvx512
                          : cap == Capability::kAvx2  ? kFmaChainsAvx2
                                                      : kFmaChainsPortable;
  double (*run)(int64_t, T, T) = nullptr;
  if constexpr (std::is_same_v<T, float>) {
    run = path.f32;
  } else {
    run = path.f64;
  }
  const int threads = num_threads();
  std::vector<double> sums(static_cast<size_t>(threads), 0.0);
  const auto start = std::chrono::steady_clock::now();
  parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) sums[static_cast<size_t>(t)] = run(iterations, m, a);
  });
  const auto stop = std::chrono::steady_clock::now();
  FmaPeak r;
  r.threads = threads;
  r.lanes = fma_peak_lanes<T>(cap);
  r.flops = 2 * iterations * kFmaPeakChains * r.lanes * threads;
  r.seconds = std::chrono::duration<double>(stop - start).count();
  r.checksum = 0.0;
  for (double s : sums) r.checksum += s;
  return r;
}

template FmaPeak fma_peak<float>(Capability, int64_t);
template FmaPeak fma_peak<double>(Capability, int64_t);

}  // namespace cnnfast::cpu
