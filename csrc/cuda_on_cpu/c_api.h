// The C side of a harness library loaded with ctypes (cnnfast/_cuda_on_cpu.py): the thread
// order of the launches that follow, the last error, and `guarded`, which turns a launch's
// cuda_on_cpu::KernelError into a return code. Include in exactly one .cpp of a library.
#pragma once

#include <exception>
#include <string>

#include "cuda_on_cpu.h"
#include "sm80.h"

namespace cuda_on_cpu {
namespace c_api {

inline std::string& last_error() {
  static std::string e;
  return e;
}

// Run f (which launches kernels); 0 on success, 1 with the message kept for coc_last_error.
template <class F>
int guarded(F&& f) {
  try {
    f();
    last_error().clear();
    return 0;
  } catch (const std::exception& e) {
    last_error() = e.what();
    return 1;
  }
}

}  // namespace c_api
}  // namespace cuda_on_cpu

extern "C" {

// order: 0 forward, 1 reversed, 2 shuffled by seed (anew after every barrier).
__attribute__((visibility("default"))) void coc_set_order(int order, unsigned long long seed) {
  cuda_on_cpu::options().order = static_cast<cuda_on_cpu::Order>(order);
  cuda_on_cpu::options().seed = seed;
}

// Shared-memory accesses and bank conflicts (extra wavefronts) of the sm_80 warp primitives since
// the last reset, by kind: 0 ldmatrix, 1 lds, 2 sts (cuda_on_cpu/sm80.h).
__attribute__((visibility("default"))) void coc_bank_counts(int kind, unsigned long long* accesses,
                                                            unsigned long long* conflicts) {
  const auto& c = cuda_on_cpu::sm80::bank_counts();
  *accesses = kind >= 0 && kind < cuda_on_cpu::sm80::kSharedKinds ? c.accesses[kind] : 0;
  *conflicts = kind >= 0 && kind < cuda_on_cpu::sm80::kSharedKinds ? c.conflicts[kind] : 0;
}

__attribute__((visibility("default"))) void coc_reset_bank_counts() {
  cuda_on_cpu::sm80::bank_counts() = cuda_on_cpu::sm80::BankCounts{};
}

__attribute__((visibility("default"))) const char* coc_last_error() {
  return cuda_on_cpu::c_api::last_error().c_str();
}

}  // extern "C"
