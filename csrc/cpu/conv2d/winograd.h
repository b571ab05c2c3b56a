// Winograd F(2x2, 3x3) for 3x3 convolutions with stride 1 and dilation 1, float32 (framework-free
// declarations; the driver is winograd.cpp, the transforms winograd_simd.inc compiled per ISA).
//
// Per 4x4 input tile d (2x2 outputs) and 3x3 filter g:
//   U = G g G^T,  V = B^T d B,  M[xi] = sum_c U[xi] V[xi]  (16 GEMMs over channels),  Y = A^T M A
// with  B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//       A^T = [1 1 1 0; 0 1 -1 -1],  xi = 4 * row + column of the 4x4 transformed tile.
// 16 multiplies per 4 outputs and channel pair instead of 36 (2.25x fewer), plus the transforms, and
// a larger rounding error than the direct sum (still far inside the project's tolerance: NOTES.md).
//
// Tiles are numbered t = (n * TH + th) * TW + tw over the whole batch (TH x TW tiles per image) and
// handled 16 at a time ("groups" of 16 lanes: one zmm, or two ymm on AVX2): the transforms work on
// 16 tiles at once, and the GEMMs see tiles as columns. A group of 16 tiles is cut into segments, the
// runs of its lanes that lie on one tile row of one image. Consecutive tiles of a tile row start 2
// columns apart, so one input row of a segment is read as two 32-float windows (masked to the
// segment's lanes and to the image: the zero padding is never built), split into even and odd lanes
// by two-source permutes; an output row is written as two 32-float windows interleaved from the
// tiles' two output columns.
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/common/capability.h"
#include "problem.h"

namespace cnnfast::cpu {

constexpr int64_t kWinoLanes = 16;  // tiles per group

// A run of a group's lanes on one tile row (one image).
struct WinoSegment {
  int32_t lane0 = 0, lane1 = 0;  // lanes [lane0, lane1)
  int64_t yoff = 0;              // output offset of its first element: n * K * PQ + 2 * th * Q + 2 * tw
  uint32_t out_lo = 0, out_hi = 0;  // store masks of an output row (2 floats per lane, 32 in all)
  bool row1 = false;             // the tile's second output row exists (2 * th + 1 < P)
  // Input: lane l's tile element (i, j) is at xin + i * W + 2 * l + j (channel 0 of image 0 at 0),
  // inside the input when bit i of `rows` is set and bit 2 l + j of win0 (j < 2) or 2 l + j - 2 of
  // win1 (j >= 2) is set.
  int64_t xin = 0;
  uint32_t rows = 0, win0 = 0, win1 = 0;
};

struct WinoLayout {
  int64_t N = 0, C = 0, K = 0, P = 0, Q = 0, PQ = 0, H = 0, W = 0, HW = 0;
  int64_t TH = 0, TW = 0, T = 0, groups = 0;  // tiles per column / row of an image, in all, groups of 16
  std::vector<int32_t> first;  // segments of group q: segs[first[q] .. first[q + 1])
  std::vector<WinoSegment> segs;
};

WinoLayout winograd_layout(const Conv2dProblem& p);

// The transforms of one ISA (float32).
struct WinoKernels {
  // V for channels c < nc and groups [q0, q1): v[xi * v_xi + c * v_c + (q - q0) * 16 + lane] from the
  // input x (channel c at x + c * H * W, segment offsets added). Lanes past the last tile: 0.
  void (*input)(const WinoLayout& l, const float* x, int64_t nc, int64_t q0, int64_t q1, float* v, int64_t v_xi,
                int64_t v_c);
  // Outputs of channels k < nk for groups [q0, q1) from m[xi * m_xi + k * m_k + (q - q0) * 16 + lane],
  // plus bias[k] (when not null), ReLU'd when relu; y points at channel 0 of image 0 (k at y + k * PQ).
  void (*output)(const WinoLayout& l, const float* m, int64_t m_xi, int64_t m_k, int64_t nk, int64_t q0, int64_t q1,
                 const float* bias, bool relu, float* y);
  // U of the filters (a, b) at w + a * ld + b * 9 (9 taps each, row-major) for a < rows and b < cols:
  // u[xi * u_xi + a * u_row + b].
  void (*filter)(const float* w, int64_t ld, int64_t rows, int64_t cols, float* u, int64_t u_xi, int64_t u_row);
  // Grad-weight. V transposed: vt[xi * vt_xi + t * vt_t + c] for the tiles t of groups [q0, q1)
  // (numbered from the first of q0) and channels c < nc.
  void (*input_t)(const WinoLayout& l, const float* x, int64_t nc, int64_t q0, int64_t q1, float* vt, int64_t vt_xi,
                  int64_t vt_t);
  // The output gradient's tiles A dY A^T: d[xi * d_xi + k * d_k + (q - q0) * 16 + lane] for channels
  // k < nk of dy (channel k at dy + k * PQ, segment offsets added).
  void (*grad_output)(const WinoLayout& l, const float* dy, int64_t nk, int64_t q0, int64_t q1, float* d,
                      int64_t d_xi, int64_t d_k);
  // The filter gradients G^T dU G: dw[a * ld + b * 9 + tap] for a < rows, b < cols, from
  // du[xi * du_xi + a * du_row + b].
  void (*filter_grad)(const float* du, int64_t du_xi, int64_t du_row, int64_t rows, int64_t cols, float* dw,
                      int64_t ld);
};

const WinoKernels& winograd_kernels_avx512();
const WinoKernels& winograd_kernels_avx2();
const WinoKernels& winograd_kernels_portable();
// The transforms of capability cap (which the CPU must support).
const WinoKernels& winograd_kernels(Capability cap);

// The 3x3 filters: a weight [groups, A, B, 3, 3] (contiguous). Not transposed: A is the problem's
// output channels per group, B its input channels (a forward convolution). Transposed: the problem's
// filter (c, k) is filter (k, c) of the weight, rotated by 180 degrees (grad-input of a stride-1
// convolution as a forward one); U is then computed on the weight as stored and read transposed, and
// the rotation is a permutation of the transformed filter (winograd.cpp's rotated()).
struct WinoWeight {
  const float* w = nullptr;
  bool transposed = false;
};

// True when F(2x2, 3x3) can compute p at all (3x3, stride 1, dilation 1); the choice to use it is
// conv2d/path.cpp's.
inline bool winograd_applies(const Conv2dProblem& p) {
  return p.R == 3 && p.S == 3 && p.stride_h == 1 && p.stride_w == 1 && p.dilation_h == 1 && p.dilation_w == 1 &&
         p.P > 0 && p.Q > 0;
}

// y = relu?(conv(x, w) + b [+ residual]) for p (winograd_applies(p)), NCHW contiguous, bit-identical for
// any thread count. The residual (laid out as y, may be null) is added to the elements each output
// transform has just written, while they are in cache, before the ReLU.
void winograd_forward(const Conv2dProblem& p, const float* x, const WinoWeight& w, const float* b, float* y,
                      bool relu, Capability cap, const float* residual = nullptr);

// dw = the weight gradient of p (winograd_applies(p)) from dy and x, NCHW contiguous: by the
// transposition of the forward, dU[xi][k][c] = sum over tiles t of (A dY_t A^T)[xi][k] V_t[xi][c]
// (16 GEMMs whose reduction runs over the tiles) and dW = G^T dU G. Bit-identical for any thread count.
void winograd_grad_weight(const Conv2dProblem& p, const float* dy, const float* x, float* dw, Capability cap);

// Each transform of `cap` applied once to the whole of a one-group problem p (every tile and channel
// in one call) on plain buffers: the window through which the tests hold each ISA's transforms to the
// portable ones bit for bit, and those to the matrix products above, lane split and masks included.
// In: x [N][C][H][W], w [K][C][3][3], dy [N][K][P][Q], m [16][K][Tp] and du [16][K][C] (any values),
// bias [K] or null, with Tp = 16 x winograd_layout(p).groups. Out: v = B^T d B [16][C][Tp],
// y = relu?(A^T m A + bias) [N][K][P][Q], u = G w G^T [16][K][C], vt = v transposed [16][Tp][C],
// d = A dY A^T [16][K][Tp], dw = G^T du G [K][C][9].
struct WinoTransforms {
  std::vector<float> v, y, u, vt, d, dw;
};
WinoTransforms winograd_transforms(Capability cap, const Conv2dProblem& p, const float* x, const float* w,
                                   const float* dy, const float* m, const float* du, const float* bias, bool relu);

}  // namespace cnnfast::cpu
