// TTFNet training targets on the CPU.
//
// One task per image (at::parallel_for): it first initialises its own slices of
// the three outputs (so the page faults of the large heatmap are taken in
// parallel, once), then draws its boxes largest-first, letting smaller boxes
// overwrite box_target and reg_weight; only each box's window is touched. The
// Gaussian is separable, so each box needs two short 1-D exp tables (in
// double) and its normaliser is the product of their sums.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "heatmap_checks.h"
#include "heatmap_targets.h"

namespace dets {
namespace {

template <typename T>
struct Drawn {
  T area;
  int64_t index;
  heatmap::TtfBox box;
};

template <typename T>
double area_weight(T area, int64_t area_process) {
  switch (area_process) {
    case 0:
      return static_cast<double>(std::log(area));
    case 1:
      return static_cast<double>(std::sqrt(area));
    case 2:
      return 1.0;
    default:
      return static_cast<double>(area);
  }
}

// exp(-d^2 / (2 sigma^2)) for d = lo - c .. hi - c; returns the sum.
double gaussian_1d(int64_t lo, int64_t hi, int64_t c, int64_t r,
                   std::vector<double>& out) {
  const double sigma = static_cast<double>(2 * r + 1) / 6;
  const double denom = 2 * sigma * sigma;
  out.resize(hi - lo + 1);
  double sum = 0;
  for (int64_t i = lo; i <= hi; ++i) {
    const double d = static_cast<double>(i - c);
    out[i - lo] = std::exp(-(d * d) / denom);
    sum += out[i - lo];
  }
  return sum;
}

template <typename T>
void ttf_image(const T* boxes, const int64_t* labels, int64_t n,
               int64_t num_classes, int64_t height, int64_t width,
               T down_ratio, T alpha, int64_t area_process, T* heat,
               T* target, T* weight) {
  const int64_t plane = height * width;
  std::memset(heat, 0, sizeof(T) * num_classes * plane);
  std::fill_n(target, 4 * plane, T(-1));
  std::fill_n(weight, plane, T(0));

  std::vector<Drawn<T>> order;
  order.reserve(n);
  for (int64_t j = 0; j < n; ++j) {
    const T* b = boxes + 4 * j;
    T area;
    const heatmap::TtfBox box = heatmap::ttf_box<T>(
        b[0], b[1], b[2], b[3], down_ratio, alpha, height, width, &area);
    // Out-of-range labels are rejected by the Python wrapper; skipping them
    // here keeps direct torch.ops calls inside the heatmap.
    if (box.valid && labels[j] >= 0 && labels[j] < num_classes) {
      order.push_back({area, j, box});
    }
  }
  // Largest first; equal areas by decreasing index, so the smallest area and
  // then the lowest index is drawn last and wins.
  std::sort(order.begin(), order.end(),
            [](const Drawn<T>& a, const Drawn<T>& b) {
              return a.area != b.area ? a.area > b.area : a.index > b.index;
            });

  std::vector<double> gx, gy;
  for (const Drawn<T>& d : order) {
    const heatmap::TtfBox& box = d.box;
    const int64_t x0 = std::max<int64_t>(box.cx - box.rw, 0);
    const int64_t x1 = std::min<int64_t>(box.cx + box.rw, width - 1);
    const int64_t y0 = std::max<int64_t>(box.cy - box.rh, 0);
    const int64_t y1 = std::min<int64_t>(box.cy + box.rh, height - 1);
    if (x0 > x1 || y0 > y1) {
      continue;
    }
    const double sx = gaussian_1d(x0, x1, box.cx, box.rw, gx);
    const double sy = gaussian_1d(y0, y1, box.cy, box.rh, gy);
    const double scale = area_weight<T>(d.area, area_process) / (sx * sy);
    const T* b = boxes + 4 * d.index;
    T* hm = heat + labels[d.index] * plane;
    const int64_t len = x1 - x0 + 1;
    for (int64_t y = y0; y <= y1; ++y) {
      const double g_y = gy[y - y0];
      const int64_t row = y * width + x0;
      for (int64_t i = 0; i < len; ++i) {
        const double g = gx[i] * g_y;
        hm[row + i] = std::max(hm[row + i], static_cast<T>(g));
        weight[row + i] = static_cast<T>(g * scale);
      }
      for (int64_t k = 0; k < 4; ++k) {
        std::fill_n(target + k * plane + row, len, b[k]);
      }
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ttf_targets_cpu(
    const at::Tensor& boxes, const at::Tensor& labels,
    const at::Tensor& num_boxes, int64_t num_classes, int64_t out_h,
    int64_t out_w, double down_ratio, double alpha, int64_t area_process) {
  check_target_boxes("ttf_targets", boxes, labels, num_boxes);
  TORCH_CHECK(num_classes > 0 && out_h > 0 && out_w > 0 && down_ratio > 0,
              "ttf_targets: num_classes, output size and down_ratio must be "
              "positive");
  const int64_t batch = boxes.size(0), slots = boxes.size(1);
  const auto opts = boxes.options();
  at::Tensor heat = at::empty({batch, num_classes, out_h, out_w}, opts);
  at::Tensor target = at::empty({batch, 4, out_h, out_w}, opts);
  at::Tensor weight = at::empty({batch, 1, out_h, out_w}, opts);
  const at::Tensor b = boxes.contiguous();
  const at::Tensor l = labels.contiguous();
  const at::Tensor nb = num_boxes.contiguous();
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "ttf_targets_cpu", [&] {
    const scalar_t* bp = b.data_ptr<scalar_t>();
    const int64_t* lp = l.data_ptr<int64_t>();
    const int64_t* np = nb.data_ptr<int64_t>();
    scalar_t* hp = heat.data_ptr<scalar_t>();
    scalar_t* tp = target.data_ptr<scalar_t>();
    scalar_t* wp = weight.data_ptr<scalar_t>();
    const int64_t plane = out_h * out_w;
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t n = std::min(std::max<int64_t>(np[i], 0), slots);
        ttf_image<scalar_t>(bp + i * slots * 4, lp + i * slots, n, num_classes,
                            out_h, out_w, static_cast<scalar_t>(down_ratio),
                            static_cast<scalar_t>(alpha), area_process,
                            hp + i * num_classes * plane, tp + i * 4 * plane,
                            wp + i * plane);
      }
    });
  });
  return {heat, target, weight};
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CPU, m) { m.impl("ttf_targets", ttf_targets_cpu); }

}  // namespace dets
