// Greedy NMS on the CPU: sort, gather the boxes into columns in visit order,
// then the blocked greedy scan of box_iou.h (vectorised, multi-threaded).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu/box_iou.h"

namespace dets {
namespace {

template <typename T>
at::Tensor nms_cpu_impl(const at::Tensor& boxes, const at::Tensor& scores,
                        double iou_threshold) {
  const int64_t n = boxes.size(0);
  const at::Tensor order =
      std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const int64_t* ord = order.data_ptr<int64_t>();
  const T* b = boxes.data_ptr<T>();
  BoxColumns<T> cols(n);
  at::parallel_for(0, n, 4096, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      cols.set(i, b + 4 * ord[i]);
    }
  });
  std::vector<uint8_t> keep(n, 0);
  greedy_nms(cols, 0, n, lower_threshold<T>(iou_threshold), /*parallel=*/true,
             keep.data());
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    count += keep[i];
  }
  at::Tensor out = at::empty({count}, boxes.options().dtype(at::kLong));
  int64_t* o = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (keep[i]) {
      *o++ = ord[i];
    }
  }
  return out;
}

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores,
                   double iou_threshold) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4,
              "nms: boxes must have shape [N, 4], got ", boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0),
              "nms: scores must have shape [N] matching boxes, got ",
              scores.sizes());
  TORCH_CHECK(boxes.scalar_type() == scores.scalar_type(),
              "nms: boxes and scores must share a dtype");
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
