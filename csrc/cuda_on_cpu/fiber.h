// cuda_on_cpu, one part of cuda_on_cpu.h (include that header, not this one): CUDA threads as
// fibers. Each thread of the running block is a ucontext fiber with its own stack (mapped once and
// reused, guard pages below it); a fiber runs until it waits at a barrier or a warp collective, or
// ends, and then switches back to the scheduler (scheduler.h). Also here: the launch record, the
// running launch, block and thread, the messages that name them, and the report of a fiber's
// stack overflow.
#pragma once

#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace cuda_on_cpu {
namespace detail {

constexpr int kWarp = 32;

enum class State : uint8_t { runnable, at_barrier, at_warp, done };
enum class WarpOp : uint8_t { syncwarp, shfl, shfl_up, shfl_down, shfl_xor, ballot, any, all, wmma, sm80 };

inline const char* warp_op_name(WarpOp op) {
  switch (op) {
    case WarpOp::syncwarp: return "__syncwarp";
    case WarpOp::shfl: return "__shfl_sync";
    case WarpOp::shfl_up: return "__shfl_up_sync";
    case WarpOp::shfl_down: return "__shfl_down_sync";
    case WarpOp::shfl_xor: return "__shfl_xor_sync";
    case WarpOp::ballot: return "__ballot_sync";
    case WarpOp::any: return "__any_sync";
    case WarpOp::all: return "__all_sync";
    case WarpOp::wmma: return "wmma (warp-wide *_sync)";
    case WarpOp::sm80: return "mma.sync / ldmatrix / lds / sts (warp-wide)";
  }
  return "?";
}

// A cp.async copy in flight (sm80.h): the source's bytes as read at issue, landed at a wait.
struct AsyncCopy {
  unsigned char* dst = nullptr;
  unsigned char data[16] = {};
  int bytes = 0;
};

struct Fiber {
  ucontext_t ctx;
  // cp.async: this thread's copies not yet committed, and its committed groups, oldest first.
  std::vector<AsyncCopy> async_open;
  std::vector<std::vector<AsyncCopy>> async_groups;
  uint3 tid;
  unsigned linear = 0;
  State state = State::runnable;
  // Where the thread waits (barrier or warp collective).
  const char* file = nullptr;
  int line = 0;
  // Warp collective record.
  WarpOp op = WarpOp::syncwarp;
  unsigned mask = 0;
  uint64_t value = 0;
  int arg = 0;
  int width = kWarp;
  uint64_t result = 0;
#if CUDA_ON_CPU_ASAN
  void* fake_stack = nullptr;
#endif
};

struct Stack {
  char* base = nullptr;  // mapping start (guard pages)
  size_t bytes = 0;      // usable bytes above the guard pages
  char* bottom() const { return base + guard(); }
  static size_t page() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
  // 64 KiB of guard: a frame with a few pages of locals cannot jump over it into the stack below.
  static size_t guard() { return 16 * page(); }
};

// Stacks are mapped once and reused by every block of every launch.
inline std::vector<Stack>& stack_pool() {
  static std::vector<Stack> pool;
  return pool;
}

inline void ensure_stacks(size_t count, size_t bytes) {
  auto& pool = stack_pool();
  if (!pool.empty() && pool.front().bytes != bytes) {
    for (auto& s : pool) munmap(s.base, s.bytes + Stack::guard());
    pool.clear();
  }
  while (pool.size() < count) {
    Stack s;
    s.bytes = bytes;
    void* p = mmap(nullptr, bytes + Stack::guard(), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("cuda_on_cpu: cannot map a fiber stack");
    s.base = static_cast<char*>(p);
    if (mprotect(s.base, Stack::guard(), PROT_NONE) != 0)  // guard pages below the stack
      throw std::runtime_error("cuda_on_cpu: cannot protect a fiber stack's guard page");
    pool.push_back(s);
  }
}

struct Launch {
  const char* kernel = "?";
  const char* launch_file = "?";
  int launch_line = 0;
  dim3 grid, block;
  size_t smem_bytes = 0;
  void (*entry)(const void*) = nullptr;
  const void* args = nullptr;
  Options opts;
  std::vector<Fiber> fibers;
  unsigned nthreads = 0;
  unsigned runnable = 0;
  std::string error;
  ucontext_t sched;
  unsigned char* smem = nullptr;        // dynamic shared memory of the running block
  unsigned char* smem_alloc = nullptr;  // allocation holding it (with canaries outside ASan)
#if CUDA_ON_CPU_ASAN
  const void* sched_stack_bottom = nullptr;
  size_t sched_stack_size = 0;
  void* sched_fake_stack = nullptr;
#endif
};

// The running launch, block and thread (fibers run on the launching OS thread only).
inline Launch* g_launch = nullptr;
inline Fiber* g_current = nullptr;
inline uint3 g_block_idx{0, 0, 0};
inline dim3 g_block_dim;
inline dim3 g_grid_dim;

inline std::string dim_str(unsigned x, unsigned y, unsigned z) {
  return "(" + std::to_string(x) + "," + std::to_string(y) + "," + std::to_string(z) + ")";
}

inline std::string where(const Fiber& f) {
  return "block " + dim_str(g_block_idx.x, g_block_idx.y, g_block_idx.z) + " thread " +
         dim_str(f.tid.x, f.tid.y, f.tid.z) + " (lane " + std::to_string(f.linear % kWarp) +
         " of warp " + std::to_string(f.linear / kWarp) + ")";
}

inline std::string site(const char* file, int line) {
  return std::string(file ? file : "?") + ":" + std::to_string(line);
}

inline std::string header() {
  const Launch& L = *g_launch;
  return "cuda_on_cpu: kernel " + std::string(L.kernel) + " (launched at " +
         site(L.launch_file, L.launch_line) + ", grid " + dim_str(L.grid.x, L.grid.y, L.grid.z) +
         ", block " + dim_str(L.block.x, L.block.y, L.block.z) + "): ";
}

// Switch from the running fiber back to the scheduler.
inline void yield_to_scheduler(bool finished) {
  Launch& L = *g_launch;
  Fiber* f = g_current;
#if CUDA_ON_CPU_ASAN
  __sanitizer_start_switch_fiber(finished ? nullptr : &f->fake_stack, L.sched_stack_bottom,
                                 L.sched_stack_size);
#else
  (void)finished;
#endif
  swapcontext(&f->ctx, &L.sched);
#if CUDA_ON_CPU_ASAN
  __sanitizer_finish_switch_fiber(f->fake_stack, nullptr, nullptr);
#endif
}

// Record a misuse found inside a fiber and stop the launch (never returns into the kernel).
[[noreturn]] inline void fail_in_fiber(const std::string& what) {
  Launch& L = *g_launch;
  if (L.error.empty()) L.error = header() + what;
  g_current->state = State::done;
  yield_to_scheduler(true);
  std::abort();  // unreachable: an aborted launch never resumes its fibers
}

inline void fiber_main() {
#if CUDA_ON_CPU_ASAN
  {
    Launch& L0 = *g_launch;
    __sanitizer_finish_switch_fiber(nullptr, &L0.sched_stack_bottom, &L0.sched_stack_size);
  }
#endif
  Launch& L = *g_launch;
  L.entry(L.args);
  g_current->state = State::done;
  yield_to_scheduler(true);
}

inline void run_fiber(Launch& L, Fiber& f, const Stack& s) {
  g_current = &f;
  --L.runnable;
#if CUDA_ON_CPU_ASAN
  __sanitizer_start_switch_fiber(&L.sched_fake_stack, s.bottom(), s.bytes);
#else
  (void)s;
#endif
  swapcontext(&L.sched, &f.ctx);
#if CUDA_ON_CPU_ASAN
  __sanitizer_finish_switch_fiber(L.sched_fake_stack, nullptr, nullptr);
#endif
  g_current = nullptr;
}

#if !CUDA_ON_CPU_ASAN
// A fault on a fiber's guard page is a CUDA thread's stack overflow: say which, then let the
// default action (core dump) happen. Installed for the duration of a launch only.
inline struct sigaction& previous_segv() {
  static struct sigaction old;
  return old;
}

inline void segv_handler(int sig, siginfo_t* info, void* uctx) {
  const char* addr = static_cast<const char*>(info->si_addr);
  const char* sp = nullptr;  // the faulting thread's stack pointer, where known
#if defined(__x86_64__)
  sp = reinterpret_cast<const char*>(static_cast<ucontext_t*>(uctx)->uc_mcontext.gregs[REG_RSP]);
#endif
  const auto& pool = stack_pool();
  const Stack* own = g_current && g_current->linear < pool.size() ? &pool[g_current->linear] : nullptr;
  for (const Stack& s : pool) {
    const bool in_guard = addr >= s.base && addr < s.bottom();
    const bool sp_below = own == &s && sp && sp < s.bottom() + 256;  // a frame jumped the guard
    if ((in_guard || sp_below) && g_launch && g_current) {
      char msg[512];
      const int n = snprintf(msg, sizeof msg,
                             "cuda_on_cpu: kernel %s (launched at %s:%d): stack overflow of block "
                             "(%u,%u,%u) thread (%u,%u,%u): its %zu-byte fiber stack hit the guard "
                             "page (raise cuda_on_cpu::options().stack_bytes)\n",
                             g_launch->kernel, g_launch->launch_file, g_launch->launch_line,
                             g_block_idx.x, g_block_idx.y, g_block_idx.z, g_current->tid.x,
                             g_current->tid.y, g_current->tid.z, s.bytes);
      if (n > 0) (void)!write(2, msg, static_cast<size_t>(n));
      break;
    }
  }
  sigaction(SIGSEGV, &previous_segv(), nullptr);  // the fault repeats under the old action
  (void)sig;
}

struct SegvGuard {
  std::vector<char> alt;
  stack_t old_alt{};
  SegvGuard() : alt(64 * 1024) {
    stack_t ss{};
    ss.ss_sp = alt.data();
    ss.ss_size = alt.size();
    sigaltstack(&ss, &old_alt);
    struct sigaction sa {};
    sa.sa_sigaction = &segv_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_segv());
  }
  ~SegvGuard() {
    sigaction(SIGSEGV, &previous_segv(), nullptr);
    sigaltstack(&old_alt, nullptr);
  }
};
#endif

}  // namespace detail
}  // namespace cuda_on_cpu
