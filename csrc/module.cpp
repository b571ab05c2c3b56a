// `import cnnfast._C` loads this shared library, whose static initializers register the ops
// (torch.ops.cnnfast.*). The module's own functions are the plain helpers that are not compute ops:
// the CPU settings (cnnfast.backends.cpu), the CPU output cache (cnnfast.memory), the dtype sets
// (csrc/dtypes.h), the CPU's FMA-throughput probe (the bench's compute peak) and the tests' window on
// the Winograd transforms of each ISA. Underscored: the Python modules are their API. Limited C API
// (abi3).
#include <Python.h>

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string_view>
#include <vector>

#include "cpu/common/capability.h"
#include "cpu/common/fma_peak.h"
#include "cpu/common/output_cache.h"
#include "cpu/common/settings.h"
#include "cpu/conv2d/winograd.h"
#include "dtypes.h"

namespace {

using namespace cnnfast;

PyObject* dtype_names(const DtypeList& list) {
  PyObject* out = PyTuple_New(static_cast<Py_ssize_t>(list.size()));
  if (out == nullptr) return nullptr;
  Py_ssize_t i = 0;
  for (c10::ScalarType t : list) PyTuple_SetItem(out, i++, PyUnicode_FromString(c10::toString(t)));
  return out;
}

// (capability in use, supported capability, winograd, images_per_vector)
PyObject* cpu_settings(PyObject*, PyObject*) {
  const cpu::Settings s = cpu::cpu_settings();
  return Py_BuildValue("(ssss)", cpu::capability_name(s.capability),
                       cpu::capability_name(cpu::supported_capability()), cpu::switch_name(s.winograd),
                       cpu::switch_name(s.images_per_vector));
}

// The capability named `name`; false with a ValueError set for any other name.
bool capability_arg(const char* name, cpu::Capability* out) {
  if (cpu::parse_capability(name, out)) return true;
  PyErr_Format(PyExc_ValueError, "capability must be avx512, avx2 or default, got '%s'", name);
  return false;
}

// A supported capability named `name`; false with a ValueError set otherwise (a path above the CPU's
// would be an illegal instruction).
bool supported_capability_arg(const char* name, cpu::Capability* out) {
  if (!capability_arg(name, out)) return false;
  if (static_cast<int>(*out) <= static_cast<int>(cpu::supported_capability())) return true;
  PyErr_Format(PyExc_ValueError, "this CPU supports at most capability %s, got '%s'",
               cpu::capability_name(cpu::supported_capability()), name);
  return false;
}

PyObject* set_cpu_capability(PyObject*, PyObject* args) {
  const char* name = nullptr;
  if (!PyArg_ParseTuple(args, "s", &name)) return nullptr;
  cpu::Capability c;
  if (!capability_arg(name, &c)) return nullptr;
  cpu::set_capability(c);
  Py_RETURN_NONE;
}

// One run of the FMA-throughput probe (cpu/common/fma_peak.h) on torch's threads:
// (flops, seconds, threads, chains, lanes, checksum).
PyObject* cpu_fma_peak(PyObject*, PyObject* args) {
  const char *name = nullptr, *dtype = nullptr;
  long long iterations = 0;
  if (!PyArg_ParseTuple(args, "ssL", &name, &dtype, &iterations)) return nullptr;
  cpu::Capability c;
  if (!supported_capability_arg(name, &c)) return nullptr;
  const std::string_view d(dtype);
  if (d != "float32" && d != "float64") {
    PyErr_Format(PyExc_ValueError, "dtype must be float32 or float64, got '%s'", dtype);
    return nullptr;
  }
  if (iterations < 1) {
    PyErr_Format(PyExc_ValueError, "iterations must be >= 1, got %lld", iterations);
    return nullptr;
  }
  cpu::FmaPeak r;
  Py_BEGIN_ALLOW_THREADS
  r = d == "float32" ? cpu::fma_peak<float>(c, iterations) : cpu::fma_peak<double>(c, iterations);
  Py_END_ALLOW_THREADS
  return Py_BuildValue("(Ldiiid)", static_cast<long long>(r.flops), r.seconds, r.threads, cpu::kFmaPeakChains,
                       r.lanes, r.checksum);
}

// The float32 contents of a bytes object of exactly n floats; null with a ValueError set otherwise.
const float* floats_arg(PyObject* o, int64_t n, const char* what) {
  char* data = nullptr;
  Py_ssize_t size = 0;
  if (PyBytes_AsStringAndSize(o, &data, &size) != 0) return nullptr;
  if (size != static_cast<Py_ssize_t>(n * sizeof(float))) {
    PyErr_Format(PyExc_ValueError, "%s must hold %lld float32 values, got %lld bytes", what,
                 static_cast<long long>(n), static_cast<long long>(size));
    return nullptr;
  }
  return reinterpret_cast<const float*>(data);
}

PyObject* floats_bytes(const std::vector<float>& v) {
  return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(v.data()),
                                   static_cast<Py_ssize_t>(v.size() * sizeof(float)));
}

// cpu::winograd_transforms (conv2d/winograd.h) on bytes of float32: (capability, (N, C, H, W, K,
// pad_h, pad_w), x, w, dy, m, du, bias or None, relu) -> (v, y, u, vt, d, dw).
PyObject* cpu_winograd_transforms(PyObject*, PyObject* args) {
  const char* name = nullptr;
  long long N, C, H, W, K, ph, pw;
  PyObject *x, *w, *dy, *m, *du, *bias;
  int relu = 0;
  if (!PyArg_ParseTuple(args, "s(LLLLLLL)OOOOOOp", &name, &N, &C, &H, &W, &K, &ph, &pw, &x, &w, &dy, &m, &du,
                        &bias, &relu))
    return nullptr;
  cpu::Capability c;
  if (!supported_capability_arg(name, &c)) return nullptr;
  Conv2dProblem p;
  p.N = N, p.C = C, p.H = H, p.W = W, p.K = K, p.R = 3, p.S = 3, p.pad_h = ph, p.pad_w = pw;
  p.compute_output_size();
  if (N < 1 || C < 1 || K < 1 || ph < 0 || pw < 0 || !cpu::winograd_applies(p)) {
    PyErr_SetString(PyExc_ValueError, "the problem must have N, C, K >= 1, padding >= 0 and a non-empty output");
    return nullptr;
  }
  const int64_t tp = cpu::winograd_layout(p).groups * cpu::kWinoLanes;
  const float* xf = floats_arg(x, p.input_numel(), "x");
  const float* wf = xf ? floats_arg(w, K * C * 9, "w") : nullptr;
  const float* dyf = wf ? floats_arg(dy, p.output_numel(), "dy") : nullptr;
  const float* mf = dyf ? floats_arg(m, 16 * K * tp, "m") : nullptr;
  const float* duf = mf ? floats_arg(du, 16 * K * C, "du") : nullptr;
  if (duf == nullptr) return nullptr;
  const float* bf = nullptr;
  if (bias != Py_None && (bf = floats_arg(bias, K, "bias")) == nullptr) return nullptr;
  const cpu::WinoTransforms r = cpu::winograd_transforms(c, p, xf, wf, dyf, mf, duf, bf, relu != 0);
  return Py_BuildValue("(NNNNNN)", floats_bytes(r.v), floats_bytes(r.y), floats_bytes(r.u), floats_bytes(r.vt),
                       floats_bytes(r.d), floats_bytes(r.dw));
}

PyObject* set_cpu_switch(PyObject*, PyObject* args) {
  const char *which = nullptr, *name = nullptr;
  if (!PyArg_ParseTuple(args, "ss", &which, &name)) return nullptr;
  cpu::Switch s;
  if (!cpu::parse_switch(name, &s)) {
    PyErr_Format(PyExc_ValueError, "%s must be auto, on or off, got '%s'", which, name);
    return nullptr;
  }
  const std::string_view w(which);
  if (w == "winograd") {
    cpu::set_winograd(s);
  } else if (w == "images_per_vector") {
    cpu::set_images_per_vector(s);
  } else {
    PyErr_Format(PyExc_ValueError, "no CPU switch named '%s'", which);
    return nullptr;
  }
  Py_RETURN_NONE;
}

// (held bytes, limit bytes, hits, misses)
PyObject* cpu_cache_stats(PyObject*, PyObject*) {
  const cpu::OutputCacheStats s = cpu::output_cache_stats();
  return Py_BuildValue("(LLLL)", static_cast<long long>(s.cached_bytes), static_cast<long long>(s.limit_bytes),
                       static_cast<long long>(s.hits), static_cast<long long>(s.misses));
}

PyObject* set_cpu_cache_limit(PyObject*, PyObject* args) {
  long long bytes = 0;
  if (!PyArg_ParseTuple(args, "L", &bytes)) return nullptr;
  if (bytes < 0) {
    PyErr_Format(PyExc_ValueError, "the output cache's limit must be >= 0 bytes, got %lld", bytes);
    return nullptr;
  }
  cpu::set_output_cache_limit(static_cast<int64_t>(bytes));
  Py_RETURN_NONE;
}

PyObject* empty_cpu_cache(PyObject*, PyObject*) {
  cpu::empty_output_cache();
  Py_RETURN_NONE;
}

PyObject* cpu_dtypes(PyObject*, PyObject*) { return dtype_names(kCpuDtypes); }
PyObject* cuda_dtypes(PyObject*, PyObject*) { return dtype_names(kCudaDtypes); }

PyMethodDef methods[] = {
    {"_cpu_settings", cpu_settings, METH_NOARGS, "CPU settings: (capability, supported, winograd, images_per_vector)"},
    {"_set_cpu_capability", set_cpu_capability, METH_VARARGS, "Request a CPU SIMD path"},
    {"_set_cpu_switch", set_cpu_switch, METH_VARARGS, "Set a CPU algorithm switch"},
    {"_cpu_cache_stats", cpu_cache_stats, METH_NOARGS, "CPU output cache: (held, limit, hits, misses)"},
    {"_set_cpu_cache_limit", set_cpu_cache_limit, METH_VARARGS, "CPU output cache limit in bytes"},
    {"_empty_cpu_cache", empty_cpu_cache, METH_NOARGS, "Free the CPU output cache's blocks"},
    {"_cpu_dtypes", cpu_dtypes, METH_NOARGS, "The dtypes of the CPU kernels (c10 names)"},
    {"_cuda_dtypes", cuda_dtypes, METH_NOARGS, "The dtypes of the CUDA kernels (c10 names)"},
    {"_cpu_fma_peak", cpu_fma_peak, METH_VARARGS,
     "CPU FMA probe (capability, dtype, iterations): (flops, seconds, threads, chains, lanes, checksum)"},
    {"_cpu_winograd_transforms", cpu_winograd_transforms, METH_VARARGS,
     "Each Winograd transform of one CPU capability on float32 bytes (the tests' window on them)"},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};
  return PyModule_Create(&module);
}
