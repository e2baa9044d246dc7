// RoIAlign sampling geometry shared by the CPU and CUDA kernels, forward and
// backward, so every pass places its samples identically (torchvision's
// arithmetic, operation for operation).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define DETS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define DETS_HOST_DEVICE inline
#endif

namespace dets {
namespace roi_align_common {

// One RoI in feature-map pixels. grid_h or grid_w <= 0 marks an RoI with no
// samples (non-finite coordinates, or a negative size with aligned=True): its
// output is 0 and it receives no gradient.
template <typename T>
struct Geometry {
  T start_h, start_w, bin_h, bin_w;
  int64_t grid_h, grid_w;
  T count;  // max(grid_h * grid_w, 1): the divisor of the sample sum
};

// A sample's two taps along one axis: pixel indices and their weights.
template <typename T>
struct AxisTap {
  int64_t lo, hi;
  T w_lo, w_hi;
};

// Most adaptive sampling points per bin along one axis (sampling_ratio <= 0),
// = MAX_ADAPTIVE_GRID of dets/ops/reference/roi_align.py: a deliberate cap
// (torchvision has none) so that one huge RoI costs at most 64 x 64 samples per
// bin instead of stalling a step (a 1e8-pixel RoI took 37 s and 4.8 GB).
constexpr int64_t kMaxAdaptiveGrid = 64;

// ceil(bin) points, at most kMaxAdaptiveGrid; 0 for an empty or NaN bin.
template <typename T>
DETS_HOST_DEVICE int64_t adaptive_grid(T bin) {
  using std::ceil;
  const T g = ceil(bin);
  if (!(g > T(0))) return 0;
  return g < static_cast<T>(kMaxAdaptiveGrid) ? static_cast<int64_t>(g)
                                              : kMaxAdaptiveGrid;
}

// `roi` points at (batch index, x1, y1, x2, y2). The corners are scaled in
// double and rounded once to T, as torchvision does.
template <typename T, typename R>
DETS_HOST_DEVICE Geometry<T> roi_geometry(const R* roi, double spatial_scale,
                                          int64_t pooled_h, int64_t pooled_w,
                                          int64_t sampling_ratio,
                                          bool aligned) {
  using std::isfinite;
  const double offset = aligned ? 0.5 : 0.0;
  const T x1 =
      static_cast<T>(static_cast<double>(roi[1]) * spatial_scale - offset);
  const T y1 =
      static_cast<T>(static_cast<double>(roi[2]) * spatial_scale - offset);
  const T x2 =
      static_cast<T>(static_cast<double>(roi[3]) * spatial_scale - offset);
  const T y2 =
      static_cast<T>(static_cast<double>(roi[4]) * spatial_scale - offset);
  Geometry<T> g;
  g.start_h = y1;
  g.start_w = x1;
  T roi_h = y2 - y1;
  T roi_w = x2 - x1;
  if (!aligned) {
    // Legacy mode: malformed RoIs are forced to 1x1 pixels.
    roi_h = roi_h > T(1) ? roi_h : T(1);
    roi_w = roi_w > T(1) ? roi_w : T(1);
  }
  g.bin_h = roi_h / static_cast<T>(pooled_h);
  g.bin_w = roi_w / static_cast<T>(pooled_w);
  if (!(isfinite(x1) && isfinite(y1) && isfinite(x2) && isfinite(y2))) {
    g.grid_h = g.grid_w = 0;
  } else if (sampling_ratio > 0) {
    g.grid_h = g.grid_w = sampling_ratio;
  } else {
    g.grid_h = adaptive_grid(g.bin_h);
    g.grid_w = adaptive_grid(g.bin_w);
  }
  const int64_t n = g.grid_h * g.grid_w;
  g.count = static_cast<T>(n > 1 ? n : 1);
  return g;
}

// Coordinate of sample i (of `grid`) in bin p, in torchvision's order of
// operations: start + p * bin + (i + 0.5) * bin / grid.
template <typename T>
DETS_HOST_DEVICE T sample_coord(T start, T bin, int64_t p, int64_t i,
                                int64_t grid) {
  return start + static_cast<T>(p) * bin +
         (static_cast<T>(i) + T(0.5)) * bin / static_cast<T>(grid);
}

// Bilinear taps of coordinate v on an axis of `size` pixels. False when the
// sample lies outside [-1, size] (it then contributes 0); inside, v is clamped
// to [0, size - 1].
template <typename T>
DETS_HOST_DEVICE bool axis_tap(T v, int64_t size, AxisTap<T>& t) {
  if (v < T(-1) || v > static_cast<T>(size)) return false;
  if (v <= T(0)) v = T(0);
  int64_t lo = static_cast<int64_t>(v);
  int64_t hi = lo + 1;
  if (lo >= size - 1) {
    lo = hi = size - 1;
    v = static_cast<T>(lo);
  }
  const T frac = v - static_cast<T>(lo);
  t.lo = lo;
  t.hi = hi;
  t.w_lo = T(1) - frac;
  t.w_hi = frac;
  return true;
}

}  // namespace roi_align_common
}  // namespace dets
