// Scratch memory for the CPU kernels, framework-free: cache-line aligned, left uninitialized (every use
// fills it first), and reused from call to call. A fresh multi-megabyte allocation per call costs the
// kernel a page fault and a zero-filled page per 4 KB (benchmarks/NOTES.md has the measured cost),
// so a released block goes back to a small pool of the thread that released it, and the next request
// of that thread takes the smallest pooled block that fits (if at most 4x the request). The pool keeps
// at most kScratchPoolBlocks blocks and kScratchPoolBytes bytes per thread (larger blocks are freed on
// release; blocks under kScratchPoolMinBytes, which malloc serves without page faults, bypass it) and
// is freed when its thread exits.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cnnfast::cpu {

constexpr std::size_t kScratchPoolBlocks = 8;
constexpr std::size_t kScratchPoolBytes = std::size_t(128) << 20;  // 128 MB per thread
constexpr std::size_t kScratchPoolMinBytes = std::size_t(64) << 10;  // 64 KB

// At least `bytes` bytes (64-byte aligned); *capacity receives the block's true size.
void* scratch_acquire(std::size_t bytes, std::size_t* capacity);
// Gives a block from scratch_acquire back (to this thread's pool, or to the system).
void scratch_release(void* p, std::size_t capacity);

// A typed block of n elements that returns itself to the pool when it goes out of scope.
template <typename T>
class Scratch {
 public:
  explicit Scratch(int64_t n)
      : p_(static_cast<T*>(scratch_acquire(sizeof(T) * static_cast<std::size_t>(n > 0 ? n : 1), &cap_))) {}
  ~Scratch() {
    if (p_ != nullptr) scratch_release(p_, cap_);
  }
  Scratch(Scratch&& o) noexcept : cap_(o.cap_), p_(o.p_) { o.p_ = nullptr; }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T* data() { return p_; }
  const T* data() const { return p_; }
  T& operator[](int64_t i) { return p_[i]; }
  const T& operator[](int64_t i) const { return p_[i]; }

 private:
  std::size_t cap_ = 0;
  T* p_;
};

}  // namespace cnnfast::cpu
