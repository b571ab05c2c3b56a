// The convention of the host launchers of cnnfast's CUDA kernels: each op declares its launchers in
// csrc/cuda/<op>.h, defines them in its nvcc translation units (csrc/cuda/<op>*.cu) and calls them
// from its ATen glue (csrc/cuda/<op>_ops.cpp). Framework-free: raw pointers, sizes, problem structs
// (csrc/problem.h) and a stream. Every launcher launches on `stream` and returns cudaGetLastError()
// after its launches; sizes are nonzero (the glue returns early on empty tensors).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "problem.h"

namespace cnnfast {
namespace cuda {

// Storage type of the tensors of one call.
enum class Dtype : int { f32 = 0, f16 = 1, bf16 = 2 };

}  // namespace cuda
}  // namespace cnnfast
