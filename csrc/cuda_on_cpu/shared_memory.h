// cuda_on_cpu, one part of cuda_on_cpu.h (include that header, not this one): shared memory as a
// GPU gives it. Dynamic shared memory is one allocation per launch (between canaries, or exact
// under AddressSanitizer) that every block finds full of garbage; a kernel's static __shared__
// arrays are found in the symbol table and refilled with garbage before every block too.
#pragma once

#include <dlfcn.h>
#include <elf.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace cuda_on_cpu {
namespace detail {

constexpr size_t kCanary = 64;
constexpr unsigned char kCanaryByte = 0xC5;
constexpr unsigned char kGarbageByte = 0xFF;  // fresh shared memory reads as NaN / -1

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

inline unsigned char* dynamic_shared() {
  if (!g_launch || !g_launch->smem) return nullptr;
  return g_launch->smem;
}

}  // namespace detail
}  // namespace cuda_on_cpu
