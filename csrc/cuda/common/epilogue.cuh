// The epilogue of cnnfast's convolution kernels, written once: output = relu?(accumulator + bias[channel]),
// converted once to the storage type and stored. Modeled on CUTLASS's epilogue functors
// (LinearCombinationRelu): the kernel maps each accumulator to its output offset and channel, the
// functor does the arithmetic and the store, so every engine (FFMA GEMM, tensor cores, depthwise)
// gives the same bits for the same sums. Framework-free: nvcc or g++ with the CPU harness.
#pragma once

#include <cstdint>

#include "kernel_utils.cuh"

namespace cnnfast {
namespace cuda {

// A default one (no bias, no ReLU) stores the accumulator as it is (the backward passes).
template <class T>
struct BiasReluEpilogue {
  const T* bias = nullptr;  // one per output channel, or null
  bool relu = false;

  // Float math on the float accumulator; relu(NaN) stays NaN (as torch's).
  CNNFAST_DEVICE float apply(float acc, int64_t channel) const {
    if (bias) acc += to_float(bias[channel]);
    if (relu) acc = acc < 0.0f ? 0.0f : acc;
    return acc;
  }

  CNNFAST_DEVICE void store(T* out, int64_t offset, float acc, int64_t channel) const {
    out[offset] = from_float<T>(apply(acc, channel));
  }
};

}  // namespace cuda
}  // namespace cnnfast
