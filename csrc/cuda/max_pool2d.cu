// nvcc translation unit of the max_pool2d kernels (forward, backward) for float, half and bfloat16:
// the launchers of max_pool2d.h.
#include "common/dispatch.cuh"
#include "max_pool2d.h"
#include "max_pool2d_kernel.cuh"

namespace cnnfast {
namespace cuda {

cudaError_t launch_max_pool2d_forward(Dtype t, const Pool2dProblem& p, bool nhwc, const void* x, void* y,
                                      int64_t* indices, cudaStream_t stream) {
  with_type(t, [&](auto* tag) {
    using T = CNNFAST_TYPE_OF(tag);
    max_pool2d_forward(p, nhwc, static_cast<const T*>(x), static_cast<T*>(y), indices, stream);
  });
  return cudaGetLastError();
}

cudaError_t launch_max_pool2d_backward(Dtype t, const Pool2dProblem& p, bool nhwc, bool gather, const void* dy,
                                       const int64_t* indices, void* dx, cudaStream_t stream) {
  with_type(t, [&](auto* tag) {
    using T = CNNFAST_TYPE_OF(tag);
    max_pool2d_backward(p, nhwc, gather, static_cast<const T*>(dy), indices, static_cast<T*>(dx), stream);
  });
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace cnnfast
