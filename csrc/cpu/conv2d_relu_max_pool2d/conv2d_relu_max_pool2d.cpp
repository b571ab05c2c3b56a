// The CPU kernels of conv2d_relu_max_pool2d and its backward (conv2d_relu_max_pool2d.h):
// max_pool2d(relu(conv2d(...))) as one op. The convolution (with bias and ReLU in its GEMM's store,
// cpu/conv2d/conv2d.h) writes into a pooled scratch block (cpu/common/scratch.h) that the pooling
// (cpu/max_pool2d/max_pool2d.h) reads back while it is still warm, so no tensor of the convolution's size is allocated, returned or kept for the backward. When the
// convolution runs with sixteen images per vector (float32, AVX-512 or AVX2), the pooling reads that layout as
// it is, sixteen images per compare, and only the pooled output and indices are copied out to NCHW:
// the convolution's output is never transposed.
// The backward needs only the pooled output and its indices: an element the pooling chose gets
// dy where the pooled output is not <= 0 (ReLU's mask, as relu(max) = max(relu)), every other element 0;
// that gradient of the convolution's output is built in scratch (masking the pooled dy first, a
// quarter of the elements for a 2x2 pool) and the convolution's gradients follow from it. When those
// gradients run with sixteen images per vector, the masked pooled gradient and the indices are
// transposed into that layout (not the convolution's four times larger gradient) and the pooling's
// backward writes the convolution's output gradient straight into it, padded as grad-input reads it.
// Layouts, threads and determinism are those of the two kernels (cpu/conv2d/, cpu/max_pool2d/).
#include "cpu/conv2d_relu_max_pool2d/conv2d_relu_max_pool2d.h"

#include <algorithm>
#include <climits>
#include <type_traits>

#include "cpu/common/parallel.h"
#include "cpu/common/scratch.h"
#include "cpu/common/simd.h"
#include "cpu/conv2d/conv2d.h"
#include "cpu/conv2d/images_per_vector.h"
#include "cpu/conv2d/path.h"
#include "cpu/max_pool2d/max_pool2d.h"
#include "cpu/max_pool2d/windows.h"
#include "cpu/relu/relu.h"

namespace cnnfast::cpu {
namespace {

// [ceil(N / 16), K, PQ, 16] int32 -> [N, K, PQ] int64, a block of 16 images at a time by register
// transposes that widen as they store.
void indices_to_nchw(const int32_t* ib, int64_t N, int64_t K, int64_t PQ, int64_t* idx, Capability cap) {
  const int64_t NB = (N + kIpvLanes - 1) / kIpvLanes;
  parallel_for(0, NB * K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bk = begin; bk < end; ++bk) {
      const int64_t b = bk / K, k = bk % K, lanes = std::min(kIpvLanes, N - b * kIpvLanes);
      const int32_t* src = ib + bk * PQ * kIpvLanes;
      int64_t* dst = idx + (b * kIpvLanes * K + k) * PQ;
      if (lanes == kIpvLanes && has_simd_movers(cap)) {
        lanes16_to_rows_i64(cap, src, dst, K * PQ, PQ);
        continue;
      }
      for (int64_t l = 0; l < lanes; ++l)
        for (int64_t i = 0; i < PQ; ++i) dst[l * K * PQ + i] = src[i * kIpvLanes + l];
    }
  });
}

// The forward: in the images-per-vector layout throughout when the convolution runs in it, otherwise
// the convolution into scratch and the pooling from it (also when a pooling window holds no input
// element: the images-per-vector pooling does not take those).
template <typename T>
void forward(const ConvPoolProblem& cp, const T* x, const T* w, const T* b, T* y, int64_t* idx, const Settings& s) {
  const Capability cap = s.capability;
  // idx null: no indices wanted (the pools write them to scratch, the lane layout's are not copied out).
  const Conv2dProblem& p = cp.conv;
  const Pool2dProblem& q = cp.pool;
  if constexpr (std::is_same_v<T, float>) {
    if (has_simd_movers(cap) && !has_empty_windows(q) &&
        conv2d_forward_path(p, s, true) == Conv2dForwardPath::kImagesPerVector) {
      const int64_t planes = (p.N + kIpvLanes - 1) / kIpvLanes * p.K, out_plane = q.P * q.Q;
      Scratch<float> pooled(planes * out_plane * kIpvLanes);
      Scratch<int32_t> arg(planes * out_plane * kIpvLanes);
      Scratch<float> yb(planes * p.P * p.Q * kIpvLanes);
      conv2d_forward_ipv(p, x, w, b, yb.data(), /*relu=*/true, cap);
      if (max_pool2d_ipv(q, planes, yb.data(), pooled.data(), arg.data(), cap)) {
        ipv_to_nchw(pooled.data(), p.N, p.K, out_plane, y, cap);
        if (idx) indices_to_nchw(arg.data(), p.N, p.K, out_plane, idx, cap);
        return;
      }
    }
  }
  Scratch<T> conv(p.output_numel());
  Scratch<int64_t> unused(idx ? 0 : q.output_numel());
  conv2d_forward<T>(p, x, w, b, conv.data(), /*relu=*/true, s);
  max_pool2d_forward<T>(q, conv.data(), y, idx ? idx : unused.data(), cap);
}

// The backward in the images-per-vector layout (see the top of the file); false, with nothing written,
// when the convolution's gradients do not run in it, a pooling window holds no input element (the
// general path skips those) or an index names no element of its window.
bool backward_ipv(const ConvPoolProblem& cp, const float* masked, const int64_t* idx, const float* x,
                  const float* w, float* dx, float* dw, const Settings& s) {
  const Capability cap = s.capability;
  const Conv2dProblem& p = cp.conv;
  const Pool2dProblem& q = cp.pool;
  if (has_empty_windows(q) || !conv2d_backward_uses_ipv(p, dx != nullptr, s)) return false;
  const IpvPlane l = conv2d_backward_ipv_layout(p, dx != nullptr);
  const int64_t NB = (p.N + kIpvLanes - 1) / kIpvLanes, planes = NB * p.K, out_plane = q.P * q.Q;
  Scratch<float> gl(planes * out_plane * kIpvLanes);
  Scratch<int32_t> il(planes * out_plane * kIpvLanes);
  parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t b = c / p.K, k = c % p.K, lanes = std::min(kIpvLanes, p.N - b * kIpvLanes);
      const int64_t from = (b * kIpvLanes * p.K + k) * out_plane, ld = p.K * out_plane;
      float* gd = gl.data() + c * out_plane * kIpvLanes;
      int32_t* id = il.data() + c * out_plane * kIpvLanes;
      if (lanes == kIpvLanes) {
        rows_to_lanes16(cap, masked + from, ld, gd, kIpvLanes, out_plane);
        rows_i64_to_lanes16(cap, idx + from, ld, id, out_plane);
        continue;
      }
      // The last, partial block: the lanes past N add a zero at lane 0's index (a valid one).
      for (int64_t i = 0; i < out_plane; ++i)
        for (int64_t j = 0; j < kIpvLanes; ++j) {
          const int64_t src = from + (j < lanes ? j : 0) * ld + i;
          gd[i * kIpvLanes + j] = j < lanes ? masked[src] : 0.0f;
          id[i * kIpvLanes + j] = static_cast<int32_t>(std::clamp<int64_t>(idx[src], INT32_MIN, INT32_MAX));
        }
    }
  });
  Scratch<float> dyb(planes * l.plane);
  if (!max_pool2d_backward_ipv(q, planes, gl.data(), il.data(), dyb.data(), l.plane, l.Wh * kIpvLanes,
                               (l.ph * l.Wh + l.pw) * kIpvLanes, cap))
    return false;
  conv2d_backward_ipv(p, dyb.data(), x, w, dx, dw, nullptr, cap);
  return true;
}

}  // namespace

template <typename T>
void conv2d_relu_max_pool2d_forward(const ConvPoolProblem& cp, const T* x, const T* w, const T* b, T* y,
                                    int64_t* indices, const Settings& s) {
  forward<T>(cp, x, w, b, y, indices, s);
}

template <typename T>
bool conv2d_relu_max_pool2d_backward(const ConvPoolProblem& cp, const T* dy, const T* y, const int64_t* indices,
                                     const T* x, const T* w, T* dx, T* dw, T* db, const Settings& s) {
  const Conv2dProblem& p = cp.conv;
  const Pool2dProblem& q = cp.pool;
  const int64_t pooled = q.output_numel();
  if (pooled == 0) {
    // An empty batch: every gradient is a sum of nothing (dy is not read).
    conv2d_backward<T>(p, nullptr, nullptr, x, w, dx, dw, db, s);
    return true;
  }
  Scratch<T> masked(pooled);
  relu_backward(dy, y, masked.data(), pooled, s.capability);
  // grad-bias: every pooled gradient lands on one element of the convolution's output, so the
  // channel's sum is the sum of its masked pooled gradient (a quarter of the terms for a 2x2 pool).
  if (db) channel_sums(masked.data(), q.N, q.C, q.P * q.Q, db);
  if constexpr (std::is_same_v<T, float>) {
    if (has_simd_movers(s.capability) && backward_ipv(cp, masked.data(), indices, x, w, dx, dw, s)) return true;
  }
  Scratch<T> g(p.output_numel());
  if (!max_pool2d_backward<T>(q, masked.data(), indices, g.data(), s.capability)) return false;
  conv2d_backward<T>(p, g.data(), nullptr, x, w, dx, dw, nullptr, s);
  return true;
}

#define CNNFAST_INSTANTIATE(T)                                                                               \
  template void conv2d_relu_max_pool2d_forward<T>(const ConvPoolProblem&, const T*, const T*, const T*, T*,   \
                                                  int64_t*, const Settings&);                                 \
  template bool conv2d_relu_max_pool2d_backward<T>(const ConvPoolProblem&, const T*, const T*, const int64_t*, \
                                                   const T*, const T*, T*, T*, T*, const Settings&);
CNNFAST_INSTANTIATE(float)
CNNFAST_INSTANTIATE(double)
#undef CNNFAST_INSTANTIATE

}  // namespace cnnfast::cpu
