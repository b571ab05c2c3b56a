// cuda_on_cpu, one part of cuda_on_cpu.h (include that header, not this one): __syncthreads and the
// warp collectives as the scheduler sees them. A thread records what it waits at and yields; a warp
// collective completes when every lane its mask names has arrived, and a misuse (a mask without the
// calling lane, a shuffle reading a lane outside its mask, lanes at different collectives) aborts
// the launch.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace cuda_on_cpu {
namespace detail {

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

}  // namespace detail
}  // namespace cuda_on_cpu
