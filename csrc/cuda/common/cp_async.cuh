// Asynchronous global -> shared copies of sm_80 and later (cp.async): one thread copies 4, 8 or 16
// bytes; bytes past src_bytes (0 for a padding tap or an edge) are filled with zeros and not read.
// Copies are grouped by commit(); wait<N>() blocks until at most N of this thread's committed groups
// are still in flight (then a __syncthreads makes the landed data visible to the block).
//   .cg (16 bytes only) caches in L2 only: streaming operands; .ca (4, 8, 16) also in L1.
// Under nvcc these are inline PTX; under g++ the CPU harness's emulation (csrc/cuda_on_cpu/sm80.h),
// in which a copy lands only when a wait retires its group: shared memory it targets reads 0xFF
// until then, so a missing or too lenient wait shows as wrong results, as it would (sometimes) on a
// GPU. Both sides check what the PTX requires: destination in shared memory and both addresses
// aligned to the copy size.
#pragma once

#include <cstdint>

#include "mma.cuh"

namespace cnnfast {
namespace cuda {
namespace sm80 {

// Copy Bytes from global src to shared dst, of which the first src_bytes are read (0 <= src_bytes
// <= Bytes) and the rest zero-filled. L2Only: .cg (Bytes == 16), else .ca.
template <int Bytes, bool L2Only = (Bytes == 16)>
CNNFAST_WARP_PRIMITIVE void cp_async(void* dst, const void* src, int src_bytes CNNFAST_SITE_PARAMS) {
  static_assert(Bytes == 4 || Bytes == 8 || Bytes == 16, "cp.async copies 4, 8 or 16 bytes");
  static_assert(!L2Only || Bytes == 16, "cp.async.cg copies 16 bytes");
#if defined(__CUDACC__)
  const uint32_t d = shared_address(dst);
  if constexpr (L2Only)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(src_bytes));
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(d), "l"(src), "n"(Bytes),
                 "r"(src_bytes));
#else
  ::cuda_on_cpu::sm80::cp_async(dst, src, Bytes, src_bytes, L2Only, file, line);
#endif
}

// Copy all Bytes when pred holds, else fill dst with zeros (src is not read).
template <int Bytes, bool L2Only = (Bytes == 16)>
CNNFAST_WARP_PRIMITIVE void cp_async_zfill(void* dst, const void* src, bool pred CNNFAST_SITE_PARAMS) {
  cp_async<Bytes, L2Only>(dst, src, pred ? Bytes : 0 CNNFAST_SITE_ARGS);
}

// Close this thread's current group of copies (cp.async.commit_group).
CNNFAST_WARP_PRIMITIVE void cp_async_commit(CNNFAST_SITE_PARAMS_ONLY) {
#if defined(__CUDACC__)
  asm volatile("cp.async.commit_group;\n" ::);
#else
  ::cuda_on_cpu::sm80::cp_async_commit(file, line);
#endif
}

// Wait until at most N of this thread's committed groups are in flight (cp.async.wait_group N).
template <int N>
CNNFAST_WARP_PRIMITIVE void cp_async_wait(CNNFAST_SITE_PARAMS_ONLY) {
  static_assert(N >= 0 && N < 8, "cp.async.wait_group N: 0 to 7");
#if defined(__CUDACC__)
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#else
  ::cuda_on_cpu::sm80::cp_async_wait(N, file, line);
#endif
}

}  // namespace sm80
}  // namespace cuda
}  // namespace cnnfast
