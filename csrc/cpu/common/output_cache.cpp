// The output cache of output_cache.h and outputs.h: a c10::Allocator whose freed blocks wait, keyed by size, for the
// next request of that size. One mutex guards it (a block may be freed on any thread).
#include "cpu/common/output_cache.h"
#include "cpu/common/outputs.h"

#include <pthread.h>

#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <c10/util/strides.h>

#include <atomic>
#include <deque>
#include <iterator>
#include <list>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace cnnfast::cpu {
namespace {

constexpr std::align_val_t kAlign{64};
// Each block starts with a header of one cache line (its capacity); the data follows, 64-byte aligned.
constexpr std::size_t kHeader = 64;
constexpr std::size_t kPage = 4096;

// Free blocks wait in `order_` (oldest first) and, by size, in `by_size_` (a deque of positions in
// `order_`, oldest first). A request takes the newest block of its size (the likeliest still in cache);
// past the byte limit, the oldest blocks of any size are freed first.
class OutputCache final : public c10::Allocator {
 public:

  c10::DataPtr allocate(std::size_t n) override {
    const std::size_t cap = (n + kPage - 1) / kPage * kPage;
    void* base = take(cap);
    if (base == nullptr) {
      base = ::operator new(kHeader + cap, kAlign);
      *static_cast<std::size_t*>(base) = cap;
    }
    return {static_cast<char*>(base) + kHeader, base, &release, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  void lock() { mutex_.lock(); }
  void unlock() { mutex_.unlock(); }

  OutputCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {cached_bytes_, limit(), hits_, misses_};
  }

  int64_t limit() const { return limit_.load(std::memory_order_relaxed); }
  // A new limit; blocks past it are freed, oldest first.
  void set_limit(int64_t bytes) {
    std::vector<void*> dropped;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      limit_.store(bytes, std::memory_order_relaxed);
      evict_to(0, dropped);
    }
    for (void* p : dropped) ::operator delete(p, kAlign);
  }
  void empty() {
    std::list<Block> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      blocks.swap(order_);
      by_size_.clear();
      cached_bytes_ = 0;
    }
    for (const Block& b : blocks) ::operator delete(b.base, kAlign);
  }

 private:
  struct Block {
    void* base;
    std::size_t cap;
  };

  void* take(std::size_t cap) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = by_size_.find(cap);
    if (it == by_size_.end() || it->second.empty()) {
      ++misses_;
      return nullptr;
    }
    const auto pos = it->second.back();
    it->second.pop_back();
    void* base = pos->base;
    order_.erase(pos);
    cached_bytes_ -= static_cast<int64_t>(cap);
    ++hits_;
    return base;
  }

  // The deleter of every block (hands it to keep).
  static void release(void* base);
  // Holds a freed block, first freeing the oldest held ones while the limit would be passed; a block
  // larger than the limit on its own is freed instead.
  void keep(void* base, std::size_t cap) {
    std::vector<void*> dropped;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (static_cast<int64_t>(cap) > limit()) {
        dropped.push_back(base);
      } else {
        evict_to(static_cast<int64_t>(cap), dropped);
        order_.push_back({base, cap});
        by_size_[cap].push_back(std::prev(order_.end()));
        cached_bytes_ += static_cast<int64_t>(cap);
      }
    }
    for (void* p : dropped) ::operator delete(p, kAlign);
  }

  // Frees the oldest held blocks (into `dropped`, freed by the caller outside the lock) until `room`
  // more bytes fit under the limit. The mutex is held.
  void evict_to(int64_t room, std::vector<void*>& dropped) {
    while (!order_.empty() && cached_bytes_ + room > limit()) {
      const Block& old = order_.front();
      auto& same = by_size_[old.cap];  // the oldest block overall is the oldest of its size
      TORCH_INTERNAL_ASSERT_DEBUG_ONLY(!same.empty() && same.front() == order_.begin());
      same.pop_front();
      cached_bytes_ -= static_cast<int64_t>(old.cap);
      dropped.push_back(old.base);
      order_.pop_front();
    }
  }

  std::mutex mutex_;
  std::atomic<int64_t> limit_{kOutputCacheDefaultBytes};
  std::list<Block> order_;
  std::unordered_map<std::size_t, std::deque<std::list<Block>::iterator>> by_size_;
  int64_t cached_bytes_ = 0, hits_ = 0, misses_ = 0;
};

// Never destroyed: tensors that outlive static destruction still give their blocks back. A fork
// waits for the mutex (prepare) and releases it on both sides, so a child (a DataLoader worker) never
// inherits it locked by a thread it does not have.
OutputCache& cache() {
  static OutputCache* c = [] {
    auto* made = new OutputCache();
    pthread_atfork([] { cache().lock(); }, [] { cache().unlock(); }, [] { cache().unlock(); });
    return made;
  }();
  return *c;
}

void OutputCache::release(void* base) { cache().keep(base, *static_cast<std::size_t*>(base)); }

at::Tensor fresh(at::IntArrayRef sizes, at::IntArrayRef strides, at::ScalarType dtype) {
  const std::size_t bytes =
      at::detail::computeStorageNbytes(sizes, strides, c10::elementSize(dtype));
  const c10::DispatchKeySet ks(c10::DispatchKey::CPU);
  if (bytes < kOutputCacheMinBytes || cache().limit() == 0)
    return at::detail::empty_strided_generic(sizes, strides, c10::GetCPUAllocator(), ks, dtype);
  return at::detail::empty_strided_generic(sizes, strides, &cache(), ks, dtype);
}

}  // namespace

at::Tensor new_output(at::IntArrayRef sizes, at::ScalarType dtype) {
  return fresh(sizes, c10::contiguous_strides(sizes), dtype);
}

at::Tensor new_output_like(const at::Tensor& t) {
  TORCH_INTERNAL_ASSERT(t.is_non_overlapping_and_dense());
  return fresh(t.sizes(), t.strides(), t.scalar_type());
}

OutputCacheStats output_cache_stats() { return cache().stats(); }
void empty_output_cache() { cache().empty(); }
void set_output_cache_limit(int64_t bytes) { cache().set_limit(bytes); }

}  // namespace cnnfast::cpu
