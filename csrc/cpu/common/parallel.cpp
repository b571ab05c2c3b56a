// parallel.h's door to at::parallel_for: the one CPU kernel file that includes ATen's threading.
#include "cpu/common/parallel.h"

#include <ATen/Parallel.h>

namespace cnnfast::cpu {

void parallel_for_erased(int64_t begin, int64_t end, int64_t grain, RangeFn fn, void* context) {
  at::parallel_for(begin, end, grain, [&](int64_t b, int64_t e) { fn(context, b, e); });
}

int num_threads() { return at::get_num_threads(); }

}  // namespace cnnfast::cpu
