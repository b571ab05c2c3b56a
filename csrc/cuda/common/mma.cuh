// Tensor-core warp primitives of sm_80 and later: mma.sync (m16n8k16 for float16 and bfloat16,
// m16n8k8 for TF32, float accumulation), ldmatrix (x1/x2/x4, with and without .trans) and shared
// memory loads and stores of one warp (lds/sts, 4 to 16 bytes per lane). Under nvcc they are inline
// PTX; under g++ they are the CPU harness's emulation (csrc/cuda_on_cpu/sm80.h), which checks what a
// GPU would get wrong (alignment, shared-memory addresses, every lane present) and counts the bank
// conflicts of each warp access.
//
// Fragment layouts are the PTX ISA's ("Matrix Fragments for mma.m16n8k16 / m16n8k8"): with
// g = lane / 4 and t = lane % 4,
//   m16n8k16 (.f16/.bf16): A 16x16 row-major, 4 registers of 2 elements: (g, 2t..2t+1),
//     (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..); B 16x8, 2 registers: (k 2t..2t+1, n g),
//     (k 2t+8.., n g); C/D 16x8 float: (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1).
//   m16n8k8 (.tf32): A 16x8, 4 registers of 1 element: (g, t), (g+8, t), (g, t+4), (g+8, t+4);
//     B 8x8: (k t, n g), (k t+4, n g); C/D as above.
// ldmatrix: lanes 8j..8j+7 give the row addresses (16 bytes each, 16-byte aligned, in shared memory)
// of matrix j; register j of lane l receives matrix j's elements (l/4, 2(l%4)) and (l/4, 2(l%4)+1),
// or with .trans (2(l%4), l/4) and (2(l%4)+1, l/4). So an operand stored in shared memory with the
// reduction index contiguous (A as rows of m, B as rows of n) loads without .trans, and one stored
// with m or n contiguous loads with it; the same holds for TF32's 32-bit elements (a 16-byte row is
// 4 of them, one per lane of a quad).
#pragma once

#include <cstdint>

#include "launch.cuh"

#if !defined(__CUDACC__)
#include "../../cuda_on_cpu/sm80.h"
#endif

#if defined(__CUDACC__)
#define CNNFAST_WARP_PRIMITIVE __device__ __forceinline__
#define CNNFAST_SITE_PARAMS
#define CNNFAST_SITE_PARAMS_ONLY
#define CNNFAST_SITE_ARGS
#else
#define CNNFAST_WARP_PRIMITIVE inline
// The harness reports the caller's file and line.
#define CNNFAST_SITE_PARAMS , const char *file = __builtin_FILE(), int line = __builtin_LINE()
#define CNNFAST_SITE_PARAMS_ONLY const char *file = __builtin_FILE(), int line = __builtin_LINE()
#define CNNFAST_SITE_ARGS , file, line
#endif

namespace cnnfast {
namespace cuda {
namespace sm80 {

// The element type of the tensor-core inputs.
enum class MmaType : int { f16 = 0, bf16 = 1, tf32 = 2 };

#if defined(__CUDACC__)
// A generic pointer to shared memory as the 32-bit shared-window address PTX takes.
__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
#endif

// d = a * b + c, m16n8k16, float16 inputs.
CNNFAST_WARP_PRIMITIVE void mma_m16n8k16_f16(float d[4], const uint32_t a[4], const uint32_t b[2],
                                             const float c[4] CNNFAST_SITE_PARAMS) {
#if defined(__CUDACC__)
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
        "f"(c[2]), "f"(c[3]));
#else
  ::cuda_on_cpu::sm80::mma(::cuda_on_cpu::sm80::Input::f16, 16, d, a, b, c, file, line);
#endif
}

// d = a * b + c, m16n8k16, bfloat16 inputs.
CNNFAST_WARP_PRIMITIVE void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2],
                                              const float c[4] CNNFAST_SITE_PARAMS) {
#if defined(__CUDACC__)
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
        "f"(c[2]), "f"(c[3]));
#else
  ::cuda_on_cpu::sm80::mma(::cuda_on_cpu::sm80::Input::bf16, 16, d, a, b, c, file, line);
#endif
}

// d = a * b + c, m16n8k8, TF32 inputs (float bit patterns; the tensor cores ignore the low 13 bits).
CNNFAST_WARP_PRIMITIVE void mma_m16n8k8_tf32(float d[4], const uint32_t a[4], const uint32_t b[2],
                                             const float c[4] CNNFAST_SITE_PARAMS) {
#if defined(__CUDACC__)
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
        "f"(c[2]), "f"(c[3]));
#else
  ::cuda_on_cpu::sm80::mma(::cuda_on_cpu::sm80::Input::tf32, 8, d, a, b, c, file, line);
#endif
}

// The mma of one input type: m16n8k16 for the half types, m16n8k8 for TF32.
template <MmaType Type>
CNNFAST_WARP_PRIMITIVE void mma(float d[4], const uint32_t a[4], const uint32_t b[2],
                                const float c[4] CNNFAST_SITE_PARAMS) {
  if constexpr (Type == MmaType::f16) mma_m16n8k16_f16(d, a, b, c CNNFAST_SITE_ARGS);
  else if constexpr (Type == MmaType::bf16) mma_m16n8k16_bf16(d, a, b, c CNNFAST_SITE_ARGS);
  else mma_m16n8k8_tf32(d, a, b, c CNNFAST_SITE_ARGS);
}

// Round a float to TF32 (nearest, ties away from zero: cvt.rna.tf32.f32), as a bit pattern.
CNNFAST_WARP_PRIMITIVE uint32_t to_tf32(float x) {
#if defined(__CUDACC__)
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
#else
  return ::cuda_on_cpu::sm80::to_tf32(x);
#endif
}

// ldmatrix.sync.aligned.m8n8.x{N}[.trans].shared.b16: row is this lane's row address (see above).
template <int N, bool Trans = false>
CNNFAST_WARP_PRIMITIVE void ldmatrix(uint32_t (&r)[N], const void* row CNNFAST_SITE_PARAMS) {
  static_assert(N == 1 || N == 2 || N == 4, "ldmatrix loads 1, 2 or 4 matrices");
#if defined(__CUDACC__)
  const uint32_t a = shared_address(row);
  if constexpr (N == 1 && !Trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(a));
  else if constexpr (N == 1)
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(a));
  else if constexpr (N == 2 && !Trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(a));
  else if constexpr (N == 2)
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1]) : "r"(a));
  else if constexpr (!Trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
#else
  ::cuda_on_cpu::sm80::ldmatrix(N, Trans, r, row, file, line);
#endif
}

// One warp's shared-memory load and store of a 4-, 8- or 16-byte T per lane (every lane of the warp
// takes part; the harness counts the access's bank conflicts). Plain LDS/STS under nvcc.
template <class T>
CNNFAST_WARP_PRIMITIVE T lds(const T* p CNNFAST_SITE_PARAMS) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8 || sizeof(T) == 16, "lds moves 4, 8 or 16 bytes");
#if defined(__CUDACC__)
  return *p;
#else
  T v;
  ::cuda_on_cpu::sm80::lds(&v, p, sizeof(T), file, line);
  return v;
#endif
}

template <class T>
CNNFAST_WARP_PRIMITIVE void sts(T* p, const T& v CNNFAST_SITE_PARAMS) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8 || sizeof(T) == 16, "sts moves 4, 8 or 16 bytes");
#if defined(__CUDACC__)
  *p = v;
#else
  ::cuda_on_cpu::sm80::sts(p, &v, sizeof(T), file, line);
#endif
}

}  // namespace sm80
}  // namespace cuda
}  // namespace cnnfast
