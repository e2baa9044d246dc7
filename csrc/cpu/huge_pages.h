// Huge pages for large freshly allocated outputs.
//
// A new tensor of tens of megabytes comes straight from mmap: none of its
// pages exist until first written, and each 4 KiB page then costs a fault,
// microseconds apiece on a virtual machine. Filling a fresh 50 MB output that
// way can take longer than computing it. Asking the kernel to back the buffer
// with transparent huge pages (honoured where THP is "madvise" or "always")
// turns some 12,000 faults into about 25. It is advice only: where huge pages
// are unsupported, disabled or refused, nothing changes but the time.
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

// Advises huge pages for the whole pages inside `fresh`'s storage. Call it
// before anything writes to a tensor just returned by at::empty.
inline void advise_huge_pages(const at::Tensor& fresh) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const int64_t bytes = static_cast<int64_t>(fresh.nbytes());
  if (bytes < kHugePagesMinBytes) {
    return;
  }
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(fresh.data_ptr());
  const uintptr_t first = (begin + page - 1) / page * page;
  const uintptr_t last = (begin + bytes) / page * page;
  if (last > first) {
    // A refusal (e.g. memory that is not anonymous) only forgoes the speed-up.
    madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
#else
  (void)fresh;
#endif
}

}  // namespace dets
