// The SIMD entry points of the CPU max_pool2d: the kernels of max_pool2d_simd.inc compiled for AVX-512
// (max_pool2d_avx512.cpp, suffix _avx512) and for AVX2 + FMA (max_pool2d_avx2.cpp, suffix _avx2), called
// by max_pool2d.cpp when the capability in use is that ISA. Each returns false, with nothing written,
// where it does not apply (or where the compiler has no x86 SIMD). L below is the lanes of one vector:
// 16 float / 8 double on AVX-512, 8 float / 4 double on AVX2.
#pragma once

#include <cstdint>

#include "problem.h"

namespace cnnfast::cpu {

// The forward of every plane (window column stride 1 or 2, planes under kSimdPlaneLimit).
template <typename T>
bool max_pool2d_forward_avx512(const Pool2dProblem& p, const T* x, T* y, int64_t* indices);
template <typename T>
bool max_pool2d_forward_avx2(const Pool2dProblem& p, const T* x, T* y, int64_t* indices);

// The write-once backward takes windows that do not overlap along rows and are 2 columns wide with
// column stride 2 (no column padding or dilation), in rows long enough that it beats the
// zero-and-scatter (measured, benchmarks/NOTES.md): AVX-512 more than L/2 outputs, AVX2 float at
// least 16, AVX2 double never.
template <typename T>
bool max_pool2d_write_once_fits_avx512(const Pool2dProblem& p);
template <typename T>
bool max_pool2d_write_once_fits_avx2(const Pool2dProblem& p);
// One plane of it (row_window: the window of each input row, windows.h's window_of_positions); false
// when an index is not inside its own window (the plane must then be redone by the scatter).
template <typename T>
bool max_pool2d_backward_plane_write_once_avx512(const Pool2dProblem& p, const T* dy, const int64_t* idx, T* dx,
                                                 const int32_t* row_window);
template <typename T>
bool max_pool2d_backward_plane_write_once_avx2(const Pool2dProblem& p, const T* dy, const int64_t* idx, T* dx,
                                               const int32_t* row_window);

// max_pool2d.h's max_pool2d_ipv and max_pool2d_backward_ipv (16 lanes a pixel: one zmm, two ymm).
bool max_pool2d_ipv_avx512(const Pool2dProblem& p, int64_t planes, const float* x, float* y, int32_t* indices);
bool max_pool2d_ipv_avx2(const Pool2dProblem& p, int64_t planes, const float* x, float* y, int32_t* indices);
bool max_pool2d_backward_ipv_avx512(const Pool2dProblem& p, int64_t planes, const float* dy, const int32_t* indices,
                                    float* dx, int64_t dx_plane, int64_t dx_row, int64_t dx_first);
bool max_pool2d_backward_ipv_avx2(const Pool2dProblem& p, int64_t planes, const float* dy, const int32_t* indices,
                                  float* dx, int64_t dx_plane, int64_t dx_row, int64_t dx_first);

}  // namespace cnnfast::cpu
