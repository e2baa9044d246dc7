// IoU test and greedy suppression shared by the CPU NMS family.
//
// The arithmetic reproduces torchvision's CPU kernel operation for operation
// (areas (x2 - x1) * (y2 - y1), union = area_a + area_b - inter, IoU = inter /
// union in the boxes' dtype), so results agree bit for bit. A float IoU is
// compared with the float just below the double threshold (see
// lower_threshold), which decides `iou > threshold` exactly as the promotion
// to double would.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

// One clone of a hot loop per x86 instruction set, picked at load time
// (GCC/Clang ifunc); a plain function elsewhere.
#if defined(__x86_64__) && defined(__GNUC__)
#define DETS_SIMD_CLONES \
  __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DETS_SIMD_CLONES
#endif

namespace dets {

// The largest T not above `threshold`: for every T value v,
// (v > result) == (double(v) > threshold).
template <typename T>
T lower_threshold(double threshold) {
  if (std::is_same_v<T, double> || std::isnan(threshold)) {
    return static_cast<T>(threshold);
  }
  T t = static_cast<T>(threshold);
  if (static_cast<double>(t) > threshold) {
    t = std::nextafter(t, -std::numeric_limits<T>::infinity());
  }
  return t;
}

// IoU of box a with box b; NaN when the union is 0 or a coordinate is NaN.
template <typename T>
inline T box_iou(T ax1, T ay1, T ax2, T ay2, T aarea, T bx1, T by1, T bx2,
                 T by2, T barea) {
  const T w = std::max(T(0), std::min(ax2, bx2) - std::max(ax1, bx1));
  const T h = std::max(T(0), std::min(ay2, by2) - std::max(ay1, by1));
  const T inter = w * h;
  return inter / (aarea + barea - inter);
}

// Boxes as structure-of-arrays: contiguous lanes for the vectorised scans.
template <typename T>
struct BoxColumns {
  std::vector<T> x1, y1, x2, y2, area;

  explicit BoxColumns(int64_t n) : x1(n), y1(n), x2(n), y2(n), area(n) {}

  void set(int64_t i, const T* box) {
    x1[i] = box[0];
    y1[i] = box[1];
    x2[i] = box[2];
    y2[i] = box[3];
    area[i] = (box[2] - box[0]) * (box[3] - box[1]);
  }
};

namespace detail {

// Whether box b has IoU > thr with any of the n boxes in the columns. Scans
// in chunks so that a hit ends the scan early while each chunk stays a
// branch-free loop the compiler vectorises.
template <typename T>
__attribute__((always_inline)) inline bool any_overlap_body(
    const T* __restrict x1, const T* __restrict y1, const T* __restrict x2,
    const T* __restrict y2, const T* __restrict area, int64_t n, T bx1, T by1,
    T bx2, T by2, T barea, T thr) {
  constexpr int64_t kChunk = 256;
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t stop = std::min(n, start + kChunk);
    int hit = 0;
#pragma omp simd reduction(| : hit)
    for (int64_t j = start; j < stop; ++j) {
      const T iou = box_iou(x1[j], y1[j], x2[j], y2[j], area[j], bx1, by1, bx2,
                            by2, barea);
      hit |= iou > thr;
    }
    if (hit) {
      return true;
    }
  }
  return false;
}

}  // namespace detail

[[maybe_unused]] DETS_SIMD_CLONES static bool any_overlap(
    const float* x1, const float* y1, const float* x2, const float* y2,
    const float* area, int64_t n, float bx1, float by1, float bx2, float by2,
    float barea, float thr) {
  return detail::any_overlap_body(x1, y1, x2, y2, area, n, bx1, by1, bx2, by2,
                                  barea, thr);
}

[[maybe_unused]] DETS_SIMD_CLONES static bool any_overlap(
    const double* x1, const double* y1, const double* x2, const double* y2,
    const double* area, int64_t n, double bx1, double by1, double bx2,
    double by2, double barea, double thr) {
  return detail::any_overlap_body(x1, y1, x2, y2, area, n, bx1, by1, bx2, by2,
                                  barea, thr);
}

// Greedy NMS over boxes [begin, end) of `cols`, already in visit order.
// Sets keep[i] = 1 for kept boxes (keep is indexed like cols).
//
// Each box is tested against the boxes kept so far, which are appended to a
// compact column store. Boxes are taken in blocks: every box of a block is
// first tested against the kept boxes from earlier blocks (independent tests,
// split across threads when `parallel` and the work is large), then the
// block is resolved in order against the boxes it kept itself.
template <typename T>
void greedy_nms(const BoxColumns<T>& cols, int64_t begin, int64_t end, T thr,
                bool parallel, uint8_t* keep) {
  constexpr int64_t kBlock = 256;
  constexpr int64_t kPairsPerTask = 1 << 15;
  const int64_t n = end - begin;
  BoxColumns<T> kept(n);
  int64_t nk = 0;
  uint8_t hit[kBlock];
  auto test = [&](int64_t i, int64_t from, int64_t count) {
    return any_overlap(kept.x1.data() + from, kept.y1.data() + from,
                       kept.x2.data() + from, kept.y2.data() + from,
                       kept.area.data() + from, count, cols.x1[i], cols.y1[i],
                       cols.x2[i], cols.y2[i], cols.area[i], thr);
  };
  for (int64_t lo = begin; lo < end; lo += kBlock) {
    const int64_t hi = std::min(end, lo + kBlock);
    const int64_t before = nk;
    auto against_earlier = [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) {
        hit[i - lo] = test(i, 0, before);
      }
    };
    if (parallel && before * (hi - lo) > 2 * kPairsPerTask) {
      const int64_t grain = std::max<int64_t>(1, kPairsPerTask / before);
      at::parallel_for(lo, hi, grain, against_earlier);
    } else {
      against_earlier(lo, hi);
    }
    for (int64_t i = lo; i < hi; ++i) {
      if (hit[i - lo] || test(i, before, nk - before)) {
        continue;
      }
      kept.x1[nk] = cols.x1[i];
      kept.y1[nk] = cols.y1[i];
      kept.x2[nk] = cols.x2[i];
      kept.y2[nk] = cols.y2[i];
      kept.area[nk] = cols.area[i];
      ++nk;
      keep[i] = 1;
    }
  }
}

}  // namespace dets
