// The CPU ops' outputs: new tensors whose memory of kOutputCacheMinBytes or more comes from the
// output cache (output_cache.h), the rest from torch's CPU allocator.
#pragma once

#include <ATen/core/Tensor.h>

#include "cpu/common/output_cache.h"

namespace cnnfast::cpu {

// A new contiguous CPU tensor of `sizes` with dtype `dtype`.
at::Tensor new_output(at::IntArrayRef sizes, at::ScalarType dtype);
// A new tensor with t's sizes, dtype and strides (t must be non-overlapping and dense, as
// at::empty_like keeps the strides of such a tensor).
at::Tensor new_output_like(const at::Tensor& t);

}  // namespace cnnfast::cpu
