// nvcc translation unit of the memory-bound kernels: relu (forward, in place, backward) and
// max_pool2d (forward, backward), for float, half and bfloat16.
#include "dispatch.cuh"
#include "max_pool2d_kernel.cuh"
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
