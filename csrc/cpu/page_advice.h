// Page advice for large outputs that a CPU kernel is about to write in full.
//
// A new tensor of tens of megabytes comes straight from mmap: none of its
// pages exist until first written, and each 4 KiB page then costs a fault,
// microseconds apiece on a virtual machine. On a target heatmap or a pooled
// RoI batch those faults, not the writes, can be most of the op's time. Two
// remedies, both advice only (older kernels, other systems, THP disabled or a
// refused call leave the pages to fault in on first write, as without them):
//  - advise_huge_pages: back the buffer with transparent huge pages (honoured
//    where THP is "madvise" or "always"), turning some 12,000 faults of a
//    50 MB output into about 25;
//  - prefault_for_write: MADV_POPULATE_WRITE (Linux 5.14) maps a range in one
//    system call, about a third faster than the page-by-page faults, and lets
//    each thread map in the part of an output it will write.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace dets {

// Smaller buffers span too few huge pages (2 MiB on x86-64) to repay the
// system call.
constexpr int64_t kHugePagesMinBytes = int64_t{8} << 20;

#if defined(__linux__)
// madvise(advice) on the pages lying wholly inside [begin, end); the result is
// ignored, since a refusal only forgoes the speed-up.
inline void advise_whole_pages(const void* begin, const void* end, int advice) {
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t lo =
      (reinterpret_cast<uintptr_t>(begin) + page - 1) & ~(page - 1);
  const uintptr_t hi = reinterpret_cast<uintptr_t>(end) & ~(page - 1);
  if (hi > lo) {
    (void)madvise(reinterpret_cast<void*>(lo), hi - lo, advice);
  }
}
#endif

// Advises huge pages for `fresh`'s storage if it is at least
// kHugePagesMinBytes. Call it before anything writes to a tensor just returned
// by at::empty.
inline void advise_huge_pages(const at::Tensor& fresh) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const auto bytes = static_cast<int64_t>(fresh.nbytes());
  if (bytes >= kHugePagesMinBytes) {
    const auto* begin = static_cast<const char*>(fresh.data_ptr());
    advise_whole_pages(begin, begin + bytes, MADV_HUGEPAGE);
  }
#else
  (void)fresh;
#endif
}

// Maps in the pages lying wholly inside [begin, end) for writing.
inline void prefault_for_write(void* begin, void* end) {
#if defined(__linux__) && defined(MADV_POPULATE_WRITE)
  advise_whole_pages(begin, end, MADV_POPULATE_WRITE);
#else
  (void)begin;
  (void)end;
#endif
}

}  // namespace dets
