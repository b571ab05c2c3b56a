// winograd.h's transforms for any CPU: the 16 lanes of a group as plain loops over 16 floats (the
// compiler vectorizes them for the baseline ISA). Used by the portable capability.
#include <algorithm>
#include <cstdint>

#include "cpu/conv2d/winograd.h"

namespace cnnfast::cpu {
namespace wino_portable_impl {
namespace {

struct Isa {
  struct V {
    float x[16];
  };
  template <typename F>
  static inline V map(F&& f) {
    V r;
    for (int i = 0; i < 16; ++i) r.x[i] = f(i);
    return r;
  }
  static inline V zero() { return map([](int) { return 0.0f; }); }
  static inline V set1(float s) { return map([s](int) { return s; }); }
  static inline V load(const float* p) { return map([p](int i) { return p[i]; }); }
  static inline V load_mask(V prev, const float* p, uint32_t bits) {
    for (int i = 0; i < 16; ++i)
      if ((bits >> i) & 1u) prev.x[i] = p[i];
    return prev;
  }
  static inline void store(float* p, const V& v) {
    for (int i = 0; i < 16; ++i) p[i] = v.x[i];
  }
  static inline void store_mask(float* p, const V& v, uint32_t bits) {
    for (int i = 0; i < 16; ++i)
      if ((bits >> i) & 1u) p[i] = v.x[i];
  }
  static inline V add(const V& a, const V& b) { return map([&](int i) { return a.x[i] + b.x[i]; }); }
  static inline V sub(const V& a, const V& b) { return map([&](int i) { return a.x[i] - b.x[i]; }); }
  static inline V mul(const V& a, const V& b) { return map([&](int i) { return a.x[i] * b.x[i]; }); }
  static inline V relu(const V& v) { return map([&](int i) { return v.x[i] < 0.0f ? 0.0f : v.x[i]; }); }
  static inline V interleave_lo(const V& a, const V& b) {
    return map([&](int i) { return (i & 1) ? b.x[i >> 1] : a.x[i >> 1]; });
  }
  static inline V interleave_hi(const V& a, const V& b) {
    return map([&](int i) { return (i & 1) ? b.x[8 + (i >> 1)] : a.x[8 + (i >> 1)]; });
  }
  static inline V gather(const float* base, int64_t stride, uint32_t bits) {
    return map([&](int i) { return ((bits >> i) & 1u) ? base[i * stride] : 0.0f; });
  }
  static inline void taps16(const float* p, V* g) {
    for (int r = 0; r < 9; ++r) g[r] = map([&](int i) { return p[9 * i + r]; });
  }
  static inline void untaps16(const V* g, float* p) {
    for (int f = 0; f < 16; ++f)
      for (int r = 0; r < 9; ++r) p[9 * f + r] = g[r].x[f];
  }
  static inline void fence() {}
  static inline void transpose16(V* r) {
    V t[16];
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 16; ++j) t[i].x[j] = r[j].x[i];
    for (int i = 0; i < 16; ++i) r[i] = t[i];
  }
  static inline V deinterleave_even(const V& lo, const V& hi) {
    return map([&](int i) { return i < 8 ? lo.x[2 * i] : hi.x[2 * i - 16]; });
  }
  static inline V deinterleave_odd(const V& lo, const V& hi) {
    return map([&](int i) { return i < 8 ? lo.x[2 * i + 1] : hi.x[2 * i - 15]; });
  }
};

#include "cpu/conv2d/winograd_simd.inc"

}  // namespace
}  // namespace wino_portable_impl

const WinoKernels& winograd_kernels_portable() { return wino_portable_impl::kKernels; }

}  // namespace cnnfast::cpu
