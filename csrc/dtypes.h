// The dtypes each backend has kernels for: defined here once, checked by the glue (checks.h) and
// exposed to Python (module.cpp: cnnfast.backends.cpu.dtypes, cnnfast.ops.supported_dtypes).
#pragma once

#include <c10/core/ScalarType.h>

#include <initializer_list>

namespace cnnfast {

using DtypeList = std::initializer_list<c10::ScalarType>;

inline const DtypeList kCpuDtypes = {c10::ScalarType::Float, c10::ScalarType::Double};
inline const DtypeList kCudaDtypes = {c10::ScalarType::Float, c10::ScalarType::Half, c10::ScalarType::BFloat16};

}  // namespace cnnfast
