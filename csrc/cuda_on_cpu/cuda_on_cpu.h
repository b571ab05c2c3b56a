// cuda_on_cpu: run unchanged CUDA kernel source (.cuh files without torch headers) on the CPU,
// with CUDA's execution model, so tests can check every kernel without a GPU.
//
// Compile a translation unit with g++ (not nvcc), include this header first, then the kernel
// .cuh files; add the CUDA toolkit's include directory to the include path (for vector_types.h,
// cuda_fp16.h and cuda_bf16.h, whose host implementations give the exact conversions), and
// -Wno-unknown-pragmas for the kernels' `#pragma unroll` (cnnfast/_cuda_on_cpu.py does both).
//
// Model: each CUDA thread of a block is a fiber (ucontext) with its own stack and guard pages;
// blocks run one after another. A fiber runs until it reaches __syncthreads, a warp collective
// or its end; only then does the scheduler switch to the next thread, in the launch's thread
// order (forward, reversed, or shuffled by a seed, anew after every barrier). Blocks run in the
// same kind of order.
// Misuse aborts the launch with a cuda_on_cpu::KernelError naming the kernel, the call site,
// the block and the thread: threads at different __syncthreads, a thread that exited while
// others wait at one, a lane named in a warp collective's mask that never arrives, a mask that
// does not name the calling lane, a shuffle reading a lane outside its mask, an out-of-bounds
// write around dynamic shared memory, a misaligned WMMA matrix, a fiber stack overflow. Build
// with -fsanitize=address,alignment to have the sanitizers catch out-of-bounds reads and writes
// of global, dynamic shared and kernels' static shared memory, and misaligned vector accesses.
//
// The harness is split by concern into parts that this header includes in order (never include a
// part on its own: each needs what comes before it): fiber.h (CUDA threads as fibers, their stacks,
// the launch record), shared_memory.h (dynamic and static shared memory), collectives.h
// (__syncthreads and warp collectives as the scheduler sees them), scheduler.h (blocks, grids,
// deadlock diagnosis, the launch object), builtins.h (threadIdx, __syncthreads, __shfl_*_sync,
// atomics, ... as kernels call them) and intrinsics.h (cached loads, math intrinsics). Beside them:
// wmma.h (nvcuda::wmma), c_api.h (entry-point helpers for ctypes).
//
// See README.md, "CUDA kernels on the CPU", for the launch convention and what a pass proves.
#pragma once

#define CNNFAST_CUDA_ON_CPU 1  // kernels may test this; __CUDA_ARCH__ is not defined here

#if defined(__CUDACC__)
#error "cuda_on_cpu.h is for the CPU build (g++); under nvcc include the kernel .cuh directly"
#endif

// Execution-space keywords: defined before the CUDA headers, which then keep these.
#undef __host__
#undef __device__
#undef __global__
#undef __constant__
#undef __managed__
#undef __grid_constant__
#undef __noinline__
#undef __forceinline__
#undef __shared__
#undef __launch_bounds__
#define __host__
#define __device__
// Kernels get internal linkage: GCC's AddressSanitizer then instruments their __shared__ statics,
// also in templates (it skips the comdat statics of inline and template functions). A kernel is
// defined in the .cuh it is launched from (no separate declaration in another translation unit).
#define __global__ static __attribute__((unused))
#define __constant__
#define __managed__
#define __grid_constant__
#define __launch_bounds__(...)
#define __noinline__ __attribute__((noinline))
#define __forceinline__ inline __attribute__((always_inline))
// Static shared memory: one storage per declaration, shared by the fibers of the running block
// (blocks run one after another). Arrays declared in kernels are refilled with garbage before
// every block (see refill_static_shared) and bounds-checked by AddressSanitizer (internal
// linkage, see __global__); those of inline or template __device__ helpers are neither (GCC
// does not instrument their comdat statics).
#define __shared__ static

#include <vector_types.h>  // dim3, uint3, float4, int4, ... with the alignment CUDA gives them
#include <cuda_fp16.h>     // __half and its conversions (host implementations)
#include <cuda_bf16.h>     // __nv_bfloat16 and its conversions (host implementations)

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#if defined(__SANITIZE_ADDRESS__)
#define CUDA_ON_CPU_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#else
#define CUDA_ON_CPU_ASAN 0
#endif

namespace cuda_on_cpu {

// Order in which the scheduler runs the runnable threads of a block between two barriers.
enum class Order : int { forward = 0, reversed = 1, shuffled = 2 };

struct Options {
  Order order = Order::forward;
  uint64_t seed = 0;                 // for Order::shuffled
  size_t stack_bytes = 256 * 1024;   // per CUDA thread (doubled under AddressSanitizer)
};

// The options of the launches that follow (one process-wide setting; launches are serialized).
inline Options& options() {
  static Options o;
  return o;
}

// A launch aborted by misuse: what(), kernel name, call site, block and thread are in the text.
struct KernelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace cuda_on_cpu

#include "fiber.h"
#include "shared_memory.h"
#include "collectives.h"
#include "scheduler.h"
#include "builtins.h"
#include "intrinsics.h"
