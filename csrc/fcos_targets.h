// Per-location FCOS assignment shared by the CPU and CUDA kernels of
// fcos_targets, so both take the same decisions with the same operations. T is
// the compute type: double for double boxes, float otherwise.
#pragma once

#include <cmath>
#include <cstdint>

#include "dets_hd.h"

namespace dets {
namespace fcos {

template <typename T>
struct Assignment {
  int64_t box;  // -1: background
  T l, t, r, b;
};

// The box (among `n` of one image) that location (x, y) of a level with
// sampling half-width `half` (radius * stride; 0: off) and scale range
// [lo, hi] is assigned to. A candidate is inside its box (or its centre
// region cut to the box) with all four distances > 0, has max(l, t, r, b) in
// [lo, hi], and the smallest (x2 - x1 + 1)(y2 - y1 + 1); equal areas keep the
// lowest index (strict <). Boxes with a non-finite coordinate never qualify
// (v - v is 0 only for finite v), nor do boxes with x2 <= x1 or y2 <= y1 (no
// location is strictly inside them).
template <typename T, typename Load>
DETS_HD Assignment<T> assign(T x, T y, T half, T lo, T hi, int64_t n,
                             Load box) {
  Assignment<T> best{-1, T(0), T(0), T(0), T(0)};
  T best_area = T(0);
  for (int64_t j = 0; j < n; ++j) {
    T x1, y1, x2, y2;
    box(j, x1, y1, x2, y2);
    if (!((x1 - x1) + (y1 - y1) + (x2 - x2) + (y2 - y2) == T(0))) {
      continue;
    }
    const T l = x - x1, t = y - y1, r = x2 - x, b = y2 - y;
    bool inside;
    if (half > T(0)) {
      const T cx = (x1 + x2) / T(2), cy = (y1 + y2) / T(2);
      const T sx1 = cx - half > x1 ? cx - half : x1;
      const T sy1 = cy - half > y1 ? cy - half : y1;
      const T sx2 = cx + half > x2 ? x2 : cx + half;
      const T sy2 = cy + half > y2 ? y2 : cy + half;
      inside =
          x - sx1 > T(0) && y - sy1 > T(0) && sx2 - x > T(0) && sy2 - y > T(0);
    } else {
      inside = l > T(0) && t > T(0) && r > T(0) && b > T(0);
    }
    if (!inside) {
      continue;
    }
    const T lr = l > r ? l : r, tb = t > b ? t : b;
    const T m = lr > tb ? lr : tb;
    if (!(m >= lo && m <= hi)) {
      continue;
    }
    const T area = (x2 - x1 + T(1)) * (y2 - y1 + T(1));
    if (best.box < 0 || area < best_area) {
      best = {j, l, t, r, b};
      best_area = area;
    }
  }
  return best;
}

// sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)); all four are > 0.
template <typename T>
DETS_HD T centerness(T l, T t, T r, T b) {
  const T h = (l < r ? l : r) / (l > r ? l : r);
  const T v = (t < b ? t : b) / (t > b ? t : b);
#ifdef __CUDA_ARCH__
  return sqrt(h * v);
#else
  return std::sqrt(h * v);
#endif
}

}  // namespace fcos
}  // namespace dets
