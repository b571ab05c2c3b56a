// Winograd F(2x2, 3x3) for 3x3 convolutions with stride 1 and dilation 1 (framework-free transforms;
// the 16 GEMMs go through gemm.h). Per 4x4 input tile d and 3x3 filter g:
//   U = G g G^T,  V = B^T d B,  M = sum_c U (.) V  (16 GEMMs over channels),  Y = A^T M A (2x2 outputs)
// with  B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//       A^T = [1 1 1 0; 0 1 -1 -1].
// 16 multiplies per 4 outputs and channel instead of 36: 2.25x fewer, at the price of the transforms
// (which only pay when both channel counts are large enough) and of a larger rounding error than the
// direct sum (the tests hold it to the project's tolerance against float64).
#pragma once

#include <cstdint>

namespace cnnfast::cpu {

// u[xi * ustride] for xi < 16 from the 3x3 filter g (row-major).
template <typename T>
inline void winograd_filter(const T* g, T* u, int64_t ustride) {
  T t[4][3];
  for (int j = 0; j < 3; ++j) {
    t[0][j] = g[j];
    t[1][j] = T(0.5) * (g[j] + g[3 + j] + g[6 + j]);
    t[2][j] = T(0.5) * (g[j] - g[3 + j] + g[6 + j]);
    t[3][j] = g[6 + j];
  }
  for (int i = 0; i < 4; ++i) {
    u[(i * 4 + 0) * ustride] = t[i][0];
    u[(i * 4 + 1) * ustride] = T(0.5) * (t[i][0] + t[i][1] + t[i][2]);
    u[(i * 4 + 2) * ustride] = T(0.5) * (t[i][0] - t[i][1] + t[i][2]);
    u[(i * 4 + 3) * ustride] = t[i][2];
  }
}

// v[xi * vstride + j] = (B^T d B)[xi] for n tiles j in a row of tiles: tile j's 4x4 window starts at
// src + 2 * j, rows ld apart.
template <typename T>
inline void winograd_input_row(const T* src, int64_t ld, int64_t n, T* v, int64_t vstride) {
  for (int64_t j = 0; j < n; ++j) {
    const T* d = src + 2 * j;
    T t[4][4];
    for (int c = 0; c < 4; ++c) {
      const T d0 = d[c], d1 = d[ld + c], d2 = d[2 * ld + c], d3 = d[3 * ld + c];
      t[0][c] = d0 - d2;
      t[1][c] = d1 + d2;
      t[2][c] = d2 - d1;
      t[3][c] = d1 - d3;
    }
    for (int i = 0; i < 4; ++i) {
      v[(i * 4 + 0) * vstride + j] = t[i][0] - t[i][2];
      v[(i * 4 + 1) * vstride + j] = t[i][1] + t[i][2];
      v[(i * 4 + 2) * vstride + j] = t[i][2] - t[i][1];
      v[(i * 4 + 3) * vstride + j] = t[i][1] - t[i][3];
    }
  }
}

// The 2x2 outputs y = A^T m A of one tile from m[xi * mstride], xi < 16.
template <typename T>
inline void winograd_output(const T* m, int64_t mstride, T y[2][2]) {
  T t[2][4];
  for (int c = 0; c < 4; ++c) {
    const T m0 = m[(0 * 4 + c) * mstride], m1 = m[(1 * 4 + c) * mstride];
    const T m2 = m[(2 * 4 + c) * mstride], m3 = m[(3 * 4 + c) * mstride];
    t[0][c] = m0 + m1 + m2;
    t[1][c] = m1 - m2 - m3;
  }
  for (int i = 0; i < 2; ++i) {
    y[i][0] = t[i][0] + t[i][1] + t[i][2];
    y[i][1] = t[i][1] - t[i][2] - t[i][3];
  }
}

}  // namespace cnnfast::cpu
