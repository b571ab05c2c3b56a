// The per-thread scratch pool of scratch.h.
#include "cpu/common/scratch.h"

#include <new>

namespace cnnfast::cpu {
namespace {

constexpr std::align_val_t kAlign{64};

void* allocate(std::size_t bytes) { return ::operator new(bytes, kAlign); }
void deallocate(void* p) { ::operator delete(p, kAlign); }

struct Pool {
  void* p[kScratchPoolBlocks] = {};
  std::size_t cap[kScratchPoolBlocks] = {};
  std::size_t count = 0, bytes = 0;
  void remove(std::size_t i) {
    bytes -= cap[i];
    --count;
    p[i] = p[count], cap[i] = cap[count];
  }
  ~Pool() {
    for (std::size_t i = 0; i < count; ++i) deallocate(p[i]);
  }
};

thread_local Pool pool;

}  // namespace

void* scratch_acquire(std::size_t bytes, std::size_t* capacity) {
  // The smallest pooled block that fits and is at most 4x the request (a large block is not tied up
  // by a small request); small requests bypass the pool.
  std::size_t best = kScratchPoolBlocks;
  for (std::size_t i = 0; i < pool.count && bytes >= kScratchPoolMinBytes; ++i)
    if (pool.cap[i] >= bytes && pool.cap[i] / 4 <= bytes && (best == kScratchPoolBlocks || pool.cap[i] < pool.cap[best]))
      best = i;
  if (best != kScratchPoolBlocks) {
    void* p = pool.p[best];
    *capacity = pool.cap[best];
    pool.remove(best);
    return p;
  }
  *capacity = bytes;
  return allocate(bytes);
}

void scratch_release(void* p, std::size_t capacity) {
  if (capacity > kScratchPoolBytes || capacity < kScratchPoolMinBytes) {
    deallocate(p);
    return;
  }
  // Make room: drop the smallest pooled blocks while the pool is full or over its byte budget.
  while (pool.count > 0 && (pool.count == kScratchPoolBlocks || pool.bytes + capacity > kScratchPoolBytes)) {
    std::size_t smallest = 0;
    for (std::size_t i = 1; i < pool.count; ++i)
      if (pool.cap[i] < pool.cap[smallest]) smallest = i;
    if (pool.cap[smallest] >= capacity) {  // every pooled block is at least as large: keep them
      deallocate(p);
      return;
    }
    deallocate(pool.p[smallest]);
    pool.remove(smallest);
  }
  pool.p[pool.count] = p, pool.cap[pool.count] = capacity;
  pool.bytes += capacity;
  ++pool.count;
}

}  // namespace cnnfast::cpu
