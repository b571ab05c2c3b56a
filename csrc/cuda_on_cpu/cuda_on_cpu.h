// cuda_on_cpu: run unchanged CUDA kernel source (.cuh files without torch headers) on the CPU,
// with CUDA's execution model, so tests can check every kernel without a GPU.
//
// Compile a translation unit with g++ (not nvcc), include this header first, then the kernel
// .cuh files; add the CUDA toolkit's include directory to the include path (for vector_types.h,
// cuda_fp16.h and cuda_bf16.h, whose host implementations give the exact conversions), and
// -Wno-unknown-pragmas for the kernels' `#pragma unroll` (cnnfast/_cuda_on_cpu.py does both).
//
// Model: each CUDA thread of a block is a fiber (ucontext) with its own stack and guard pages;
// blocks run one after another. A fiber runs until it reaches __syncthreads, a warp collective
// or its end; only then does the scheduler switch to the next thread, in the launch's thread
// order (forward, reversed, or shuffled by a seed, anew after every barrier). Blocks run in the
// same kind of order.
// Misuse aborts the launch with a cuda_on_cpu::KernelError naming the kernel, the call site,
// the block and the thread: threads at different __syncthreads, a thread that exited while
// others wait at one, a lane named in a warp collective's mask that never arrives, a mask that
// does not name the calling lane, a shuffle reading a lane outside its mask, an out-of-bounds
// write around dynamic shared memory, a misaligned WMMA matrix, a fiber stack overflow. Build
// with -fsanitize=address,alignment to have the sanitizers catch out-of-bounds reads and writes
// of global, dynamic shared and kernels' static shared memory, and misaligned vector accesses.
//
// Sub-headers: wmma.h (nvcuda::wmma), c_api.h (entry-point helpers for ctypes).
//
// See README.md, "CUDA kernels on the CPU", for the launch convention and what a pass proves.
#pragma once

#define CNNFAST_CUDA_ON_CPU 1  // kernels may test this; __CUDA_ARCH__ is not defined here

#if defined(__CUDACC__)
#error "cuda_on_cpu.h is for the CPU build (g++); under nvcc include the kernel .cuh directly"
#endif

// Execution-space keywords: defined before the CUDA headers, which then keep these.
#undef __host__
#undef __device__
#undef __global__
#undef __constant__
#undef __managed__
#undef __grid_constant__
#undef __noinline__
#undef __forceinline__
#undef __shared__
#undef __launch_bounds__
#define __host__
#define __device__
// Kernels get internal linkage: GCC's AddressSanitizer then instruments their __shared__ statics,
// also in templates (it skips the comdat statics of inline and template functions). A kernel is
// defined in the .cuh it is launched from (no separate declaration in another translation unit).
#define __global__ static __attribute__((unused))
#define __constant__
#define __managed__
#define __grid_constant__
#define __launch_bounds__(...)
#define __noinline__ __attribute__((noinline))
#define __forceinline__ inline __attribute__((always_inline))
// Static shared memory: one storage per declaration, shared by the fibers of the running block
// (blocks run one after another). Arrays declared in kernels are refilled with garbage before
// every block (see refill_static_shared) and bounds-checked by AddressSanitizer (internal
// linkage, see __global__); those of inline or template __device__ helpers are neither (GCC
// does not instrument their comdat statics).
#define __shared__ static

#include <vector_types.h>  // dim3, uint3, float4, int4, ... with the alignment CUDA gives them
#include <cuda_fp16.h>     // __half and its conversions (host implementations)
#include <cuda_bf16.h>     // __nv_bfloat16 and its conversions (host implementations)

#include <dlfcn.h>
#include <elf.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define CUDA_ON_CPU_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#else
#define CUDA_ON_CPU_ASAN 0
#endif

namespace cuda_on_cpu {

// Order in which the scheduler runs the runnable threads of a block between two barriers.
enum class Order : int { forward = 0, reversed = 1, shuffled = 2 };

struct Options {
  Order order = Order::forward;
  uint64_t seed = 0;                 // for Order::shuffled
  size_t stack_bytes = 256 * 1024;   // per CUDA thread (doubled under AddressSanitizer)
};

// The options of the launches that follow (one process-wide setting; launches are serialized).
inline Options& options() {
  static Options o;
  return o;
}

// A launch aborted by misuse: what(), kernel name, call site, block and thread are in the text.
struct KernelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {

constexpr int kWarp = 32;

enum class State : uint8_t { runnable, at_barrier, at_warp, done };
enum class WarpOp : uint8_t { syncwarp, shfl, shfl_up, shfl_down, shfl_xor, ballot, any, all, wmma };

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
  }
  return "?";
}

struct Fiber {
  ucontext_t ctx;
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

constexpr size_t kCanary = 64;
constexpr unsigned char kCanaryByte = 0xC5;
constexpr unsigned char kGarbageByte = 0xFF;  // fresh shared memory reads as NaN / -1

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

inline bool lane_exists(unsigned warp_base, unsigned lane) {
  return warp_base + lane < g_launch->nthreads;
}

// Complete the warp collective the calling lane just joined if every lane of its mask is there.
inline void try_complete_warp(Fiber& me) {
  Launch& L = *g_launch;
  const unsigned base = me.linear - me.linear % kWarp;
  for (unsigned l = 0; l < (unsigned)kWarp; ++l) {
    if (!(me.mask >> l & 1u) || !lane_exists(base, l)) continue;
    const Fiber& g = L.fibers[base + l];
    if (g.state != State::at_warp || g.mask != me.mask) return;  // not there yet
    if (g.op != me.op)
      fail_in_fiber(std::string("lanes named in mask 0x") + [&] {
        char b[16]; snprintf(b, sizeof b, "%08x", me.mask); return std::string(b); }() +
        " meet at different warp collectives: " + warp_op_name(me.op) + " at " +
        site(me.file, me.line) + " and " + warp_op_name(g.op) + " at " + site(g.file, g.line) +
        " (lane " + std::to_string(l) + "), " + where(me));
  }
  // Everyone named in the mask has arrived: compute every participant's result.
  uint64_t ballot = 0;
  unsigned participants = 0;
  for (unsigned l = 0; l < (unsigned)kWarp; ++l) {
    if (!(me.mask >> l & 1u) || !lane_exists(base, l)) continue;
    ++participants;
    if (L.fibers[base + l].value) ballot |= 1ull << l;
  }
  const unsigned present = [&] {
    unsigned m = 0;
    for (unsigned l = 0; l < (unsigned)kWarp; ++l)
      if ((me.mask >> l & 1u) && lane_exists(base, l)) m |= 1u << l;
    return m;
  }();
  for (unsigned l = 0; l < (unsigned)kWarp; ++l) {
    if (!(me.mask >> l & 1u) || !lane_exists(base, l)) continue;
    Fiber& g = L.fibers[base + l];
    const int w = g.width;
    const unsigned seg = l - l % static_cast<unsigned>(w);
    long src = l;
    switch (g.op) {
      case WarpOp::shfl: src = seg + (((g.arg % w) + w) % w); break;
      case WarpOp::shfl_up: src = (long)l - g.arg < (long)seg ? (long)l : (long)l - g.arg; break;
      case WarpOp::shfl_down: src = l + g.arg >= seg + w ? (long)l : (long)l + g.arg; break;
      case WarpOp::shfl_xor: {
        const long t = (long)(l ^ (unsigned)g.arg);
        src = t >= (long)(seg + w) ? (long)l : t;
        break;
      }
      default: break;
    }
    switch (g.op) {
      case WarpOp::shfl: case WarpOp::shfl_up: case WarpOp::shfl_down: case WarpOp::shfl_xor:
        if (src < 0 || src >= kWarp || !(present >> src & 1u)) {
          char b[16];
          snprintf(b, sizeof b, "%08x", g.mask);
          fail_in_fiber(std::string(warp_op_name(g.op)) + " at " + site(g.file, g.line) +
                        " with mask 0x" + b + ": lane " + std::to_string(l) + " reads lane " +
                        std::to_string(src) +
                        ", which is not a live lane named in the mask (its value is undefined on "
                        "the GPU), " + where(g));
        }
        g.result = L.fibers[base + src].value;
        break;
      case WarpOp::ballot: g.result = ballot; break;
      case WarpOp::any: g.result = ballot != 0; break;
      case WarpOp::all: g.result = __builtin_popcountll(ballot) == (int)participants; break;
      default: g.result = 0; break;
    }
  }
  for (unsigned l = 0; l < (unsigned)kWarp; ++l) {
    if (!(me.mask >> l & 1u) || !lane_exists(base, l)) continue;
    Fiber& g = L.fibers[base + l];
    g.state = State::runnable;
    if (&g != &me) ++L.runnable;
  }
}

inline uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width,
                                const char* file, int line) {
  Fiber& me = *g_current;
  const unsigned lane = me.linear % kWarp;
  char m[16];
  snprintf(m, sizeof m, "%08x", mask);
  if (!(mask >> lane & 1u))
    fail_in_fiber(std::string(warp_op_name(op)) + " at " + site(file, line) + ": mask 0x" + m +
                  " does not name the calling lane " + std::to_string(lane) + ", " + where(me));
  if (width <= 0 || width > kWarp || (width & (width - 1)))
    fail_in_fiber(std::string(warp_op_name(op)) + " at " + site(file, line) + ": width " +
                  std::to_string(width) + " is not a power of two in [1, 32], " + where(me));
  me.op = op;
  me.mask = mask;
  me.value = value;
  me.arg = arg;
  me.width = width;
  me.file = file;
  me.line = line;
  me.state = State::at_warp;
  try_complete_warp(me);
  if (me.state == State::at_warp) yield_to_scheduler(false);
  return me.result;
}

// Returns how many threads of the block passed a nonzero predicate (__syncthreads_count).
inline unsigned syncthreads(const char* file, int line, int predicate = 0) {
  Fiber& me = *g_current;
  me.file = file;
  me.line = line;
  me.value = predicate != 0;
  me.state = State::at_barrier;
  yield_to_scheduler(false);
  return static_cast<unsigned>(me.result);
}

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

inline void check_canaries(Launch& L) {
#if !CUDA_ON_CPU_ASAN
  if (!L.smem_alloc) return;
  auto bad = [](const unsigned char* p) {
    for (size_t i = 0; i < kCanary; ++i)
      if (p[i] != kCanaryByte) return true;
    return false;
  };
  if (bad(L.smem_alloc) || bad(L.smem + L.smem_bytes))
    throw KernelError(header() + "out-of-bounds write " +
                      (bad(L.smem_alloc) ? std::string("before the start") : std::string("past the end")) +
                      " of dynamic shared memory (" + std::to_string(L.smem_bytes) + " bytes) in block " +
                      dim_str(g_block_idx.x, g_block_idx.y, g_block_idx.z) +
                      " (build with -fsanitize=address to find the thread)");
#else
  (void)L;
#endif
}

// ---- Fresh static __shared__ memory for every block ------------------------------------------
// A kernel's `__shared__` arrays are the static locals of a function with internal linkage
// (__global__ is `static` here). They are found once in the symbol table of the program or
// library that holds this code, and filled with garbage before every block, as a GPU gives
// each block shared memory with whatever was there. (Not found, and so not refilled: arrays in
// inline or template __device__ helpers, and everything in a stripped binary.)

// Is `name` a static local of a function with internal linkage (`_ZZ...L<len><name>...E...`)?
inline bool is_internal_function_local(const char* name) {
  if (std::strncmp(name, "_ZZ", 3) != 0) return false;
  const char* p = name + 3;
  if (*p == 'L') return p[1] >= '0' && p[1] <= '9';
  if (*p != 'N') return false;
  ++p;
  while (*p >= '0' && *p <= '9') {  // namespace components <len><name>
    char* end = nullptr;
    const long len = std::strtol(p, &end, 10);
    if (len <= 0 || static_cast<long>(std::strlen(end)) < len) return false;
    p = end + len;
  }
  return *p == 'L' && p[1] >= '0' && p[1] <= '9';
}

struct StaticShared {
  unsigned char* ptr;
  size_t bytes;
};

inline std::vector<StaticShared> find_static_shared() {
  std::vector<StaticShared> found;
  Dl_info info{};
  if (!dladdr(reinterpret_cast<void*>(&is_internal_function_local), &info) || !info.dli_fbase) return found;
  const char* path = info.dli_fname && info.dli_fname[0] ? info.dli_fname : "/proc/self/exe";
  std::FILE* f = std::fopen(path, "rb");
  if (!f) return found;
  std::vector<unsigned char> elf;
  unsigned char buf[1 << 16];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) elf.insert(elf.end(), buf, buf + n);
  std::fclose(f);
  if (elf.size() < sizeof(Elf64_Ehdr) || std::memcmp(elf.data(), ELFMAG, SELFMAG) != 0 ||
      elf[EI_CLASS] != ELFCLASS64)
    return found;
  Elf64_Ehdr eh;
  std::memcpy(&eh, elf.data(), sizeof eh);
  if (eh.e_shoff == 0 || eh.e_shoff + size_t(eh.e_shnum) * sizeof(Elf64_Shdr) > elf.size()) return found;
  std::vector<Elf64_Shdr> sh(eh.e_shnum);
  std::memcpy(sh.data(), elf.data() + eh.e_shoff, sh.size() * sizeof(Elf64_Shdr));
  const uintptr_t bias = eh.e_type == ET_DYN ? reinterpret_cast<uintptr_t>(info.dli_fbase) : 0;
  for (const Elf64_Shdr& s : sh) {
    if (s.sh_type != SHT_SYMTAB || s.sh_link >= sh.size()) continue;
    const Elf64_Shdr& str = sh[s.sh_link];
    if (s.sh_offset + s.sh_size > elf.size() || str.sh_offset + str.sh_size > elf.size()) continue;
    for (size_t off = 0; off + sizeof(Elf64_Sym) <= s.sh_size; off += sizeof(Elf64_Sym)) {
      Elf64_Sym sym;
      std::memcpy(&sym, elf.data() + s.sh_offset + off, sizeof sym);
      if (ELF64_ST_TYPE(sym.st_info) != STT_OBJECT || sym.st_size == 0 || sym.st_name >= str.sh_size ||
          sym.st_shndx == SHN_UNDEF || sym.st_shndx >= sh.size() || !(sh[sym.st_shndx].sh_flags & SHF_WRITE))
        continue;
      const char* name = reinterpret_cast<const char*>(elf.data() + str.sh_offset + sym.st_name);
      if (std::memchr(name, 0, str.sh_size - sym.st_name) == nullptr) continue;
      if (is_internal_function_local(name))
        found.push_back({reinterpret_cast<unsigned char*>(bias + sym.st_value), size_t(sym.st_size)});
    }
  }
  return found;
}

inline const std::vector<StaticShared>& static_shared() {
  static const std::vector<StaticShared> vars = find_static_shared();
  return vars;
}

inline void refill_static_shared() {
  for (const StaticShared& v : static_shared()) std::memset(v.ptr, kGarbageByte, v.bytes);
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

inline unsigned char* dynamic_shared() {
  if (!g_launch || !g_launch->smem) return nullptr;
  return g_launch->smem;
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

// ---- Built-in variables -----------------------------------------------------------------------
#define threadIdx (static_cast<const uint3&>(::cuda_on_cpu::detail::g_current->tid))
#define blockIdx (static_cast<const uint3&>(::cuda_on_cpu::detail::g_block_idx))
#define blockDim (static_cast<const dim3&>(::cuda_on_cpu::detail::g_block_dim))
#define gridDim (static_cast<const dim3&>(::cuda_on_cpu::detail::g_grid_dim))
constexpr int warpSize = 32;

// Dynamic shared memory: CUDA_DYNAMIC_SHARED(float, smem); declares `float* smem` (see launch.cuh).
#define CUDA_ON_CPU_DYNAMIC_SHARED(T, name) \
  T* name = reinterpret_cast<T*>(::cuda_on_cpu::detail::dynamic_shared())

// ---- Barriers and warp collectives (the call site is recorded for diagnostics) ---------------
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::cuda_on_cpu::detail::syncthreads(file, line);
}

inline int __syncthreads_count(int predicate, const char* file = __builtin_FILE(),
                               int line = __builtin_LINE()) {
  return static_cast<int>(::cuda_on_cpu::detail::syncthreads(file, line, predicate));
}
inline int __syncthreads_and(int predicate, const char* file = __builtin_FILE(),
                             int line = __builtin_LINE()) {
  return ::cuda_on_cpu::detail::syncthreads(file, line, predicate) ==
         ::cuda_on_cpu::detail::g_launch->nthreads;
}
inline int __syncthreads_or(int predicate, const char* file = __builtin_FILE(),
                            int line = __builtin_LINE()) {
  return ::cuda_on_cpu::detail::syncthreads(file, line, predicate) != 0;
}

inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  ::cuda_on_cpu::detail::warp_collective(::cuda_on_cpu::detail::WarpOp::syncwarp, mask, 0, 0, 32,
                                         file, line);
}

namespace cuda_on_cpu {
namespace detail {
template <class T>
uint64_t to_bits(const T& v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                "warp shuffles move values of at most 8 bytes");
  uint64_t b = 0;
  std::memcpy(&b, static_cast<const void*>(&v), sizeof(T));
  return b;
}
template <class T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(static_cast<void*>(&v), &b, sizeof(T));
  return v;
}
template <class T>
T shuffle(WarpOp op, unsigned mask, const T& v, int arg, int width, const char* f, int l) {
  return from_bits<T>(warp_collective(op, mask, to_bits(v), arg, width, f, l));
}
}  // namespace detail
}  // namespace cuda_on_cpu

template <class T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32,
              const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::cuda_on_cpu::detail::shuffle(::cuda_on_cpu::detail::WarpOp::shfl, mask, var, src_lane,
                                        width, file, line);
}
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32,
                 const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::cuda_on_cpu::detail::shuffle(::cuda_on_cpu::detail::WarpOp::shfl_up, mask, var,
                                        static_cast<int>(delta), width, file, line);
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32,
                   const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::cuda_on_cpu::detail::shuffle(::cuda_on_cpu::detail::WarpOp::shfl_down, mask, var,
                                        static_cast<int>(delta), width, file, line);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32,
                  const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::cuda_on_cpu::detail::shuffle(::cuda_on_cpu::detail::WarpOp::shfl_xor, mask, var,
                                        lane_mask, width, file, line);
}
inline unsigned __ballot_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  return static_cast<unsigned>(::cuda_on_cpu::detail::warp_collective(
      ::cuda_on_cpu::detail::WarpOp::ballot, mask, predicate != 0, 0, 32, file, line));
}
inline int __any_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
  return static_cast<int>(::cuda_on_cpu::detail::warp_collective(
      ::cuda_on_cpu::detail::WarpOp::any, mask, predicate != 0, 0, 32, file, line));
}
inline int __all_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
  return static_cast<int>(::cuda_on_cpu::detail::warp_collective(
      ::cuda_on_cpu::detail::WarpOp::all, mask, predicate != 0, 0, 32, file, line));
}
inline unsigned __activemask() {  // every live lane of the warp (the CPU has no divergence mask)
  const auto* f = ::cuda_on_cpu::detail::g_current;
  const unsigned base = f->linear - f->linear % 32;
  unsigned m = 0;
  for (unsigned l = 0; l < 32; ++l)
    if (base + l < ::cuda_on_cpu::detail::g_launch->nthreads &&
        ::cuda_on_cpu::detail::g_launch->fibers[base + l].state != ::cuda_on_cpu::detail::State::done)
      m |= 1u << l;
  return m;
}

// ---- Atomics (fibers of one OS thread never interleave inside one of these) -------------------
inline int atomicAdd(int* a, int v) { int o = *a; *a = o + v; return o; }
inline unsigned atomicAdd(unsigned* a, unsigned v) { unsigned o = *a; *a = o + v; return o; }
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
  unsigned long long o = *a; *a = o + v; return o;
}
inline float atomicAdd(float* a, float v) { float o = *a; *a = o + v; return o; }
inline double atomicAdd(double* a, double v) { double o = *a; *a = o + v; return o; }
inline __half atomicAdd(__half* a, __half v) {
  __half o = *a; *a = __float2half_rn(__half2float(o) + __half2float(v)); return o;
}
inline __nv_bfloat16 atomicAdd(__nv_bfloat16* a, __nv_bfloat16 v) {
  __nv_bfloat16 o = *a; *a = __float2bfloat16_rn(__bfloat162float(o) + __bfloat162float(v)); return o;
}
inline int atomicSub(int* a, int v) { int o = *a; *a = o - v; return o; }
inline unsigned atomicSub(unsigned* a, unsigned v) { unsigned o = *a; *a = o - v; return o; }
inline int atomicMax(int* a, int v) { int o = *a; if (v > o) *a = v; return o; }
inline unsigned atomicMax(unsigned* a, unsigned v) { unsigned o = *a; if (v > o) *a = v; return o; }
inline long long atomicMax(long long* a, long long v) { long long o = *a; if (v > o) *a = v; return o; }
inline unsigned long long atomicMax(unsigned long long* a, unsigned long long v) {
  unsigned long long o = *a; if (v > o) *a = v; return o;
}
inline int atomicMin(int* a, int v) { int o = *a; if (v < o) *a = v; return o; }
inline unsigned atomicMin(unsigned* a, unsigned v) { unsigned o = *a; if (v < o) *a = v; return o; }
inline int atomicCAS(int* a, int cmp, int v) { int o = *a; if (o == cmp) *a = v; return o; }
inline unsigned atomicCAS(unsigned* a, unsigned cmp, unsigned v) { unsigned o = *a; if (o == cmp) *a = v; return o; }
inline unsigned long long atomicCAS(unsigned long long* a, unsigned long long cmp, unsigned long long v) {
  unsigned long long o = *a; if (o == cmp) *a = v; return o;
}
inline unsigned short atomicCAS(unsigned short* a, unsigned short cmp, unsigned short v) {
  unsigned short o = *a; if (o == cmp) *a = v; return o;
}
inline int atomicExch(int* a, int v) { int o = *a; *a = v; return o; }
inline unsigned atomicExch(unsigned* a, unsigned v) { unsigned o = *a; *a = v; return o; }
inline unsigned long long atomicExch(unsigned long long* a, unsigned long long v) {
  unsigned long long o = *a; *a = v; return o;
}
inline float atomicExch(float* a, float v) { float o = *a; *a = v; return o; }
inline int atomicAnd(int* a, int v) { int o = *a; *a = o & v; return o; }
inline unsigned atomicAnd(unsigned* a, unsigned v) { unsigned o = *a; *a = o & v; return o; }
inline int atomicOr(int* a, int v) { int o = *a; *a = o | v; return o; }
inline unsigned atomicOr(unsigned* a, unsigned v) { unsigned o = *a; *a = o | v; return o; }

// __trap() aborts the launch (on a GPU it kills the kernel with an error).
[[noreturn]] inline void __trap(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::cuda_on_cpu::detail::fail_in_fiber("__trap() at " + ::cuda_on_cpu::detail::site(file, line) + ", " +
                                       ::cuda_on_cpu::detail::where(*::cuda_on_cpu::detail::g_current));
}
inline long long clock64() {  // a monotonic cycle-like counter (nanoseconds here)
  return static_cast<long long>(std::chrono::steady_clock::now().time_since_epoch().count());
}
inline void __nanosleep(unsigned) {}

inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// ---- Loads and math intrinsics ---------------------------------------------------------------
// Loads and stores with cache hints: plain accesses on the CPU.
template <class T> inline T __ldg(const T* p) { return *p; }
template <class T> inline T __ldcg(const T* p) { return *p; }
template <class T> inline T __ldca(const T* p) { return *p; }
template <class T> inline T __ldcs(const T* p) { return *p; }
template <class T> inline T __ldlu(const T* p) { return *p; }
template <class T> inline T __ldcv(const T* p) { return *p; }
template <class T> inline void __stwb(T* p, T v) { *p = v; }
template <class T> inline void __stcg(T* p, T v) { *p = v; }
template <class T> inline void __stcs(T* p, T v) { *p = v; }
template <class T> inline void __stwt(T* p, T v) { *p = v; }

inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float __fadd_rn(float x, float y) { return x + y; }
inline float __fsub_rn(float x, float y) { return x - y; }
inline float __fmul_rn(float x, float y) { return x * y; }
inline float __fdiv_rn(float x, float y) { return x / y; }
inline float __fmaf_rn(float x, float y, float z) { return std::fma(x, y, z); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __saturatef(float x) { return x != x ? 0.0f : (x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x)); }
inline int __float_as_int(float x) { int i; std::memcpy(&i, &x, 4); return i; }
inline unsigned __float_as_uint(float x) { unsigned i; std::memcpy(&i, &x, 4); return i; }
inline float __int_as_float(int i) { float x; std::memcpy(&x, &i, 4); return x; }
inline float __uint_as_float(unsigned i) { float x; std::memcpy(&x, &i, 4); return x; }
inline int __float2int_rn(float x) { return static_cast<int>(std::nearbyint(x)); }
inline int __float2int_rz(float x) { return static_cast<int>(std::trunc(x)); }
inline int __float2int_rd(float x) { return static_cast<int>(std::floor(x)); }
inline int __float2int_ru(float x) { return static_cast<int>(std::ceil(x)); }
inline unsigned __float2uint_rn(float x) { return static_cast<unsigned>(std::nearbyint(x)); }
inline float __int2float_rn(int i) { return static_cast<float>(i); }
inline float __uint2float_rn(unsigned i) { return static_cast<float>(i); }
inline float __ll2float_rn(long long i) { return static_cast<float>(i); }
inline float __fmul_rz(float x, float y) {  // x*y rounded toward zero, via the exact double product
  const double p = static_cast<double>(x) * static_cast<double>(y);
  float r = static_cast<float>(p);
  if (std::fabs(static_cast<double>(r)) > std::fabs(p)) r = std::nextafter(r, 0.0f);
  return r;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __mul24(int a, int b) { return a * b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
