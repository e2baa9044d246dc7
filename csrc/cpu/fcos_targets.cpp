// FCOS training targets on the CPU: threads take runs of (image, location)
// pairs of the flattened output; each location walks its image's boxes
// (fcos_targets.h). Time is O(locations x boxes), memory only the outputs:
// no [locations, boxes, 4] intermediate.
#include "fcos_targets.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "heatmap_checks.h"

namespace dets {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> fcos_targets_cpu(
    const at::Tensor& boxes, const at::Tensor& labels,
    const at::Tensor& num_boxes, at::IntArrayRef heights,
    at::IntArrayRef widths, at::IntArrayRef strides,
    at::ArrayRef<double> range_lo, at::ArrayRef<double> range_hi,
    double radius) {
  check_target_boxes("fcos_targets", boxes, labels, num_boxes);
  const int64_t total =
      check_fcos_levels(heights, widths, strides, range_lo, range_hi, radius);
  const int64_t batch = boxes.size(0), slots = boxes.size(1);
  at::Tensor out_labels = at::empty({batch, total}, labels.options());
  at::Tensor reg = at::empty({batch, total, 4}, boxes.options());
  at::Tensor ctr = at::empty({batch, total}, boxes.options());
  const at::Tensor b = boxes.contiguous();
  const at::Tensor lab = labels.contiguous();
  const at::Tensor nb = num_boxes.contiguous();
  const int64_t levels = static_cast<int64_t>(heights.size());
  std::vector<int64_t> start(levels + 1, 0);
  for (int64_t k = 0; k < levels; ++k) {
    start[k + 1] = start[k] + heights[k] * widths[k];
  }
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "fcos_targets_cpu", [&] {
    using T = scalar_t;
    const T* bp = b.data_ptr<T>();
    const int64_t* lp = lab.data_ptr<int64_t>();
    const int64_t* np = nb.data_ptr<int64_t>();
    int64_t* olp = out_labels.data_ptr<int64_t>();
    T* rp = reg.data_ptr<T>();
    T* cp = ctr.data_ptr<T>();
    // A location costs a walk over the image's boxes.
    const int64_t grain = std::max<int64_t>(
        1, at::internal::GRAIN_SIZE / std::max<int64_t>(slots, 1));
    at::parallel_for(0, batch * total, grain, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t i = task / total, loc = task % total;
        const int64_t k = std::upper_bound(start.begin(), start.end(), loc) -
                          start.begin() - 1;
        const int64_t pos = loc - start[k];
        const int64_t s = strides[k];
        const T x = static_cast<T>(s / 2 + (pos % widths[k]) * s);
        const T y = static_cast<T>(s / 2 + (pos / widths[k]) * s);
        const int64_t n = std::min(std::max<int64_t>(np[i], 0), slots);
        const T* bi = bp + i * slots * 4;
        const fcos::Assignment<T> a = fcos::assign<T>(
            x, y, static_cast<T>(radius * static_cast<double>(s)),
            static_cast<T>(range_lo[k]), static_cast<T>(range_hi[k]), n,
            [bi](int64_t j, T& x1, T& y1, T& x2, T& y2) {
              x1 = bi[4 * j];
              y1 = bi[4 * j + 1];
              x2 = bi[4 * j + 2];
              y2 = bi[4 * j + 3];
            });
        T* r = rp + task * 4;
        if (a.box >= 0) {
          olp[task] = lp[i * slots + a.box];
          r[0] = a.l;
          r[1] = a.t;
          r[2] = a.r;
          r[3] = a.b;
          cp[task] = fcos::centerness<T>(a.l, a.t, a.r, a.b);
        } else {
          olp[task] = -1;
          std::fill_n(r, 4, T(0));
          cp[task] = T(0);
        }
      }
    });
  });
  return {out_labels, reg, ctr};
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CPU, m) { m.impl("fcos_targets", fcos_targets_cpu); }

}  // namespace dets
