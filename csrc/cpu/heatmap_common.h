// Pieces shared by the CPU heatmap-target kernels (ttf_targets,
// centernet_targets): the separable Gaussian's 1-D factors, evaluated in
// double whatever the box type, and the max-paste of a window of their
// products into a class plane.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace dets {
namespace heatmap_cpu {

// Appends exp(-d^2 / (2 sigma^2)), sigma = (2r+1)/6, for d = lo - c .. hi - c;
// returns their sum.
inline double gaussian_1d(int64_t lo, int64_t hi, int64_t c, int64_t r,
                          std::vector<double>& out) {
  const double sigma = static_cast<double>(2 * r + 1) / 6;
  const double denom = 2 * sigma * sigma;
  double sum = 0;
  for (int64_t i = lo; i <= hi; ++i) {
    const double d = static_cast<double>(i - c);
    out.push_back(std::exp(-(d * d) / denom));
    sum += out.back();
  }
  return sum;
}

// The real boxes of image i: num_boxes[i] cut to [0, slots].
inline int64_t image_boxes(const int64_t* num_boxes, int64_t i, int64_t slots) {
  return std::min(std::max<int64_t>(num_boxes[i], 0), slots);
}

// plane[y0 + y][x0 + x] = max(itself, gx[x] * gy[y]) for x < w, y < h, in a
// plane `width` wide.
template <typename T>
void paste_max(T* plane, int64_t width, int64_t x0, int64_t y0, int64_t w,
               int64_t h, const double* gx, const double* gy) {
  T* row = plane + y0 * width + x0;
  for (int64_t y = 0; y < h; ++y, row += width) {
    for (int64_t x = 0; x < w; ++x) {
      row[x] = std::max(row[x], static_cast<T>(gx[x] * gy[y]));
    }
  }
}

}  // namespace heatmap_cpu
}  // namespace dets
