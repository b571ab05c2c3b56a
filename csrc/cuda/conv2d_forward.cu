// nvcc translation unit of the conv2d forward (implicit GEMM with the bias + ReLU epilogue: the
// mma.sync engine for half, bfloat16 and TF32, WMMA for grouped convolutions, FFMA for float) and of
// grad-bias, for float, half and bfloat16.
#include "common/dispatch.cuh"
#include "conv2d.h"
#include "conv2d_wmma_kernel.cuh"

namespace cnnfast {
namespace cuda {

namespace {
// SMs of the current device, asked once per device.
int current_sm_count() {
  constexpr int kMaxDevices = 64;
  static int counts[kMaxDevices] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) return 108;
  if (counts[dev] == 0) {
    int n = 0;
    if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n <= 0) n = 108;
    counts[dev] = n;
  }
  return counts[dev];
}
}  // namespace

int64_t conv2d_forward_workspace(Dtype t, const Conv2dProblem& p, bool nhwc, bool allow_tf32) {
  int64_t bytes = 0;
  const int sms = current_sm_count();
  with_type(t, [&](auto* tag) { bytes = conv2d_forward_workspace<CNNFAST_TYPE_OF(tag)>(p, nhwc, allow_tf32, sms); });
  return bytes;
}

cudaError_t launch_conv2d_forward(Dtype t, const Conv2dProblem& p, bool nhwc, const void* x, const void* w,
                                  const void* bias, bool relu, bool allow_tf32, void* y, void* workspace,
                                  cudaStream_t stream) {
  const int sms = current_sm_count();
  with_type(t, [&](auto* tag) {
    using T = CNNFAST_TYPE_OF(tag);
    conv2d_forward(p, nhwc, static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias), relu,
                   allow_tf32, static_cast<T*>(y), workspace, sms, stream);
  });
  return cudaGetLastError();
}

int64_t conv2d_grad_bias_workspace(const Conv2dProblem& p) { return pixel_splits(p) * p.K; }

cudaError_t launch_conv2d_grad_bias(Dtype t, const Conv2dProblem& p, bool nhwc, const void* dy,
                                    const void* relu_out, void* db, float* workspace, cudaStream_t stream) {
  with_type(t, [&](auto* tag) {
    using T = CNNFAST_TYPE_OF(tag);
    conv2d_grad_bias(p, nhwc, static_cast<const T*>(dy), static_cast<const T*>(relu_out), static_cast<T*>(db),
                     workspace, stream);
  });
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace cnnfast
