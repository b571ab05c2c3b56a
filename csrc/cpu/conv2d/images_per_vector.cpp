// The images-per-vector layout of the CPU conv2d (images_per_vector.h).
#include "cpu/conv2d/images_per_vector.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "cpu/common/parallel.h"
#include "cpu/common/simd.h"
#include "cpu/conv2d/conv2d.h"
#include "cpu/conv2d/gemm.h"
#include "cpu/conv2d/grad_weight_dot.h"

namespace cnnfast::cpu {

template <typename T>
Buffer<T> to_ipv(const T* x, int64_t N, int64_t C, int64_t H, int64_t W, int64_t ph, int64_t pw, int64_t sh,
                 int64_t sw, Capability cap, const T* keep) {
  const IpvLayout bl = ipv_layout(N, H, W, ph, pw, sh, sw);
  const bool exact = bl.Hh * sh == H + 2 * ph && bl.Wh * sw == W + 2 * pw;
  Buffer<T> out(bl.NB * C * bl.plane);
  const int64_t Hp = bl.Hh * sh, Wp = bl.Wh * sw;  // padded plane, phases' slack included
  parallel_for(0, bl.NB * C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bc = begin; bc < end; ++bc) {
      const int64_t b = bc / C, c = bc % C;
      T* dst = out.data() + bc * bl.plane;
      const bool full = N >= (b + 1) * kIpvLanes;
      const int64_t from = (b * kIpvLanes * C + c) * H * W;
      const T* src = x + from;
      if constexpr (std::is_same_v<T, float>) {
        if (full && has_simd_movers(cap)) {
          // Zero only the pixels no row writes: the padding rows whole, the padding columns of the others.
          // (Without column phases a run of pixels of a row is contiguous: one fill.)
          const auto zero = [&](int64_t hp, int64_t w0, int64_t w1) {
            if (sw == 1) {
              if (w1 > w0) std::fill_n(dst + ipv_offset(bl, hp, w0), (w1 - w0) * kIpvLanes, 0.0f);
              return;
            }
            for (int64_t wp = w0; wp < w1; ++wp) std::fill_n(dst + ipv_offset(bl, hp, wp), kIpvLanes, 0.0f);
          };
          for (int64_t hp = 0; hp < Hp; ++hp) {
            if (hp < ph || hp >= ph + H) {
              zero(hp, 0, Wp);
            } else {
              zero(hp, 0, pw);
              zero(hp, pw + W, Wp);
            }
          }
          // Input column w is padded column pw + w: phase (pw + w) % sw, pixel (pw + w) / sw of its row.
          const int64_t ld = C * H * W, phase_ld = bl.Hh * bl.Wh * kIpvLanes;
          for (int64_t h = 0; h < H; ++h) {
            float* to = dst + ipv_offset(bl, h + ph, 0);
            if (keep)
              rows_to_lanes16_masked(cap, src + h * W, keep + from + h * W, ld, to, kIpvLanes, W, sw, phase_ld, pw);
            else
              rows_to_lanes16(cap, src + h * W, ld, to, kIpvLanes, W, sw, phase_ld, pw);
          }
          continue;
        }
      }
      if (ph > 0 || pw > 0 || !full || !exact) std::fill(dst, dst + bl.plane, T(0));
      for (int64_t l = 0; l < kIpvLanes && b * kIpvLanes + l < N; ++l) {
        const T* sl = src + l * C * H * W;
        const T* kl = keep ? keep + from + l * C * H * W : nullptr;
        for (int64_t h = 0; h < H; ++h)
          for (int64_t w = 0; w < W; ++w) {
            const T v = sl[h * W + w];
            dst[ipv_offset(bl, h + ph, w + pw) + l] = kl == nullptr || !(kl[h * W + w] <= T(0)) ? v : T(0);
          }
      }
    }
  });
  return out;
}

template <typename T>
void from_ipv(const T* yb, int64_t N, int64_t K, int64_t PQ, T* y, Capability cap, const T* residual,
              bool relu) {
  const int64_t NB = (N + kIpvLanes - 1) / kIpvLanes;
  const auto add_relu = [relu](T v, T r) {
    const T sum = v + r;
    return relu && sum < T(0) ? T(0) : sum;
  };
  parallel_for(0, NB * K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bk = begin; bk < end; ++bk) {
      const int64_t b = bk / K, k = bk % K;
      const T* src = yb + bk * PQ * kIpvLanes;
      const int64_t off = (b * kIpvLanes * K + k) * PQ;
      T* dst = y + off;
      if constexpr (std::is_same_v<T, float>) {
        if (N >= (b + 1) * kIpvLanes && has_simd_movers(cap)) {
          lanes16_to_rows(cap, src, dst, K * PQ, PQ);
          // The block's 16 rows were just written (16 * PQ floats, in L1 or L2 for the small images
          // this layout serves): the residual is added there rather than in a pass over all of y.
          if (residual)
            for (int64_t l = 0; l < kIpvLanes; ++l) {
              T* d = dst + l * K * PQ;
              const T* r = residual + off + l * K * PQ;
              for (int64_t i = 0; i < PQ; ++i) d[i] = add_relu(d[i], r[i]);
            }
          continue;
        }
      }
      for (int64_t l = 0; l < kIpvLanes && b * kIpvLanes + l < N; ++l) {
        T* d = dst + l * K * PQ;
        if (residual) {
          const T* r = residual + off + l * K * PQ;
          for (int64_t i = 0; i < PQ; ++i) d[i] = add_relu(src[i * kIpvLanes + l], r[i]);
        } else {
          for (int64_t i = 0; i < PQ; ++i) d[i] = src[i * kIpvLanes + l];
        }
      }
    }
  });
}


template Buffer<float> to_ipv<float>(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                     int64_t, Capability, const float*);
template Buffer<double> to_ipv<double>(const double*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                       int64_t, Capability, const double*);
template void from_ipv<float>(const float*, int64_t, int64_t, int64_t, float*, Capability, const float*, bool);
template void from_ipv<double>(const double*, int64_t, int64_t, int64_t, double*, Capability, const double*, bool);

namespace {

// Offset of tap r = (c, kh, kw) in the layout, relative to the group's first channel and the output
// row's first phase row.
std::vector<int64_t> ipv_tap_offsets(const Conv2dProblem& p) {
  const IpvLayout b = ipv_layout(p);
  std::vector<int64_t> off(p.reduction());
  for (int64_t c = 0; c < p.C_per_group(); ++c)
    for (int64_t kh = 0; kh < p.R; ++kh)
      for (int64_t kw = 0; kw < p.S; ++kw)
        off[(c * p.R + kh) * p.S + kw] = c * b.plane + ipv_offset(b, kh * p.dilation_h, kw * p.dilation_w);
  return off;
}

// Forward: one GEMM per (block of 16 images, group, output row, block of output channels),
// y16[b, k, oh, :, :] = bias[k] + sum_r W[k, r] * (tap r's run of xb for row oh) (r = (c, kh, kw)).
// From xb, the input already in the layout (to_ipv), into yb [NB, K, P, Q, 16].
void forward_ipv_laid(const Conv2dProblem& p, const float* xb, const float* w, const float* bias, float* yb,
                      bool relu, Capability cap) {
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group(), PQ = p.P * p.Q;
  const IpvLayout b = ipv_layout(p);
  const std::vector<int64_t> boff = ipv_tap_offsets(p);
  forward_items(p, b.NB, p.P, w, bias, relu, cap, [&](GemmArgs<float>& a, int64_t nb, int64_t g, int64_t oh, int64_t k0) {
    a.N = p.Q * kIpvLanes;
    a.b = xb + (nb * p.C + g * Cg) * b.plane + oh * b.Wh * kIpvLanes, a.b_off = boff.data();
    a.c = yb + ((nb * p.K + g * Kg + k0) * PQ + oh * p.Q) * kIpvLanes, a.ldc = PQ * kIpvLanes;
  });
}

// Grad-weight in the dot-product form on the same layout: for each block of 16 images, A's rows are
// dy16[b, k] and B's the taps' views of xb, both running along a whole output row (16 * Q floats) and
// stepping one row per batch step of DotArgs.
// dyl: the layout dyb is in, dy [N, K, P, Q] with the padding it was laid out with (ph, pw).
void grad_weight_ipv_laid(const Conv2dProblem& p, const float* dyb, const IpvLayout& dyl, int64_t ph, int64_t pw,
                          const float* x, float* dw, Capability cap) {
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group(), red = p.reduction();
  const IpvLayout b = ipv_layout(p);
  const Buffer<float> xb = to_ipv(x, p.N, p.C, p.H, p.W, p.pad_h, p.pad_w, p.stride_h, p.stride_w, cap);
  const std::vector<int64_t> boff = ipv_tap_offsets(p);
  const int64_t first = ipv_offset(dyl, ph, pw);
  dot_grad_weight(p, cap, b.NB, dw, [&](float* acc, int64_t s0, int64_t s1, int64_t g, int64_t k0, int64_t nk) {
    for (int64_t nb = s0; nb < s1; ++nb)
      for (int64_t r0 = 0; r0 < red; r0 += kDotTaps) {
        DotArgs d;
        d.M = nk, d.N = std::min(kDotTaps, red - r0), d.K = p.Q * kIpvLanes, d.batch = p.P;
        d.a = dyb + (nb * p.K + g * Kg + k0) * dyl.plane + first, d.lda = dyl.plane;
        d.a_bs = dyl.Wh * kIpvLanes;
        d.b = xb.data() + (nb * p.C + g * Cg) * b.plane, d.b_off = boff.data() + r0;
        d.b_bs = b.Wh * kIpvLanes;
        d.acc = acc + r0 * dot_lanes(cap), d.ldacc = red;
        dot(cap, d);
      }
  });
}

// dy's layout for conv2d_backward_ipv: stride 1, padded for grad-input's forward convolution when
// grad-input is wanted, else not padded.
IpvLayout grad_ipv_layout(const Conv2dProblem& p, bool grad_input, int64_t& ph, int64_t& pw) {
  ph = grad_input ? p.dilation_h * (p.R - 1) - p.pad_h : 0;
  pw = grad_input ? p.dilation_w * (p.S - 1) - p.pad_w : 0;
  return ipv_layout(p.N, p.P, p.Q, ph, pw, 1, 1);
}

}  // namespace

void conv2d_forward_ipv(const Conv2dProblem& p, const float* x, const float* w, const float* bias, float* yb,
                        bool relu, Capability cap) {
  const Buffer<float> xb = to_ipv(x, p.N, p.C, p.H, p.W, p.pad_h, p.pad_w, p.stride_h, p.stride_w, cap);
  forward_ipv_laid(p, xb.data(), w, bias, yb, relu, cap);
}

void forward_ipv(const Conv2dProblem& p, const float* x, const float* w, const float* bias, float* y, bool relu,
                 Capability cap, const float* residual) {
  const int64_t PQ = p.P * p.Q;
  Buffer<float> yb(ipv_layout(p).NB * p.K * PQ * kIpvLanes);
  // With a residual the ReLU comes after its addition, in from_ipv.
  conv2d_forward_ipv(p, x, w, bias, yb.data(), relu && !residual, cap);
  from_ipv(yb.data(), p.N, p.K, PQ, y, cap, residual, relu);
}

void grad_weight_ipv(const Conv2dProblem& p, const float* dy, const float* x, float* dw, Capability cap) {
  const Buffer<float> dyb = to_ipv(dy, p.N, p.K, p.P, p.Q, 0, 0, 1, 1, cap);
  grad_weight_ipv_laid(p, dyb.data(), ipv_layout(p.N, p.P, p.Q, 0, 0, 1, 1), 0, 0, x, dw, cap);
}

IpvPlane conv2d_backward_ipv_layout(const Conv2dProblem& p, bool grad_input) {
  int64_t ph, pw;
  const IpvLayout l = grad_ipv_layout(p, grad_input, ph, pw);
  return IpvPlane{ph, pw, l.Wh, l.plane};
}

void conv2d_backward_ipv(const Conv2dProblem& p, const float* dyb, const float* x, const float* w, float* dx,
                         float* dw, float* db, Capability cap) {
  int64_t ph, pw;
  const IpvLayout l = grad_ipv_layout(p, dx != nullptr, ph, pw);
  if (dx) {
    const Conv2dProblem q = grad_input_problem(p);
    const Buffer<float> wt = flipped_weight(p, w);
    Buffer<float> xb(l.NB * p.C * p.H * p.W * kIpvLanes);
    forward_ipv_laid(q, dyb, wt.data(), nullptr, xb.data(), false, cap);
    from_ipv(xb.data(), p.N, p.C, p.H * p.W, dx, cap);
  }
  if (dw) grad_weight_ipv_laid(p, dyb, l, ph, pw, x, dw, cap);
  // db[k]: the sum of channel k's planes (padding and the lanes past N are zero).
  if (db) channel_sums(dyb, l.NB, p.K, l.plane, db);
}

void ipv_to_nchw(const float* yb, int64_t N, int64_t K, int64_t PQ, float* y, Capability cap) {
  from_ipv(yb, N, K, PQ, y, cap);
}

}  // namespace cnnfast::cpu
