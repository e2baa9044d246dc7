// Sampling geometry of RoICrop, shared by the CPU and CUDA kernels so both
// place the points and weigh the neighbours identically.
//
// Along one axis an RoI [lo, hi] (feature coordinates) gets n points from lo to
// hi inclusive, spaced (hi - lo) / (n - 1); with n == 1 the single point is the
// centre, where F.affine_grid(align_corners=True) puts a unit-size grid.
// A coordinate c has the neighbours floor(c) and floor(c) + 1, weighted
// 1 - frac and frac; a neighbour outside [0, size - 1] contributes nothing.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define DETS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define DETS_HOST_DEVICE inline
#endif

namespace dets {

template <typename T>
DETS_HOST_DEVICE T roi_crop_point(T lo, T hi, int64_t j, int64_t n) {
  if (n == 1) {
    return (lo + hi) / T(2);
  }
  return lo + static_cast<T>(j) * ((hi - lo) / static_cast<T>(n - 1));
}

// Neighbours of one coordinate along an axis of `size` pixels. Returns false
// when neither neighbour lies in the map, which includes NaN and +-inf (the
// comparisons fail), so the integer conversion below only sees values in
// (-1, size). A neighbour outside the map gets weight 0 and the index of its
// in-map partner, so callers may read it without a bounds test.
template <typename T>
struct RoICropAxisTap {
  int64_t lo, hi;
  T w_lo, w_hi;
};

template <typename T>
DETS_HOST_DEVICE bool roi_crop_axis_tap(T coord, int64_t size,
                                        RoICropAxisTap<T>* tap) {
  if (!(coord > T(-1) && coord < static_cast<T>(size))) {
    return false;
  }
#if defined(__CUDA_ARCH__)
  const T base = floor(coord);
#else
  const T base = std::floor(coord);
#endif
  const T frac = coord - base;
  const int64_t lo = static_cast<int64_t>(base);
  tap->w_lo = lo >= 0 ? T(1) - frac : T(0);
  tap->w_hi = lo + 1 <= size - 1 ? frac : T(0);
  tap->lo = lo >= 0 ? lo : 0;
  tap->hi = lo + 1 <= size - 1 ? lo + 1 : size - 1;
  return true;
}

// Batch index of an RoI row, or -1 when it is not a whole number in [0, n).
// The op entries reject such rows (roi_checks.h) before a kernel runs; the -1
// keeps the kernels' own conversion defined for every float they could read.
template <typename T>
DETS_HOST_DEVICE int64_t roi_crop_batch(T value, int64_t n) {
  if (!(value >= T(0) && value < static_cast<T>(n))) {
    return -1;
  }
  const int64_t b = static_cast<int64_t>(value);
  return static_cast<T>(b) == value ? b : -1;
}

}  // namespace dets
