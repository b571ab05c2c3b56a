// The CPU max_pool2d kernels of max_pool2d.h: the portable path and the choice of the SIMD ones
// (max_pool2d_simd.h: AVX-512 and AVX2, one template). Work items are (sample, channel) planes of
// contiguous NCHW, one thread per plane, so every result is the same for any thread count.
//
// Forward. With AVX-512 or AVX2 and a window column stride of 1 or 2, a SIMD path computes L outputs
// of a row at once (AVX-512: 16 float / 8 double; AVX2: 8 / 4): for each window tap it loads the L
// inputs (stride 2: two vectors, whose even lanes one permute picks), compares them with the running
// maximum under a mask and blends the value and the tap's offset in the window; the int32 index
// (AVX2 double: int64) is completed and widened to int64 at the store. Output rows go 4 at a time
// (across planes when planes are small; rows of at most L/2 outputs, float, stride 2: two rows to a
// vector), four independent compare-and-blend chains. The column geometry of each tap (load offset,
// valid lanes, load masks) is computed once per call; loads past a row's ends read whole vectors
// (the stray lanes are left out of the compare) unless they would leave the tensor, where masked loads
// are used. Otherwise (other column strides, the portable capability, planes of 2^30 elements or more,
// a window with no input element: windows.h's has_empty_windows) the portable row-at-a-time path runs.
//
// Backward. The general path zeroes each input plane and adds each gradient at its index in output
// order (deterministic: one thread owns a plane), after checking the plane's indices are in range.
// With a SIMD capability, windows 2 columns wide with column stride 2 that do not overlap (each input
// element in at most one window: the common 2x2 stride-2 pool), in rows long enough (max_pool2d_simd.h),
// write dx once instead: dy of the window where its index points at the element, 0 elsewhere (AVX-512:
// L outputs a step, the even and odd columns interleaved by one permute; AVX2 float: L/2 outputs a
// step, each output's int64 index lane deciding its two columns), with no zero pass and no
// read-modify-write. Each plane counts the indices it placed; if one is not inside its own window
// (indices are the caller's), the plane is redone by the general path. Problems with empty windows
// take the general path, which skips their outputs (their gradient is zero); so do the
// images-per-vector pooling and its backward (they return false).
#include "cpu/max_pool2d/max_pool2d.h"

#include <atomic>
#include <climits>
#include <vector>

#include "cpu/common/parallel.h"
#include "cpu/max_pool2d/max_pool2d_simd.h"
#include "cpu/max_pool2d/windows.h"

namespace cnnfast::cpu {
namespace {

template <typename T>
void max_pool2d_portable(const Pool2dProblem& p, const T* xp, T* yp, int64_t* ip) {
  const int64_t in_plane = p.H * p.W, out_plane = p.P * p.Q;
  parallel_for(0, p.planes(), 1, [&](int64_t begin, int64_t end) {
    std::vector<T> best(p.Q);
    if (in_plane <= INT32_MAX) {
      std::vector<int32_t> arg(p.Q);
      for (int64_t c = begin; c < end; ++c)
        max_pool2d_plane(p, xp + c * in_plane, yp + c * out_plane, ip + c * out_plane, best.data(), arg.data());
    } else {
      std::vector<int64_t> arg(p.Q);
      for (int64_t c = begin; c < end; ++c)
        max_pool2d_plane(p, xp + c * in_plane, yp + c * out_plane, ip + c * out_plane, best.data(), arg.data());
    }
  });
}

}  // namespace

template <typename T>
void max_pool2d_forward(const Pool2dProblem& p, const T* x, T* y, int64_t* indices, Capability cap) {
  if (cap != Capability::kDefault && !has_empty_windows(p)) {
    if (cap == Capability::kAvx512 ? max_pool2d_forward_avx512(p, x, y, indices)
                                   : max_pool2d_forward_avx2(p, x, y, indices))
      return;
  }
  max_pool2d_portable(p, x, y, indices);
}

template <typename T>
bool max_pool2d_backward(const Pool2dProblem& p, const T* dy, const int64_t* indices, T* dx, Capability cap) {
  const int64_t planes = p.planes(), in_plane = p.H * p.W, out_plane = p.P * p.Q;
  // Indices come from the caller: a plane with one outside its window is redone by the scatter,
  // which checks they are in range.
  std::atomic<bool> in_range{true};
  const bool has_empty = has_empty_windows(p);
  const bool avx512 = cap == Capability::kAvx512;
  const bool write_once = cap != Capability::kDefault && !has_empty &&
                          (avx512 ? max_pool2d_write_once_fits_avx512<T>(p) : max_pool2d_write_once_fits_avx2<T>(p));
  const std::vector<int32_t> row_window =
      write_once ? window_of_positions(p.H, p.P, p.kernel_h, p.stride_h, p.pad_h, p.dilation_h)
                 : std::vector<int32_t>();
  parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t* ic = indices + c * out_plane;
      T* dxc = dx + c * in_plane;
      const T* dyc = dy + c * out_plane;
      if (write_once && (avx512 ? max_pool2d_backward_plane_write_once_avx512(p, dyc, ic, dxc, row_window.data())
                                : max_pool2d_backward_plane_write_once_avx2(p, dyc, ic, dxc, row_window.data())))
        continue;
      if (!max_pool2d_backward_plane_scatter(p, dyc, ic, dxc, has_empty)) in_range = false;
    }
  });
  return in_range.load();
}

bool max_pool2d_ipv(const Pool2dProblem& p, int64_t planes, const float* x, float* y, int32_t* indices,
                    Capability cap) {
  if (cap == Capability::kDefault || has_empty_windows(p)) return false;
  return cap == Capability::kAvx512 ? max_pool2d_ipv_avx512(p, planes, x, y, indices)
                                    : max_pool2d_ipv_avx2(p, planes, x, y, indices);
}

bool max_pool2d_backward_ipv(const Pool2dProblem& p, int64_t planes, const float* dy, const int32_t* indices,
                             float* dx, int64_t dx_plane, int64_t dx_row, int64_t dx_first, Capability cap) {
  if (cap == Capability::kDefault || has_empty_windows(p)) return false;
  return cap == Capability::kAvx512
             ? max_pool2d_backward_ipv_avx512(p, planes, dy, indices, dx, dx_plane, dx_row, dx_first)
             : max_pool2d_backward_ipv_avx2(p, planes, dy, indices, dx, dx_plane, dx_row, dx_first);
}

template void max_pool2d_forward<float>(const Pool2dProblem&, const float*, float*, int64_t*, Capability);
template void max_pool2d_forward<double>(const Pool2dProblem&, const double*, double*, int64_t*, Capability);
template bool max_pool2d_backward<float>(const Pool2dProblem&, const float*, const int64_t*, float*, Capability);
template bool max_pool2d_backward<double>(const Pool2dProblem&, const double*, const int64_t*, double*, Capability);

}  // namespace cnnfast::cpu
