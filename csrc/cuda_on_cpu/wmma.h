// nvcuda::wmma on the CPU: fragments, fill_fragment, load_matrix_sync, mma_sync and
// store_matrix_sync for half, bfloat16 and tf32 inputs with float accumulation.
//
// Each lane holds a whole tile (num_elements is the tile size, not the GPU's per-lane share),
// so element-wise loops over frag.x[i] that are the same in every lane work as on the GPU.
// load/mma/store are warp collectives: every live lane of the warp must call them (a lane that
// does not is reported like any warp collective); loads and stores check the GPU's alignment
// rules (256-bit aligned pointer, leading dimension a multiple of 16 bytes). Inputs are what the tensor cores see:
// half and bfloat16 exactly, tf32 with the low 13 mantissa bits of the float ignored (use
// wmma::__float_to_tf32 to round to nearest, ties away, as the GPU's cvt.rna.tf32.f32 does).
// Each output is c + sum_k a*b computed exactly in double and rounded once to float; a GPU's
// tensor cores may round differently inside the sum, so compare in tests either with inputs
// whose products and sums are exact in float, or with a tolerance.
#pragma once

#include "cuda_on_cpu.h"

namespace nvcuda {
namespace wmma {

struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };
namespace precision {
struct tf32 {};
}  // namespace precision

inline float __float_to_tf32(float in) {
  uint32_t b;
  std::memcpy(&b, &in, 4);
  if ((b & 0x7f800000u) != 0x7f800000u) {  // finite: round to nearest, ties away from zero
    b += 0x1000u;
    b &= ~0x1fffu;
  }
  float out;
  std::memcpy(&out, &b, 4);
  return out;
}

namespace detail {
template <class T> struct storage { using type = T; };
template <> struct storage<precision::tf32> { using type = float; };

inline double input_value(const __half& v) { return static_cast<double>(__half2float(v)); }
inline double input_value(const __nv_bfloat16& v) { return static_cast<double>(__bfloat162float(v)); }
inline double input_value(const float& v) {  // tf32: the tensor cores ignore the low 13 bits
  uint32_t b;
  std::memcpy(&b, &v, 4);
  if ((b & 0x7f800000u) != 0x7f800000u) b &= ~0x1fffu;
  float t;
  std::memcpy(&t, &b, 4);
  return static_cast<double>(t);
}

template <class Use, int M, int N, int K> struct shape;
template <int M, int N, int K> struct shape<matrix_a, M, N, K> { static constexpr int rows = M, cols = K; };
template <int M, int N, int K> struct shape<matrix_b, M, N, K> { static constexpr int rows = K, cols = N; };
template <int M, int N, int K> struct shape<accumulator, M, N, K> { static constexpr int rows = M, cols = N; };

inline void warp_rendezvous(const char* file, int line) {
  ::cuda_on_cpu::detail::warp_collective(::cuda_on_cpu::detail::WarpOp::wmma, 0xffffffffu, 0, 0,
                                         32, file, line);
}

// The GPU's requirements on a fragment's memory: a 256-bit aligned pointer and a leading
// dimension that is a multiple of 16 bytes. A violation is undefined there, so it fails here.
template <class P>
inline void check_matrix_memory(const char* what, const P* p, unsigned ldm, const char* file, int line) {
  const bool aligned = reinterpret_cast<uintptr_t>(p) % 32 == 0;
  const bool ld_ok = (size_t(ldm) * sizeof(P)) % 16 == 0;
  if (aligned && ld_ok) return;
  ::cuda_on_cpu::detail::fail_in_fiber(
      std::string(what) + " at " + ::cuda_on_cpu::detail::site(file, line) + ": " +
      (aligned ? "" : "the pointer is not 256-bit (32-byte) aligned") + (aligned || ld_ok ? "" : " and ") +
      (ld_ok ? "" : "ldm " + std::to_string(ldm) + " is not a multiple of 16 bytes") + ", " +
      ::cuda_on_cpu::detail::where(*::cuda_on_cpu::detail::g_current));
}
}  // namespace detail

template <class Use, int M, int N, int K, class T, class Layout = void>
class fragment {
 public:
  using element_type = typename detail::storage<T>::type;
  static constexpr int rows = detail::shape<Use, M, N, K>::rows;
  static constexpr int cols = detail::shape<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;
  element_type x[num_elements];  // row-major tile
  static_assert((M == 16 && N == 16) || (M == 32 && N == 8) || (M == 8 && N == 32),
                "WMMA shape: m16n16, m32n8 or m8n32");
  static_assert(std::is_same<Use, accumulator>::value ||
                    (std::is_same<T, precision::tf32>::value ? K == 8 : K == 16),
                "WMMA shape: k16 for half/bfloat16, k8 for tf32");
  static_assert(std::is_same<Use, accumulator>::value ? std::is_same<T, float>::value
                                                      : !std::is_void<Layout>::value,
                "WMMA: float accumulators; matrix_a/matrix_b fragments need a layout");
};

template <class Use, int M, int N, int K, class T, class L>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f,
                          const typename fragment<Use, M, N, K, T, L>::element_type& v) {
  for (auto& e : f.x) e = v;
}

template <class Use, int M, int N, int K, class T, class L, class P>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const P* p, unsigned ldm,
                             const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  static_assert(!std::is_same<Use, accumulator>::value, "accumulator loads take a layout_t");
  detail::check_matrix_memory("wmma::load_matrix_sync", p, ldm, file, line);
  detail::warp_rendezvous(file, line);
  using F = fragment<Use, M, N, K, T, L>;
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c)
      f.x[r * F::cols + c] = std::is_same<L, col_major>::value ? p[size_t(c) * ldm + r]
                                                                : p[size_t(r) * ldm + c];
}

template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ldm,
                             layout_t layout, const char* file = __builtin_FILE(),
                             int line = __builtin_LINE()) {
  detail::check_matrix_memory("wmma::load_matrix_sync", p, ldm, file, line);
  detail::warp_rendezvous(file, line);
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c)
      f.x[r * N + c] = layout == mem_col_major ? p[size_t(c) * ldm + r] : p[size_t(r) * ldm + c];
}

template <int M, int N, int K>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f,
                              unsigned ldm, layout_t layout, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  detail::check_matrix_memory("wmma::store_matrix_sync", p, ldm, file, line);
  detail::warp_rendezvous(file, line);
  // Each lane stores its share of the tile, as on the GPU.
  const unsigned lane = ::cuda_on_cpu::detail::g_current->linear % 32;
  for (int i = static_cast<int>(lane); i < M * N; i += 32) {
    const int r = i / N, c = i % N;
    (layout == mem_col_major ? p[size_t(c) * ldm + r] : p[size_t(r) * ldm + c]) = f.x[i];
  }
}

template <int M, int N, int K, class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float>& d,
                     const fragment<matrix_a, M, N, K, T, LA>& a,
                     const fragment<matrix_b, M, N, K, T, LB>& b,
                     const fragment<accumulator, M, N, K, float>& c, bool satf = false,
                     const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  static_assert(std::is_same<T, __half>::value || std::is_same<T, __nv_bfloat16>::value ||
                    std::is_same<T, precision::tf32>::value,
                "mma_sync inputs: half, __nv_bfloat16 or precision::tf32");
  (void)satf;
  detail::warp_rendezvous(file, line);
  float out[M * N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double s = 0.0;
      for (int k = 0; k < K; ++k)
        s += detail::input_value(a.x[i * K + k]) * detail::input_value(b.x[k * N + j]);
      out[i * N + j] = static_cast<float>(static_cast<double>(c.x[i * N + j]) + s);
    }
  std::memcpy(d.x, out, sizeof out);
}

}  // namespace wmma
}  // namespace nvcuda
