// cuda_on_cpu, one part of cuda_on_cpu.h (include that header, not this one): the scheduler. A grid
// runs its blocks one after another, a block its threads (fibers, fiber.h) in the launch's order
// between two barriers; when no thread can run, every live thread must wait at the same
// __syncthreads (then all are released) or the launch is aborted with what went wrong. The launch
// object that CNNFAST_LAUNCH builds (make_launch) is here too.
#pragma once

#include <cstdint>
#include <cstring>
#include <exception>
#include <mutex>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace cuda_on_cpu {
namespace detail {

// Describe why the block cannot go on; empty when every live thread waits at one barrier.
inline std::string diagnose(Launch& L, bool& release) {
  release = false;
  const Fiber* barrier = nullptr;
  const Fiber* exited = nullptr;
  for (const Fiber& f : L.fibers) {
    if (f.state == State::at_warp) {
      const unsigned base = f.linear - f.linear % kWarp;
      char m[16];
      snprintf(m, sizeof m, "%08x", f.mask);
      for (unsigned l = 0; l < (unsigned)kWarp; ++l) {
        if (!(f.mask >> l & 1u) || !lane_exists(base, l)) continue;
        const Fiber& g = L.fibers[base + l];
        if (g.state == State::at_warp && g.mask == f.mask) continue;
        std::string why;
        if (g.state == State::done) why = "it has exited";
        else if (g.state == State::at_barrier) why = "it waits at __syncthreads at " + site(g.file, g.line);
        else {
          char m2[16];
          snprintf(m2, sizeof m2, "%08x", g.mask);
          why = std::string("it waits at ") + warp_op_name(g.op) + " at " + site(g.file, g.line) +
                " with mask 0x" + m2;
        }
        return std::string(warp_op_name(f.op)) + " at " + site(f.file, f.line) + " with mask 0x" + m +
               ": lane " + std::to_string(l) + " (thread " + dim_str(g.tid.x, g.tid.y, g.tid.z) +
               ") named in the mask never arrives (" + why + "), waiting " + where(f);
      }
    }
    if (f.state == State::at_barrier && !barrier) barrier = &f;
    if (f.state == State::done && !exited) exited = &f;
  }
  if (!barrier) return "scheduler found no runnable thread (internal error)";
  for (const Fiber& f : L.fibers) {
    if (f.state == State::at_barrier && (f.line != barrier->line || std::strcmp(f.file, barrier->file) != 0))
      return "threads wait at different __syncthreads: " + site(barrier->file, barrier->line) +
             " (" + where(*barrier) + ") and " + site(f.file, f.line) + " (" + where(f) + ")";
  }
  if (exited)
    return "a thread exited while others wait at __syncthreads at " +
           site(barrier->file, barrier->line) + ": exited " + where(*exited) + ", waiting " +
           where(*barrier);
  release = true;
  return {};
}

inline void make_order(std::vector<unsigned>& order, Order o, uint64_t seed, uint64_t block,
                       uint64_t phase) {
  const unsigned n = static_cast<unsigned>(order.size());
  for (unsigned i = 0; i < n; ++i) order[i] = o == Order::reversed ? n - 1 - i : i;
  if (o == Order::shuffled) {
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull ^ (block << 20) ^ phase);
    for (unsigned i = n; i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  }
}

inline void run_block(Launch& L, std::vector<unsigned>& order, uint64_t block_linear) {
  auto& pool = stack_pool();
  if (L.smem_bytes) std::memset(L.smem, kGarbageByte, L.smem_bytes);
  refill_static_shared();
  static ucontext_t proto;
  static bool have_proto = false;
  if (!have_proto) {
    getcontext(&proto);
    have_proto = true;
  }
  for (unsigned i = 0; i < L.nthreads; ++i) {
    Fiber& f = L.fibers[i];
    f.state = State::runnable;
    f.async_open.clear();  // copies a previous block left in flight never land in this one
    f.async_groups.clear();
    f.ctx = proto;
    f.ctx.uc_stack.ss_sp = pool[i].bottom();
    f.ctx.uc_stack.ss_size = pool[i].bytes;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, fiber_main, 0);
  }
  L.runnable = L.nthreads;
  uint64_t phase = 0;
  for (;;) {
    while (L.runnable) {
      make_order(order, L.opts.order, L.opts.seed, block_linear, phase++);
      for (unsigned i : order) {
        Fiber& f = L.fibers[i];
        if (f.state != State::runnable) continue;
        run_fiber(L, f, pool[i]);
        if (!L.error.empty()) throw KernelError(L.error);
      }
    }
    bool all_done = true;
    for (const Fiber& f : L.fibers) all_done &= f.state == State::done;
    if (all_done) break;
    bool release = false;
    std::string why = diagnose(L, release);
    if (!release) throw KernelError(header() + why);
    uint64_t count = 0;
    for (const Fiber& f : L.fibers) count += f.value;
    for (Fiber& f : L.fibers) {
      f.state = State::runnable;
      f.result = count;
    }
    L.runnable = L.nthreads;
  }
  check_canaries(L);
}

#if CUDA_ON_CPU_ASAN
// Name the kernel, block and thread under AddressSanitizer's report.
inline void asan_report_context(const char*) {
  if (!g_launch) return;
  std::string ctx = header() + "the access above was made by " +
                    (g_current ? where(*g_current) : std::string("the scheduler")) + "\n";
  std::fputs(ctx.c_str(), stderr);
}
#endif

inline std::mutex& launch_mutex() {
  static std::mutex m;
  return m;
}

// Run a whole grid; throws KernelError on misuse.
inline void run_grid(Launch& L) {
  std::lock_guard<std::mutex> lock(launch_mutex());
  const uint64_t nthreads = uint64_t(L.block.x) * L.block.y * L.block.z;
  const uint64_t nblocks = uint64_t(L.grid.x) * L.grid.y * L.grid.z;
  auto fail = [&](const std::string& what) {
    throw KernelError("cuda_on_cpu: kernel " + std::string(L.kernel) + " (launched at " +
                      site(L.launch_file, L.launch_line) + "): " + what);
  };
  if (nthreads == 0 || nthreads > 1024 || L.block.z > 64)
    fail("invalid block " + dim_str(L.block.x, L.block.y, L.block.z) +
         " (1 to 1024 threads, z at most 64)");
  if (L.grid.y > 65535 || L.grid.z > 65535)
    fail("invalid grid " + dim_str(L.grid.x, L.grid.y, L.grid.z));
  if (L.smem_bytes > 227 * 1024) fail("dynamic shared memory of " + std::to_string(L.smem_bytes) + " bytes exceeds 227 KiB");
  if (nblocks == 0) fail("invalid grid " + dim_str(L.grid.x, L.grid.y, L.grid.z) + " (no block)");
  L.nthreads = static_cast<unsigned>(nthreads);
  const size_t stack = L.opts.stack_bytes * (CUDA_ON_CPU_ASAN ? 2 : 1);
  ensure_stacks(L.nthreads, (stack + Stack::page() - 1) / Stack::page() * Stack::page());
  L.fibers.assign(L.nthreads, Fiber{});
  for (unsigned i = 0; i < L.nthreads; ++i) {
    Fiber& f = L.fibers[i];
    f.linear = i;
    f.tid = uint3{i % L.block.x, (i / L.block.x) % L.block.y, i / (L.block.x * L.block.y)};
  }
  if (L.smem_bytes) {
#if CUDA_ON_CPU_ASAN
    L.smem_alloc = static_cast<unsigned char*>(std::malloc(L.smem_bytes));  // exact: ASan bounds
    L.smem = L.smem_alloc;
#else
    L.smem_alloc = static_cast<unsigned char*>(std::malloc(L.smem_bytes + 2 * kCanary));
    std::memset(L.smem_alloc, kCanaryByte, L.smem_bytes + 2 * kCanary);
    L.smem = L.smem_alloc + kCanary;
#endif
  }
  struct Restore {
    Launch& L;
    ~Restore() {
      std::free(L.smem_alloc);
      L.smem_alloc = L.smem = nullptr;
      g_launch = nullptr;
      g_current = nullptr;
#if CUDA_ON_CPU_ASAN
      if (!L.error.empty() || std::uncaught_exceptions())  // abandoned fibers leave poisoned frames
        for (const Stack& s : stack_pool()) __asan_unpoison_memory_region(s.bottom(), s.bytes);
#endif
    }
  } restore{L};
  g_launch = &L;
#if CUDA_ON_CPU_ASAN
  __asan_set_error_report_callback(&asan_report_context);
#else
  SegvGuard segv_guard;
#endif
  g_grid_dim = L.grid;
  g_block_dim = L.block;
  std::vector<unsigned> order(L.nthreads);
  // Blocks run one at a time in the same order as threads (forward, reversed, shuffled): a
  // block that reads what another block of the same launch writes shows up as a difference.
  if (nblocks > 0xffffffffull) fail("grid of more than 2^32 blocks");
  std::vector<unsigned> blocks(static_cast<size_t>(nblocks));
  make_order(blocks, L.opts.order, L.opts.seed ^ 0xB10C4B10C4ull, 0, ~0ull);
  for (unsigned b : blocks) {
    g_block_idx = uint3{b % L.grid.x, (b / L.grid.x) % L.grid.y, b / (L.grid.x * L.grid.y)};
    run_block(L, order, b);
  }
}

template <class Kernel, class Tuple>
void invoke_kernel(const void* p) {
  const auto& packed = *static_cast<const std::pair<Kernel, Tuple>*>(p);
  std::apply(packed.first, packed.second);  // each thread gets its own copy of the arguments
}

}  // namespace detail

// kernel<<<grid, block, shared_bytes>>>(args...) on the CPU: the arguments are converted to the
// kernel's parameter types, as a CUDA launch does.
template <class... Params>
struct KernelLaunch {
  void (*kernel)(Params...);
  const char* name;
  const char* file;
  int line;
  dim3 grid, block;
  size_t shared_bytes;

  template <class... Args>
  void operator()(Args&&... args) const {
    static_assert(sizeof...(Args) == sizeof...(Params), "wrong number of kernel arguments");
    using Tuple = std::tuple<std::decay_t<Params>...>;
    using Kernel = void (*)(Params...);
    const std::pair<Kernel, Tuple> packed(kernel, Tuple(static_cast<std::decay_t<Params>>(args)...));
    detail::Launch L;
    L.kernel = name;
    L.launch_file = file;
    L.launch_line = line;
    L.grid = grid;
    L.block = block;
    L.smem_bytes = shared_bytes;
    L.entry = &detail::invoke_kernel<Kernel, Tuple>;
    L.args = &packed;
    L.opts = options();
    detail::run_grid(L);
  }
};

template <class... Params>
KernelLaunch<Params...> make_launch(const char* name, const char* file, int line, dim3 grid,
                                    dim3 block, size_t shared_bytes, void (*kernel)(Params...)) {
  return KernelLaunch<Params...>{kernel, name, file, line, grid, block, shared_bytes};
}

}  // namespace cuda_on_cpu
