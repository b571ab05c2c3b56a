// ATen's parallel_for behind a framework-free door: the CPU kernels split their work with
// cnnfast::cpu::parallel_for, which runs at::parallel_for (parallel.cpp), so they share torch's thread
// pool and torch.set_num_threads governs them, without any torch header in the kernels.
// Semantics are at::parallel_for's: f(begin, end) over chunks of [begin, end) of at least `grain`
// elements, run inline when the range is small or when called from inside a parallel region; an
// exception thrown by f is rethrown on the calling thread.
#pragma once

#include <cstdint>
#include <type_traits>

namespace cnnfast::cpu {

using RangeFn = void (*)(void* context, int64_t begin, int64_t end);
void parallel_for_erased(int64_t begin, int64_t end, int64_t grain, RangeFn fn, void* context);

// The number of threads parallel_for may use (at::get_num_threads()).
int num_threads();

template <typename F>
inline void parallel_for(int64_t begin, int64_t end, int64_t grain, F&& f) {
  using Fn = std::remove_cvref_t<F>;
  const RangeFn call = [](void* context, int64_t b, int64_t e) { (*static_cast<Fn*>(context))(b, e); };
  parallel_for_erased(begin, end, grain, call, const_cast<Fn*>(&f));
}

}  // namespace cnnfast::cpu
