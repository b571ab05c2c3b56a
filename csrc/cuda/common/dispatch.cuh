// Storage type dispatch of the nvcc translation units (csrc/cuda/*.cu).
#pragma once

#include <type_traits>

#include "kernel_utils.cuh"
#include "launcher.h"

namespace cnnfast {
namespace cuda {

// Call f with a null pointer of the storage type named by t.
template <class F>
void with_type(Dtype t, F&& f) {
  switch (t) {
    case Dtype::f32: f(static_cast<float*>(nullptr)); break;
    case Dtype::f16: f(static_cast<__half*>(nullptr)); break;
    case Dtype::bf16: f(static_cast<__nv_bfloat16*>(nullptr)); break;
  }
}

}  // namespace cuda
}  // namespace cnnfast

#define CNNFAST_TYPE_OF(tag) std::remove_pointer_t<decltype(tag)>
