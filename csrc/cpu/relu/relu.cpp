// The threaded ReLU passes of relu.h.
#include "cpu/relu/relu.h"

#include "cpu/common/parallel.h"

namespace cnnfast::cpu {

template <typename T>
void relu_forward(const T* x, T* y, int64_t n, Capability cap) {
  parallel_for(0, n, kReluGrain, [&](int64_t b, int64_t e) { relu_span(cap, x + b, y + b, e - b); });
}

template <typename T>
void relu_backward(const T* g, const T* y, T* d, int64_t n, Capability cap) {
  parallel_for(0, n, kReluGrain, [&](int64_t b, int64_t e) { relu_mask_span(cap, g + b, y + b, d + b, e - b); });
}

template void relu_forward<float>(const float*, float*, int64_t, Capability);
template void relu_forward<double>(const double*, double*, int64_t, Capability);
template void relu_backward<float>(const float*, const float*, float*, int64_t, Capability);
template void relu_backward<double>(const double*, const double*, double*, int64_t, Capability);

}  // namespace cnnfast::cpu
