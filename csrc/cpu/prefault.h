// Prefaulting memory that a CPU kernel is about to write in full.
//
// A large output from at::empty is usually fresh anonymous memory: its first
// write to each 4 KiB page traps into the kernel, and on a target heatmap of
// tens of megabytes those traps, not the writes, are most of the op's time.
// MADV_POPULATE_WRITE (Linux 5.14) maps a whole range in one system call,
// taking about a third less time than the page-by-page faults.
#pragma once

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace dets {

// Maps in the pages lying wholly inside [begin, end). Only a hint: the pages
// at the edges, older kernels, other systems and a refused call (the result is
// ignored) leave the pages to fault in on first write, as without it.
inline void prefault_for_write(void* begin, void* end) {
#if defined(__linux__) && defined(MADV_POPULATE_WRITE)
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t lo =
      (reinterpret_cast<uintptr_t>(begin) + page - 1) & ~(page - 1);
  const uintptr_t hi = reinterpret_cast<uintptr_t>(end) & ~(page - 1);
  if (hi > lo) {
    (void)madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_POPULATE_WRITE);
  }
#else
  (void)begin;
  (void)end;
#endif
}

}  // namespace dets
