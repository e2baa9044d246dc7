// Greedy NMS on the CPU.
//
// Boxes are visited in score order; the still-alive later boxes are kept in a
// compacted structure-of-arrays so each kept box scans only survivors with a
// branch-free, vectorisable IoU test (inter > thr * union: no division, and no
// NaN trouble when union is 0).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

namespace dets {
namespace {

template <typename scalar_t>
at::Tensor nms_cpu_impl(const at::Tensor& boxes, const at::Tensor& scores,
                        double iou_threshold) {
  const int64_t n = boxes.size(0);
  const at::Tensor order =
      std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const at::Tensor sorted = boxes.index_select(0, order).contiguous();
  const scalar_t* b = sorted.data_ptr<scalar_t>();
  const int64_t* ord = order.data_ptr<int64_t>();

  // Survivors after the current kept box, compacted in score order.
  std::vector<scalar_t> x1(n), y1(n), x2(n), y2(n), area(n);
  std::vector<int64_t> pos(n);
  for (int64_t i = 0; i < n; ++i) {
    x1[i] = b[4 * i];
    y1[i] = b[4 * i + 1];
    x2[i] = b[4 * i + 2];
    y2[i] = b[4 * i + 3];
    area[i] = (x2[i] - x1[i]) * (y2[i] - y1[i]);
    pos[i] = i;
  }
  const scalar_t thr = static_cast<scalar_t>(iou_threshold);
  std::vector<int64_t> keep;
  int64_t alive = n;
  int64_t head = 0;
  while (head < alive) {
    const scalar_t kx1 = x1[head], ky1 = y1[head], kx2 = x2[head],
                   ky2 = y2[head], ka = area[head];
    keep.push_back(ord[pos[head]]);
    int64_t w = 0;
    for (int64_t r = head + 1; r < alive; ++r) {
      const scalar_t iw = std::max<scalar_t>(
          std::min(kx2, x2[r]) - std::max(kx1, x1[r]), 0);
      const scalar_t ih = std::max<scalar_t>(
          std::min(ky2, y2[r]) - std::max(ky1, y1[r]), 0);
      const scalar_t inter = iw * ih;
      const bool suppressed = inter > thr * (ka + area[r] - inter);
      x1[w] = x1[r];
      y1[w] = y1[r];
      x2[w] = x2[r];
      y2[w] = y2[r];
      area[w] = area[r];
      pos[w] = pos[r];
      w += !suppressed;
    }
    alive = w;
    head = 0;
  }
  at::Tensor out = at::empty({static_cast<int64_t>(keep.size())},
                             boxes.options().dtype(at::kLong));
  std::copy(keep.begin(), keep.end(), out.data_ptr<int64_t>());
  return out;
}

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores,
                   double iou_threshold) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4,
              "nms: boxes must have shape [N, 4], got ", boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0),
              "nms: scores must have shape [N] matching boxes, got ",
              scores.sizes());
  if (boxes.size(0) == 0) {
    return at::empty({0}, boxes.options().dtype(at::kLong));
  }
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "nms_cpu", [&] {
    out = nms_cpu_impl<scalar_t>(boxes.contiguous(), scores.contiguous(),
                                 iou_threshold);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CPU, m) { m.impl("nms", nms_cpu); }

}  // namespace dets
