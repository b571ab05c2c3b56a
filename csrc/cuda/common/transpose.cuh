// Batched 2-D transpose of 16-, 32-bit elements: out[b][j][i] = in[b][i][j] for a [batch, rows, cols]
// tensor, through a 32 x 33 shared tile (coalesced reads and writes, no bank conflicts). The layout
// changes around the tensor-core convolution: an NCHW input [N][C][H*W] to NHWC [N][H*W][C], a KCRS
// weight [K][C][R*S] to KRSC [K][R*S][C]. Framework-free: nvcc or g++ with the CPU harness.
#pragma once

#include <cstdint>

#include "launch.cuh"

namespace cnnfast {
namespace cuda {

constexpr int kTransposeTile = 32, kTransposeRows = 8;

template <class T>
__global__ void __launch_bounds__(kTransposeTile * kTransposeRows)
    transpose_kernel(const T* in, T* out, int rows, int cols) {
  __shared__ T tile[kTransposeTile][kTransposeTile + 1];
  const int64_t plane = static_cast<int64_t>(rows) * cols;
  const T* src = in + blockIdx.z * plane;
  T* dst = out + blockIdx.z * plane;
  const int i0 = blockIdx.y * kTransposeTile, j0 = blockIdx.x * kTransposeTile;
  const int tx = threadIdx.x % kTransposeTile, ty = threadIdx.x / kTransposeTile;
  for (int y = ty; y < kTransposeTile; y += kTransposeRows) {
    const int i = i0 + y, j = j0 + tx;
    if (i < rows && j < cols) tile[y][tx] = src[static_cast<int64_t>(i) * cols + j];
  }
  __syncthreads();
  for (int y = ty; y < kTransposeTile; y += kTransposeRows) {
    const int j = j0 + y, i = i0 + tx;
    if (i < rows && j < cols) dst[static_cast<int64_t>(j) * rows + i] = tile[tx][y];
  }
}

// out = in transposed per batch: in [batch][rows][cols] -> out [batch][cols][rows]. batch <= 65535.
template <class T, class Stream>
void transpose(const T* in, T* out, int64_t batch, int rows, int cols, Stream stream) {
  const dim3 grid(ceil_div(cols, kTransposeTile), ceil_div(rows, kTransposeTile), static_cast<unsigned>(batch));
  const LaunchConfig c{grid, dim3(kTransposeTile * kTransposeRows), 0};
  CNNFAST_LAUNCH(c, stream, transpose_kernel<T>)(in, out, rows, cols);
}

}  // namespace cuda
}  // namespace cnnfast
