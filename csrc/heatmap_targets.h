// Per-box geometry of the heatmap-target ops (ttf_targets, centernet_targets),
// shared by the CPU and CUDA kernels so both truncate centres and radii at
// exactly the same places. T is the compute type: double for double boxes,
// float otherwise. The Python reference and the Triton kernels follow the same
// operation order.
#pragma once

#include <cmath>
#include <cstdint>

#include "dets_hd.h"

namespace dets {
namespace heatmap {

// Box coordinates (input pixels) must lie within +-2^30: a box with one
// beyond, infinite or NaN is invalid, drawn nowhere, so that areas, logs and
// weights stay finite. Centres (map cells; down_ratio may be below 1) are
// clamped to the same bound before truncation so no integer overflows.
constexpr double kCoordLimit = 1073741824.0;

// |x1|, |y1|, |x2|, |y2| <= kCoordLimit (false for NaN).
template <typename T>
DETS_HD bool within_limit(T x1, T y1, T x2, T y2) {
  const T lim = static_cast<T>(kCoordLimit);
  return x1 >= -lim && x1 <= lim && y1 >= -lim && y1 <= lim && x2 >= -lim &&
         x2 <= lim && y2 >= -lim && y2 <= lim;
}

template <typename T>
DETS_HD T clamp(T v, T lo, T hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// Rounded products: nvcc would otherwise fuse a*b-c into an FMA, and the radii
// below are truncated to integers, so one ulp can move a boundary.
DETS_HD double mul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

DETS_HD double sqrt_rn(double v) {
#ifdef __CUDA_ARCH__
  return __dsqrt_rn(v);
#else
  return std::sqrt(v);
#endif
}

template <typename T>
DETS_HD int64_t trunc_center(T v) {
  return static_cast<int64_t>(
      clamp<T>(v, static_cast<T>(-kCoordLimit), static_cast<T>(kCoordLimit)));
}

// Out-of-range labels are rejected by the Python wrappers; the kernels skip
// them so that direct torch.ops calls stay inside the heatmap.
DETS_HD bool known_label(int64_t label, int64_t num_classes) {
  return label >= 0 && label < num_classes;
}

// A Gaussian's window [cx - rw, cx + rw] x [cy - rh, cy + rh] cut to the map;
// empty (x0 > x1 or y0 > y1) when it misses the map.
struct Window {
  int64_t x0, x1, y0, y1;
};

DETS_HD Window clip_window(int64_t cx, int64_t cy, int64_t rw, int64_t rh,
                           int64_t height, int64_t width) {
  return {cx - rw > 0 ? cx - rw : 0, cx + rw < width - 1 ? cx + rw : width - 1,
          cy - rh > 0 ? cy - rh : 0,
          cy + rh < height - 1 ? cy + rh : height - 1};
}

struct TtfBox {
  bool valid;
  int64_t cx, cy, rw, rh;
};

// TTFNet: area (w+1)(h+1) of the input box; centre from the unclamped box;
// radii from the box on the output grid, clamped to the map. Boxes with a
// coordinate beyond kCoordLimit (or NaN) or x2 < x1 or y2 < y1 are invalid
// (drawn nowhere).
template <typename T>
DETS_HD TtfBox ttf_box(T x1, T y1, T x2, T y2, T down_ratio, T alpha,
                       int64_t height, int64_t width, T* area) {
  TtfBox box{false, 0, 0, 0, 0};
  *area = (x2 - x1 + T(1)) * (y2 - y1 + T(1));
  if (!within_limit(x1, y1, x2, y2) || x2 < x1 || y2 < y1) {
    return box;
  }
  const T wmax = static_cast<T>(width - 1), hmax = static_cast<T>(height - 1);
  const T fw = clamp<T>(x2 / down_ratio, T(0), wmax) -
               clamp<T>(x1 / down_ratio, T(0), wmax);
  const T fh = clamp<T>(y2 / down_ratio, T(0), hmax) -
               clamp<T>(y1 / down_ratio, T(0), hmax);
  box.valid = true;
  box.rw = static_cast<int64_t>(fw / T(2) * alpha);
  box.rh = static_cast<int64_t>(fh / T(2) * alpha);
  box.cx = trunc_center<T>((x1 + x2) / T(2) / down_ratio);
  box.cy = trunc_center<T>((y1 + y2) / T(2) / down_ratio);
  return box;
}

// CornerNet's radius with the quadratics solved properly (mmdetection's
// gaussian_target.py); same operation order as dets/ops/_heatmap.py.
DETS_HD double gaussian_radius(double h, double w, double o) {
  const double b1 = h + w;
  const double c1 = mul_rn(mul_rn(w, h), 1 - o) / (1 + o);
  const double r1 = (b1 - sqrt_rn(mul_rn(b1, b1) - mul_rn(4, c1))) / 2;
  const double b2 = mul_rn(2, h + w);
  const double c2 = mul_rn(mul_rn(1 - o, w), h);
  const double r2 = (b2 - sqrt_rn(mul_rn(b2, b2) - mul_rn(16, c2))) / 8;
  const double a3 = mul_rn(4, o);
  const double b3 = mul_rn(mul_rn(-2, o), h + w);
  const double c3 = mul_rn(mul_rn(o - 1, w), h);
  const double r3 = (b3 + sqrt_rn(mul_rn(b3, b3) - mul_rn(mul_rn(4, a3), c3))) /
                    mul_rn(2, a3);
  const double r = r1 < r2 ? r1 : r2;
  return r < r3 ? r : r3;
}

template <typename T>
struct CenternetBox {
  bool valid;
  T w, h, cx, cy;
  int64_t ix, iy, radius;
};

// CenterNet: the box on the output grid clamped to the map; skipped unless
// within kCoordLimit with positive width and height there.
template <typename T>
DETS_HD CenternetBox<T> centernet_box(T x1, T y1, T x2, T y2, T down_ratio,
                                      double min_overlap, int64_t height,
                                      int64_t width) {
  CenternetBox<T> box{false, T(0), T(0), T(0), T(0), 0, 0, 0};
  if (!within_limit(x1, y1, x2, y2)) {
    return box;
  }
  const T wmax = static_cast<T>(width - 1), hmax = static_cast<T>(height - 1);
  const T fx1 = clamp<T>(x1 / down_ratio, T(0), wmax);
  const T fx2 = clamp<T>(x2 / down_ratio, T(0), wmax);
  const T fy1 = clamp<T>(y1 / down_ratio, T(0), hmax);
  const T fy2 = clamp<T>(y2 / down_ratio, T(0), hmax);
  box.w = fx2 - fx1;
  box.h = fy2 - fy1;
  if (!(box.w > T(0) && box.h > T(0))) {
    return box;
  }
  box.valid = true;
  const double r =
      gaussian_radius(static_cast<double>(ceil(box.h)),
                      static_cast<double>(ceil(box.w)), min_overlap);
  box.radius = r > 0 ? static_cast<int64_t>(r) : 0;
  box.cx = (fx1 + fx2) / T(2);
  box.cy = (fy1 + fy2) / T(2);
  box.ix = static_cast<int64_t>(box.cx);
  box.iy = static_cast<int64_t>(box.cy);
  return box;
}

}  // namespace heatmap
}  // namespace dets
