// CenterNet (ctdet) training targets on the CPU.
//
// One task per image (at::parallel_for) initialises its own output slices,
// then visits its first max_objs boxes in input order: each valid box fills
// its slot k and max-pastes its round Gaussian into its class plane, touching
// only the Gaussian's window. The Gaussian is separable: one 1-D exp table.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/heatmap_common.h"
#include "heatmap_checks.h"
#include "heatmap_targets.h"

namespace dets {
namespace {

template <typename T>
void centernet_image(const T* boxes, const int64_t* labels, int64_t n,
                     int64_t num_classes, int64_t height, int64_t width,
                     T down_ratio, double min_overlap, int64_t max_objs,
                     T* heat, T* wh, T* offset, int64_t* index, T* mask) {
  const int64_t plane = height * width;
  std::memset(heat, 0, sizeof(T) * num_classes * plane);
  std::fill_n(wh, 2 * max_objs, T(0));
  std::fill_n(offset, 2 * max_objs, T(0));
  std::fill_n(index, max_objs, int64_t{0});
  std::fill_n(mask, max_objs, T(0));
  std::vector<double> g;
  for (int64_t k = 0; k < std::min(n, max_objs); ++k) {
    const T* b = boxes + 4 * k;
    const heatmap::CenternetBox<T> box = heatmap::centernet_box<T>(
        b[0], b[1], b[2], b[3], down_ratio, min_overlap, height, width);
    if (!box.valid || !heatmap::known_label(labels[k], num_classes)) {
      continue;
    }
    // One table serves both axes: g[d + r] is the factor at distance d.
    const int64_t r = box.radius;
    g.clear();
    heatmap_cpu::gaussian_1d(-r, r, 0, r, g);
    const heatmap::Window w =
        heatmap::clip_window(box.ix, box.iy, r, r, height, width);
    heatmap_cpu::paste_max(heat + labels[k] * plane, width, w.x0, w.y0,
                           w.x1 - w.x0 + 1, w.y1 - w.y0 + 1,
                           g.data() + (w.x0 - box.ix + r),
                           g.data() + (w.y0 - box.iy + r));
    wh[2 * k] = box.w;
    wh[2 * k + 1] = box.h;
    offset[2 * k] = box.cx - static_cast<T>(box.ix);
    offset[2 * k + 1] = box.cy - static_cast<T>(box.iy);
    index[k] = box.iy * width + box.ix;
    mask[k] = T(1);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
centernet_targets_cpu(const at::Tensor& boxes, const at::Tensor& labels,
                      const at::Tensor& num_boxes, int64_t num_classes,
                      int64_t out_h, int64_t out_w, double down_ratio,
                      double min_overlap, int64_t max_objs) {
  check_target_args("centernet_targets", boxes, labels, num_boxes, num_classes,
                    out_h, out_w, down_ratio);
  check_centernet_args(max_objs, min_overlap);
  const int64_t batch = boxes.size(0), slots = boxes.size(1);
  const auto opts = boxes.options();
  at::Tensor heat = at::empty({batch, num_classes, out_h, out_w}, opts);
  at::Tensor wh = at::empty({batch, max_objs, 2}, opts);
  at::Tensor offset = at::empty({batch, max_objs, 2}, opts);
  at::Tensor index = at::empty({batch, max_objs}, opts.dtype(at::kLong));
  at::Tensor mask = at::empty({batch, max_objs}, opts);
  const at::Tensor b = boxes.contiguous();
  const at::Tensor l = labels.contiguous();
  const at::Tensor nb = num_boxes.contiguous();
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "centernet_targets_cpu", [&] {
    const scalar_t* bp = b.data_ptr<scalar_t>();
    const int64_t* lp = l.data_ptr<int64_t>();
    const int64_t* np = nb.data_ptr<int64_t>();
    const int64_t plane = out_h * out_w;
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t n = heatmap_cpu::image_boxes(np, i, slots);
        centernet_image<scalar_t>(
            bp + i * slots * 4, lp + i * slots, n, num_classes, out_h, out_w,
            static_cast<scalar_t>(down_ratio), min_overlap, max_objs,
            heat.data_ptr<scalar_t>() + i * num_classes * plane,
            wh.data_ptr<scalar_t>() + i * max_objs * 2,
            offset.data_ptr<scalar_t>() + i * max_objs * 2,
            index.data_ptr<int64_t>() + i * max_objs,
            mask.data_ptr<scalar_t>() + i * max_objs);
      }
    });
  });
  return {heat, wh, offset, index, mask};
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CPU, m) {
  m.impl("centernet_targets", centernet_targets_cpu);
}

}  // namespace dets
