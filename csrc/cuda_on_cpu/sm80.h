// cuda_on_cpu: the sm_80 warp primitives of csrc/cuda/common/mma.cuh and cp_async.cuh on the CPU,
// with the checks a GPU would fail.
//   mma.sync, ldmatrix, lds, sts: warp collectives (every lane of the warp must arrive, as for any
//   collective here). Each lane registers its operands, the warp meets, every lane computes its own
//   result from all lanes' operands as the PTX ISA lays fragments out, and the warp meets again
//   before anyone writes a result (so d may alias c, and no lane runs ahead of the others' reads).
//   mma: each output is c + the sum of products computed exactly in double and rounded once to
//   float; TF32 inputs have their low 13 mantissa bits ignored (as wmma.h). ldmatrix: row addresses
//   16-byte aligned and in shared memory. lds/sts: aligned and in shared memory.
//   Bank conflicts: 32 banks of 4 bytes; an access is split in phases (ldmatrix: one per 8x16-byte
//   matrix; lds/sts of 4 bytes: one of 32 lanes, 8 bytes: two of 16, 16 bytes: four of 8); a phase
//   takes as many wavefronts as the most distinct 4-byte words on one bank; the extra wavefronts
//   are counted per kind (bank_counts(), coc_bank_counts in c_api.h).
//   cp.async: destination in shared memory, both addresses aligned to the copy size, .cg with 16
//   bytes only, 0 <= src_bytes <= bytes. At issue the source is read and the destination filled with
//   0xFF; the copy lands (data, then zeros) only when a wait_group retires its group, so a read
//   before the wait sees 0xFF, as a missing wait would (sometimes) on a GPU.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cuda_on_cpu.h"
#include "wmma.h"

namespace cuda_on_cpu {
namespace sm80 {

enum class Input { f16, bf16, tf32 };

// Accesses and extra wavefronts (bank conflicts) of each kind since the last reset.
enum SharedKind : int { kLdmatrix = 0, kLds = 1, kSts = 2, kSharedKinds = 3 };
struct BankCounts {
  uint64_t accesses[kSharedKinds] = {};
  uint64_t conflicts[kSharedKinds] = {};
};
inline BankCounts& bank_counts() {
  static BankCounts c;
  return c;
}

inline uint32_t to_tf32(float x) {
  const float r = nvcuda::wmma::__float_to_tf32(x);
  uint32_t b;
  std::memcpy(&b, &r, 4);
  return b;
}

namespace detail {
using ::cuda_on_cpu::detail::fail_in_fiber;
using ::cuda_on_cpu::detail::g_current;
using ::cuda_on_cpu::detail::g_launch;
using ::cuda_on_cpu::detail::site;
using ::cuda_on_cpu::detail::where;

// Each thread's registered operand record for the collective it is in, by linear thread index,
// with the primitive's name (lanes of one warp must meet at the same primitive).
struct Slot {
  const char* what = nullptr;
  const void* rec = nullptr;
};
inline std::vector<Slot>& slots() {
  static std::vector<Slot> s;
  return s;
}

inline unsigned lane() { return g_current->linear % 32; }
inline unsigned warp_base() { return g_current->linear - g_current->linear % 32; }

inline void meet(const char* file, int line) {
  ::cuda_on_cpu::detail::warp_collective(::cuda_on_cpu::detail::WarpOp::sm80, 0xffffffffu, 0, 0, 32, file, line);
}

// Register rec for primitive `what`, wait for the warp; fills all[] with the 32 lanes' records.
inline void gather(const char* what, const void* rec, const void* all[32], const char* file, int line) {
  auto& s = slots();
  if (s.size() < g_launch->nthreads) s.resize(g_launch->nthreads);
  s[g_current->linear] = Slot{what, rec};
  meet(file, line);
  for (unsigned l = 0; l < 32; ++l) {
    if (warp_base() + l >= g_launch->nthreads)
      fail_in_fiber(std::string(what) + " at " + site(file, line) + ": the warp is not whole (" +
                    std::to_string(g_launch->nthreads) + " threads), " + where(*g_current));
    const Slot& other = s[warp_base() + l];
    if (std::strcmp(other.what, what) != 0)
      fail_in_fiber(std::string("lanes of a warp meet at different sm_80 primitives: ") + what + " at " +
                    site(file, line) + " and " + other.what + " (lane " + std::to_string(l) + "), " +
                    where(*g_current));
    all[l] = other.rec;
  }
}

inline bool in_shared(const void* p, size_t bytes) {
  const unsigned char* c = static_cast<const unsigned char*>(p);
  if (g_launch->smem && c >= g_launch->smem && c + bytes <= g_launch->smem + g_launch->smem_bytes) return true;
  for (const auto& v : ::cuda_on_cpu::detail::static_shared())
    if (c >= v.ptr && c + bytes <= v.ptr + v.bytes) return true;
  return false;
}

inline void check_shared(const char* what, const void* p, size_t bytes, size_t align, const char* file, int line) {
  if (reinterpret_cast<uintptr_t>(p) % align != 0)
    fail_in_fiber(std::string(what) + " at " + site(file, line) + ": address " +
                  std::to_string(reinterpret_cast<uintptr_t>(p)) + " is not " + std::to_string(align) +
                  "-byte aligned, " + where(*g_current));
  if (!in_shared(p, bytes))
    fail_in_fiber(std::string(what) + " at " + site(file, line) + ": address is not in shared memory, " +
                  where(*g_current));
}

// Extra wavefronts of one phase: the most distinct 4-byte words on one bank, less one.
inline unsigned phase_conflicts(const std::vector<uintptr_t>& words) {
  unsigned worst = 0;
  for (unsigned bank = 0; bank < 32; ++bank) {
    std::vector<uintptr_t> seen;
    for (uintptr_t w : words)
      if (w % 32 == bank && std::find(seen.begin(), seen.end(), w) == seen.end()) seen.push_back(w);
    worst = seen.size() > worst ? static_cast<unsigned>(seen.size()) : worst;
  }
  return worst > 0 ? worst - 1 : 0;
}

// Count one warp access: lanes' addresses, bytes per lane, lanes per phase.
inline void count_access(SharedKind kind, const uintptr_t* addr, unsigned lanes, size_t bytes, unsigned per_phase) {
  unsigned extra = 0;
  for (unsigned p0 = 0; p0 < lanes; p0 += per_phase) {
    std::vector<uintptr_t> words;
    for (unsigned l = p0; l < p0 + per_phase && l < lanes; ++l)
      for (size_t b = 0; b < bytes; b += 4) words.push_back((addr[l] + b) / 4);
    extra += phase_conflicts(words);
  }
  bank_counts().accesses[kind] += 1;
  bank_counts().conflicts[kind] += extra;
}

inline double tc_value(Input t, uint16_t h) {
  if (t == Input::f16) {
    __half_raw r;
    r.x = h;
    return static_cast<double>(__half2float(__half(r)));
  }
  __nv_bfloat16_raw r;
  r.x = h;
  return static_cast<double>(__bfloat162float(__nv_bfloat16(r)));
}
inline double tf32_value(uint32_t bits) {
  if ((bits & 0x7f800000u) != 0x7f800000u) bits &= ~0x1fffu;
  float f;
  std::memcpy(&f, &bits, 4);
  return static_cast<double>(f);
}

struct MmaRecord {
  Input type;
  int k;
  const uint32_t* a;
  const uint32_t* b;
  const float* c;
};
}  // namespace detail

// d = a * b + c for one warp (m16n8k16 half types, m16n8k8 TF32), fragments as the PTX ISA's.
inline void mma(Input t, int k, float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4],
                const char* file, int line) {
  using namespace detail;
  const MmaRecord mine{t, k, a, b, c};
  const void* all[32];
  gather("mma.sync", &mine, all, file, line);
  const MmaRecord* rec[32];
  for (unsigned l = 0; l < 32; ++l) {
    rec[l] = static_cast<const MmaRecord*>(all[l]);
    if (rec[l]->type != t || rec[l]->k != k)
      fail_in_fiber(std::string("mma.sync at ") + site(file, line) + ": lanes disagree on the shape or type, " +
                    where(*g_current));
  }
  // The warp's A (16 x k), B (k x 8) and C (16 x 8) from every lane's registers.
  double A[16][16], B[16][8], C[16][8];
  for (unsigned l = 0; l < 32; ++l) {
    const int g = static_cast<int>(l / 4), q = static_cast<int>(l % 4);
    const MmaRecord& r = *rec[l];
    if (t == Input::tf32) {
      A[g][q] = tf32_value(r.a[0]);
      A[g + 8][q] = tf32_value(r.a[1]);
      A[g][q + 4] = tf32_value(r.a[2]);
      A[g + 8][q + 4] = tf32_value(r.a[3]);
      B[q][g] = tf32_value(r.b[0]);
      B[q + 4][g] = tf32_value(r.b[1]);
    } else {
      for (int h = 0; h < 2; ++h) {
        const auto half = [&](uint32_t v) { return tc_value(t, static_cast<uint16_t>(v >> (16 * h))); };
        A[g][2 * q + h] = half(r.a[0]);
        A[g + 8][2 * q + h] = half(r.a[1]);
        A[g][2 * q + 8 + h] = half(r.a[2]);
        A[g + 8][2 * q + 8 + h] = half(r.a[3]);
        B[2 * q + h][g] = half(r.b[0]);
        B[2 * q + 8 + h][g] = half(r.b[1]);
      }
    }
    C[g][2 * q] = r.c[0];
    C[g][2 * q + 1] = r.c[1];
    C[g + 8][2 * q] = r.c[2];
    C[g + 8][2 * q + 1] = r.c[3];
  }
  const int g = static_cast<int>(lane() / 4), q = static_cast<int>(lane() % 4);
  const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * q, 2 * q + 1, 2 * q, 2 * q + 1};
  float out[4];
  for (int e = 0; e < 4; ++e) {
    double s = 0.0;
    for (int kk = 0; kk < k; ++kk) s += A[rows[e]][kk] * B[kk][cols[e]];
    out[e] = static_cast<float>(C[rows[e]][cols[e]] + s);
  }
  meet(file, line);  // every lane has read every operand
  std::memcpy(d, out, sizeof out);
}

// ldmatrix.x{n}[.trans]: row is this lane's row address (lanes 8j..8j+7: matrix j).
inline void ldmatrix(int n, bool trans, uint32_t* r, const void* row, const char* file, int line) {
  using namespace detail;
  const unsigned me = lane();
  if (me < 8u * static_cast<unsigned>(n)) check_shared("ldmatrix", row, 16, 16, file, line);
  const void* all[32];
  gather("ldmatrix", row, all, file, line);
  uintptr_t addr[32];
  for (unsigned l = 0; l < 32; ++l) addr[l] = reinterpret_cast<uintptr_t>(all[l]);
  if (me == 0) count_access(kLdmatrix, addr, 8u * static_cast<unsigned>(n), 16, 8);
  uint32_t out[4];
  for (int j = 0; j < n; ++j) {
    const auto element = [&](int rr, int cc) {
      uint16_t v;
      std::memcpy(&v, reinterpret_cast<const unsigned char*>(addr[8 * j + rr]) + 2 * cc, 2);
      return static_cast<uint32_t>(v);
    };
    const int a = static_cast<int>(me / 4), b = 2 * static_cast<int>(me % 4);
    out[j] = trans ? element(b, a) | element(b + 1, a) << 16 : element(a, b) | element(a, b + 1) << 16;
  }
  meet(file, line);
  std::memcpy(r, out, 4 * static_cast<size_t>(n));
}

inline void lds(void* out, const void* p, size_t bytes, const char* file, int line) {
  using namespace detail;
  check_shared("lds", p, bytes, bytes, file, line);
  const void* all[32];
  gather("lds", p, all, file, line);
  if (lane() == 0) {
    uintptr_t addr[32];
    for (unsigned l = 0; l < 32; ++l) addr[l] = reinterpret_cast<uintptr_t>(all[l]);
    count_access(kLds, addr, 32, bytes, static_cast<unsigned>(128 / (bytes * 4) * 4));
  }
  unsigned char tmp[16];
  std::memcpy(tmp, p, bytes);
  meet(file, line);
  std::memcpy(out, tmp, bytes);
}

inline void sts(void* p, const void* v, size_t bytes, const char* file, int line) {
  using namespace detail;
  check_shared("sts", p, bytes, bytes, file, line);
  const void* all[32];
  gather("sts", p, all, file, line);
  if (lane() == 0) {
    uintptr_t addr[32];
    for (unsigned l = 0; l < 32; ++l) addr[l] = reinterpret_cast<uintptr_t>(all[l]);
    count_access(kSts, addr, 32, bytes, static_cast<unsigned>(128 / (bytes * 4) * 4));
  }
  meet(file, line);
  std::memcpy(p, v, bytes);
}

inline void cp_async(void* dst, const void* src, int bytes, int src_bytes, bool cg, const char* file, int line) {
  using namespace detail;
  const std::string what = cg ? "cp.async.cg" : "cp.async.ca";
  if (cg && bytes != 16)
    fail_in_fiber(what + " at " + site(file, line) + ": .cg copies 16 bytes, not " + std::to_string(bytes) + ", " +
                  where(*g_current));
  if (src_bytes < 0 || src_bytes > bytes)
    fail_in_fiber(what + " at " + site(file, line) + ": src-size " + std::to_string(src_bytes) + " outside [0, " +
                  std::to_string(bytes) + "], " + where(*g_current));
  check_shared(what.c_str(), dst, static_cast<size_t>(bytes), static_cast<size_t>(bytes), file, line);
  if (reinterpret_cast<uintptr_t>(src) % static_cast<uintptr_t>(bytes) != 0)
    fail_in_fiber(what + " at " + site(file, line) + ": source address is not " + std::to_string(bytes) +
                  "-byte aligned, " + where(*g_current));
  if (src_bytes > 0 && in_shared(src, 1))
    fail_in_fiber(what + " at " + site(file, line) + ": the source is in shared memory, not global, " +
                  where(*g_current));
  ::cuda_on_cpu::detail::AsyncCopy c;
  c.dst = static_cast<unsigned char*>(dst);
  c.bytes = bytes;
  if (src_bytes > 0) std::memcpy(c.data, src, static_cast<size_t>(src_bytes));
  std::memset(dst, 0xFF, static_cast<size_t>(bytes));  // not there until a wait retires the group
  g_current->async_open.push_back(c);
}

inline void cp_async_commit(const char*, int) {
  ::cuda_on_cpu::detail::g_current->async_groups.push_back(std::move(::cuda_on_cpu::detail::g_current->async_open));
  ::cuda_on_cpu::detail::g_current->async_open.clear();
}

inline void cp_async_wait(int n, const char*, int) {
  auto& groups = ::cuda_on_cpu::detail::g_current->async_groups;
  while (groups.size() > static_cast<size_t>(n)) {
    for (const auto& c : groups.front()) std::memcpy(c.dst, c.data, static_cast<size_t>(c.bytes));
    groups.erase(groups.begin());
  }
}

}  // namespace sm80
}  // namespace cuda_on_cpu
