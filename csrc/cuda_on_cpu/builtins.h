// cuda_on_cpu, one part of cuda_on_cpu.h (include that header, not this one): the CUDA built-ins as
// kernels call them: threadIdx and the other built-in variables, __syncthreads and the warp
// functions (recording their call site for diagnostics), atomics, __trap, clock64 and the fences.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

// ---- Built-in variables -----------------------------------------------------------------------
#define threadIdx (static_cast<const uint3&>(::cuda_on_cpu::detail::g_current->tid))
#define blockIdx (static_cast<const uint3&>(::cuda_on_cpu::detail::g_block_idx))
#define blockDim (static_cast<const dim3&>(::cuda_on_cpu::detail::g_block_dim))
#define gridDim (static_cast<const dim3&>(::cuda_on_cpu::detail::g_grid_dim))
constexpr int warpSize = 32;

// Dynamic shared memory: CUDA_DYNAMIC_SHARED(float, smem); declares `float* smem` (see launch.cuh).
#define CUDA_ON_CPU_DYNAMIC_SHARED(T, name) \
  T* name = reinterpret_cast<T*>(::cuda_on_cpu::detail::dynamic_shared())

// ---- Barriers and warp collectives (the call site is recorded for diagnostics) ---------------
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::cuda_on_cpu::detail::syncthreads(file, line);
}

inline int __syncthreads_count(int predicate, const char* file = __builtin_FILE(),
                               int line = __builtin_LINE()) {
  return static_cast<int>(::cuda_on_cpu::detail::syncthreads(file, line, predicate));
}
inline int __syncthreads_and(int predicate, const char* file = __builtin_FILE(),
                             int line = __builtin_LINE()) {
  return ::cuda_on_cpu::detail::syncthreads(file, line, predicate) ==
         ::cuda_on_cpu::detail::g_launch->nthreads;
}
inline int __syncthreads_or(int predicate, const char* file = __builtin_FILE(),
                            int line = __builtin_LINE()) {
  return ::cuda_on_cpu::detail::syncthreads(file, line, predicate) != 0;
}

inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  ::cuda_on_cpu::detail::warp_collective(::cuda_on_cpu::detail::WarpOp::syncwarp, mask, 0, 0, 32,
                                         file, line);
}

namespace cuda_on_cpu {
namespace detail {
template <class T>
uint64_t to_bits(const T& v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                "warp shuffles move values of at most 8 bytes");
  uint64_t b = 0;
  std::memcpy(&b, static_cast<const void*>(&v), sizeof(T));
  return b;
}
template <class T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(static_cast<void*>(&v), &b, sizeof(T));
  return v;
}
template <class T>
T shuffle(WarpOp op, unsigned mask, const T& v, int arg, int width, const char* f, int l) {
  return from_bits<T>(warp_collective(op, mask, to_bits(v), arg, width, f, l));
}
}  // namespace detail
}  // namespace cuda_on_cpu

template <class T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32,
              const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::cuda_on_cpu::detail::shuffle(::cuda_on_cpu::detail::WarpOp::shfl, mask, var, src_lane,
                                        width, file, line);
}
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32,
                 const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::cuda_on_cpu::detail::shuffle(::cuda_on_cpu::detail::WarpOp::shfl_up, mask, var,
                                        static_cast<int>(delta), width, file, line);
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32,
                   const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::cuda_on_cpu::detail::shuffle(::cuda_on_cpu::detail::WarpOp::shfl_down, mask, var,
                                        static_cast<int>(delta), width, file, line);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32,
                  const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::cuda_on_cpu::detail::shuffle(::cuda_on_cpu::detail::WarpOp::shfl_xor, mask, var,
                                        lane_mask, width, file, line);
}
inline unsigned __ballot_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  return static_cast<unsigned>(::cuda_on_cpu::detail::warp_collective(
      ::cuda_on_cpu::detail::WarpOp::ballot, mask, predicate != 0, 0, 32, file, line));
}
inline int __any_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
  return static_cast<int>(::cuda_on_cpu::detail::warp_collective(
      ::cuda_on_cpu::detail::WarpOp::any, mask, predicate != 0, 0, 32, file, line));
}
inline int __all_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
  return static_cast<int>(::cuda_on_cpu::detail::warp_collective(
      ::cuda_on_cpu::detail::WarpOp::all, mask, predicate != 0, 0, 32, file, line));
}
inline unsigned __activemask() {  // every live lane of the warp (the CPU has no divergence mask)
  const auto* f = ::cuda_on_cpu::detail::g_current;
  const unsigned base = f->linear - f->linear % 32;
  unsigned m = 0;
  for (unsigned l = 0; l < 32; ++l)
    if (base + l < ::cuda_on_cpu::detail::g_launch->nthreads &&
        ::cuda_on_cpu::detail::g_launch->fibers[base + l].state != ::cuda_on_cpu::detail::State::done)
      m |= 1u << l;
  return m;
}

// ---- Atomics (fibers of one OS thread never interleave inside one of these) -------------------
inline int atomicAdd(int* a, int v) { int o = *a; *a = o + v; return o; }
inline unsigned atomicAdd(unsigned* a, unsigned v) { unsigned o = *a; *a = o + v; return o; }
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
  unsigned long long o = *a; *a = o + v; return o;
}
inline float atomicAdd(float* a, float v) { float o = *a; *a = o + v; return o; }
inline double atomicAdd(double* a, double v) { double o = *a; *a = o + v; return o; }
inline __half atomicAdd(__half* a, __half v) {
  __half o = *a; *a = __float2half_rn(__half2float(o) + __half2float(v)); return o;
}
inline __nv_bfloat16 atomicAdd(__nv_bfloat16* a, __nv_bfloat16 v) {
  __nv_bfloat16 o = *a; *a = __float2bfloat16_rn(__bfloat162float(o) + __bfloat162float(v)); return o;
}
inline int atomicSub(int* a, int v) { int o = *a; *a = o - v; return o; }
inline unsigned atomicSub(unsigned* a, unsigned v) { unsigned o = *a; *a = o - v; return o; }
inline int atomicMax(int* a, int v) { int o = *a; if (v > o) *a = v; return o; }
inline unsigned atomicMax(unsigned* a, unsigned v) { unsigned o = *a; if (v > o) *a = v; return o; }
inline long long atomicMax(long long* a, long long v) { long long o = *a; if (v > o) *a = v; return o; }
inline unsigned long long atomicMax(unsigned long long* a, unsigned long long v) {
  unsigned long long o = *a; if (v > o) *a = v; return o;
}
inline int atomicMin(int* a, int v) { int o = *a; if (v < o) *a = v; return o; }
inline unsigned atomicMin(unsigned* a, unsigned v) { unsigned o = *a; if (v < o) *a = v; return o; }
inline int atomicCAS(int* a, int cmp, int v) { int o = *a; if (o == cmp) *a = v; return o; }
inline unsigned atomicCAS(unsigned* a, unsigned cmp, unsigned v) { unsigned o = *a; if (o == cmp) *a = v; return o; }
inline unsigned long long atomicCAS(unsigned long long* a, unsigned long long cmp, unsigned long long v) {
  unsigned long long o = *a; if (o == cmp) *a = v; return o;
}
inline unsigned short atomicCAS(unsigned short* a, unsigned short cmp, unsigned short v) {
  unsigned short o = *a; if (o == cmp) *a = v; return o;
}
inline int atomicExch(int* a, int v) { int o = *a; *a = v; return o; }
inline unsigned atomicExch(unsigned* a, unsigned v) { unsigned o = *a; *a = v; return o; }
inline unsigned long long atomicExch(unsigned long long* a, unsigned long long v) {
  unsigned long long o = *a; *a = v; return o;
}
inline float atomicExch(float* a, float v) { float o = *a; *a = v; return o; }
inline int atomicAnd(int* a, int v) { int o = *a; *a = o & v; return o; }
inline unsigned atomicAnd(unsigned* a, unsigned v) { unsigned o = *a; *a = o & v; return o; }
inline int atomicOr(int* a, int v) { int o = *a; *a = o | v; return o; }
inline unsigned atomicOr(unsigned* a, unsigned v) { unsigned o = *a; *a = o | v; return o; }

// __trap() aborts the launch (on a GPU it kills the kernel with an error).
[[noreturn]] inline void __trap(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::cuda_on_cpu::detail::fail_in_fiber("__trap() at " + ::cuda_on_cpu::detail::site(file, line) + ", " +
                                       ::cuda_on_cpu::detail::where(*::cuda_on_cpu::detail::g_current));
}
inline long long clock64() {  // a monotonic cycle-like counter (nanoseconds here)
  return static_cast<long long>(std::chrono::steady_clock::now().time_since_epoch().count());
}
inline void __nanosleep(unsigned) {}

inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
