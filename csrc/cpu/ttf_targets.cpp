// TTFNet training targets on the CPU.
//
// The work is split into (image, part) tasks, a part being one heatmap plane
// or the image's box_target and reg_weight planes. A thread first plans each
// image it meets: the boxes' windows cut to the map, their 1-D Gaussian rows
// and columns (the Gaussian is separable, so a pixel is one product and a
// box's normaliser the product of two sums), the drawing order by decreasing
// area and the boxes grouped by class. Each task then initialises its own
// planes and draws into them at once, while they are still in cache. Outputs
// come from at::empty, advised onto huge pages, and each thread maps in its
// own range of them up front (both cpu/page_advice.h): there is no separate
// zero-fill pass, and mapping the large heatmap in, most of the op's
// cost, is one system call per thread rather than a fault per 4 KiB page, and
// mostly 2 MiB pages where huge pages are granted.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/heatmap_common.h"
#include "cpu/page_advice.h"
#include "heatmap_checks.h"
#include "heatmap_targets.h"

namespace dets {
namespace {

// One box as drawn: its window cut to the map and where its Gaussian factors
// lie in the image's table (w column factors, then h row factors).
template <typename T>
struct Window {
  T area;
  int64_t index;  // slot in the image, for box_target's values
  int64_t label;
  int64_t x0, y0, w, h;
  double scale;  // A / sum of the Gaussian over the window
  int64_t table;
};

template <typename T>
struct ImagePlan {
  std::vector<Window<T>> by_area;  // drawing order of box_target, reg_weight
  std::vector<double> table;
  // by_class[class_start[c] .. class_start[c + 1]) index by_area for class c.
  std::vector<int64_t> by_class;
  std::vector<int64_t> class_start;
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

template <typename T>
void plan_image(const T* boxes, const int64_t* labels, int64_t n,
                int64_t num_classes, int64_t height, int64_t width,
                T down_ratio, T alpha, int64_t area_process,
                ImagePlan<T>& plan) {
  plan.by_area.clear();
  plan.table.clear();
  for (int64_t j = 0; j < n; ++j) {
    const T* b = boxes + 4 * j;
    T area;
    const heatmap::TtfBox box = heatmap::ttf_box<T>(
        b[0], b[1], b[2], b[3], down_ratio, alpha, height, width, &area);
    if (!box.valid || !heatmap::known_label(labels[j], num_classes)) {
      continue;
    }
    const heatmap::Window w =
        heatmap::clip_window(box.cx, box.cy, box.rw, box.rh, height, width);
    if (w.x0 > w.x1 || w.y0 > w.y1) {
      continue;
    }
    const int64_t table = static_cast<int64_t>(plan.table.size());
    const double sx =
        heatmap_cpu::gaussian_1d(w.x0, w.x1, box.cx, box.rw, plan.table);
    const double sy =
        heatmap_cpu::gaussian_1d(w.y0, w.y1, box.cy, box.rh, plan.table);
    plan.by_area.push_back(
        {area, j, labels[j], w.x0, w.y0, w.x1 - w.x0 + 1, w.y1 - w.y0 + 1,
         area_weight<T>(area, area_process) / (sx * sy), table});
  }
  // Largest first; equal areas by decreasing index, so the smallest area and
  // then the lowest index is drawn last and wins.
  std::sort(plan.by_area.begin(), plan.by_area.end(),
            [](const Window<T>& a, const Window<T>& b) {
              return a.area != b.area ? a.area > b.area : a.index > b.index;
            });
  // Counting sort by label; the heatmap takes a maximum, so order within a
  // class does not matter.
  plan.class_start.assign(num_classes + 1, 0);
  for (const Window<T>& d : plan.by_area) {
    ++plan.class_start[d.label + 1];
  }
  for (int64_t c = 0; c < num_classes; ++c) {
    plan.class_start[c + 1] += plan.class_start[c];
  }
  plan.by_class.resize(plan.by_area.size());
  std::vector<int64_t> next(plan.class_start.begin(),
                            plan.class_start.end() - 1);
  for (int64_t k = 0; k < static_cast<int64_t>(plan.by_area.size()); ++k) {
    plan.by_class[next[plan.by_area[k].label]++] = k;
  }
}

template <typename T>
void draw_heat_plane(const ImagePlan<T>& plan, int64_t c, int64_t width,
                     int64_t plane, T* heat) {
  std::fill_n(heat, plane, T(0));
  for (int64_t s = plan.class_start[c]; s < plan.class_start[c + 1]; ++s) {
    const Window<T>& d = plan.by_area[plan.by_class[s]];
    const double* gx = plan.table.data() + d.table;
    heatmap_cpu::paste_max(heat, width, d.x0, d.y0, d.w, d.h, gx, gx + d.w);
  }
}

template <typename T>
void draw_box_planes(const ImagePlan<T>& plan, const T* boxes, int64_t width,
                     int64_t plane, T* target, T* weight) {
  std::fill_n(target, 4 * plane, T(-1));
  std::fill_n(weight, plane, T(0));
  for (const Window<T>& d : plan.by_area) {
    const double* gx = plan.table.data() + d.table;
    const double* gy = gx + d.w;
    const T* b = boxes + 4 * d.index;
    for (int64_t y = 0; y < d.h; ++y) {
      const int64_t row = (d.y0 + y) * width + d.x0;
      for (int64_t x = 0; x < d.w; ++x) {
        weight[row + x] = static_cast<T>(gx[x] * gy[y] * d.scale);
      }
      for (int64_t k = 0; k < 4; ++k) {
        std::fill_n(target + k * plane + row, d.w, b[k]);
      }
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ttf_targets_cpu(
    const at::Tensor& boxes, const at::Tensor& labels,
    const at::Tensor& num_boxes, int64_t num_classes, int64_t out_h,
    int64_t out_w, double down_ratio, double alpha, int64_t area_process) {
  check_target_args("ttf_targets", boxes, labels, num_boxes, num_classes, out_h,
                    out_w, down_ratio);
  const int64_t batch = boxes.size(0), slots = boxes.size(1);
  const auto opts = boxes.options();
  at::Tensor heat = at::empty({batch, num_classes, out_h, out_w}, opts);
  at::Tensor target = at::empty({batch, 4, out_h, out_w}, opts);
  at::Tensor weight = at::empty({batch, 1, out_h, out_w}, opts);
  // Before the first write: huge pages where the system grants them, so the
  // prefaulting below maps 2 MiB at a time.
  advise_huge_pages(heat);
  advise_huge_pages(target);
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
    // Part c < num_classes is heatmap plane c; part num_classes is
    // box_target and reg_weight. Tiny maps are not worth a thread each.
    const int64_t parts = num_classes + 1;
    const int64_t grain =
        std::max<int64_t>(1, at::internal::GRAIN_SIZE / plane);
    at::parallel_for(0, batch * parts, grain, [&](int64_t begin, int64_t end) {
      // Tasks run image by image, so [begin, end) covers one contiguous run
      // of heatmap planes and the box planes of images [i_begin, i_end).
      const int64_t i_begin = begin / parts, i_end = end / parts;
      prefault_for_write(hp + (i_begin * num_classes + begin % parts) * plane,
                         hp + (i_end * num_classes + end % parts) * plane);
      prefault_for_write(tp + i_begin * 4 * plane, tp + i_end * 4 * plane);
      prefault_for_write(wp + i_begin * plane, wp + i_end * plane);
      // Each thread plans the images it meets (one at the edge of another
      // thread's range is planned by both), reusing one plan's storage.
      ImagePlan<scalar_t> plan;
      int64_t planned = -1;
      for (int64_t task = begin; task < end; ++task) {
        const int64_t i = task / parts, c = task % parts;
        if (i != planned) {
          const int64_t n = heatmap_cpu::image_boxes(np, i, slots);
          plan_image<scalar_t>(
              bp + i * slots * 4, lp + i * slots, n, num_classes, out_h, out_w,
              static_cast<scalar_t>(down_ratio), static_cast<scalar_t>(alpha),
              area_process, plan);
          planned = i;
        }
        if (c < num_classes) {
          draw_heat_plane<scalar_t>(plan, c, out_w, plane,
                                    hp + (i * num_classes + c) * plane);
        } else {
          draw_box_planes<scalar_t>(plan, bp + i * slots * 4, out_w, plane,
                                    tp + i * 4 * plane, wp + i * plane);
        }
      }
    });
  });
  return {heat, target, weight};
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CPU, m) { m.impl("ttf_targets", ttf_targets_cpu); }

}  // namespace dets
