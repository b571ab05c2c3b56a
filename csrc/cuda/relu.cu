// nvcc translation unit of the relu kernels (forward, in place, backward) for float, half and
// bfloat16: the launchers of relu.h.
#include "common/dispatch.cuh"
#include "relu.h"
#include "relu_kernel.cuh"

namespace cnnfast {
namespace cuda {

cudaError_t launch_relu(Dtype t, const void* x, void* y, int64_t n, cudaStream_t stream) {
  with_type(t, [&](auto* tag) {
    using T = CNNFAST_TYPE_OF(tag);
    relu(static_cast<const T*>(x), static_cast<T*>(y), n, stream);
  });
  return cudaGetLastError();
}

cudaError_t launch_relu_backward(Dtype t, const void* dy, const void* y, void* dx, int64_t n,
                                 cudaStream_t stream) {
  with_type(t, [&](auto* tag) {
    using T = CNNFAST_TYPE_OF(tag);
    relu_backward(static_cast<const T*>(dy), static_cast<const T*>(y), static_cast<T*>(dx), n, stream);
  });
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace cnnfast
