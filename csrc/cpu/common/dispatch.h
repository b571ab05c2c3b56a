// The CPU kernels' dtype dispatch: f(float{}) or f(double{}) by the tensor's dtype (the glue has
// checked it is one of the two), without ATen/Dispatch.h's weight.
#pragma once

#include <c10/core/ScalarType.h>

namespace cnnfast::cpu {

template <typename F>
void dispatch_floating(c10::ScalarType t, F&& f) {
  if (t == c10::ScalarType::Float) {
    f(float{});
  } else {
    f(double{});
  }
}

}  // namespace cnnfast::cpu
