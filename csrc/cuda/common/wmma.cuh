// nvcuda::wmma for kernels that build both ways: the CUDA header under nvcc, the CPU harness's
// implementation (csrc/cuda_on_cpu/wmma.h) under g++.
#pragma once

#if defined(__CUDACC__)
#include <mma.h>
#else
#include "../../cuda_on_cpu/wmma.h"
#endif
