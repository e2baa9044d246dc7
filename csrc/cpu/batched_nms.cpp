// Batched NMS on the CPU without the coordinate-offset trick: boxes are
// ordered by (category, decreasing score) and each category's segment runs
// the greedy scan of box_iou.h on its own, segments in parallel.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu/box_iou.h"

namespace dets {
namespace {

// Positions of score order (`by_score`) regrouped by category, stable within
// each category. A counting sort when the category values span a small range,
// else a stable sort of the categories.
std::vector<int64_t> group_by_category(const int64_t* cls,
                                       const int64_t* by_score, int64_t n,
                                       const at::Tensor& idxs) {
  std::vector<int64_t> order(n);
  const auto [lo_it, hi_it] = std::minmax_element(cls, cls + n);
  const int64_t lo = *lo_it;
  const uint64_t span =
      static_cast<uint64_t>(*hi_it) - static_cast<uint64_t>(lo);
  if (span < static_cast<uint64_t>(4 * n + 1024)) {
    std::vector<int64_t> start(span + 2, 0);
    for (int64_t i = 0; i < n; ++i) {
      ++start[cls[i] - lo + 1];
    }
    for (uint64_t c = 1; c < span + 2; ++c) {
      start[c] += start[c - 1];
    }
    for (int64_t p = 0; p < n; ++p) {
      const int64_t i = by_score[p];
      order[start[cls[i] - lo]++] = i;
    }
    return order;
  }
  const at::Tensor ordered =
      at::from_blob(const_cast<int64_t*>(by_score), {n}, idxs.options());
  const at::Tensor cls_in_score_order = idxs.index_select(0, ordered);
  const at::Tensor regroup = std::get<1>(cls_in_score_order.sort(
      /*stable=*/true, /*dim=*/0, /*descending=*/false));
  const int64_t* r = regroup.data_ptr<int64_t>();
  for (int64_t p = 0; p < n; ++p) {
    order[p] = by_score[r[p]];
  }
  return order;
}

template <typename T>
at::Tensor batched_nms_cpu_impl(const at::Tensor& boxes,
                                const at::Tensor& scores,
                                const at::Tensor& idxs, double iou_threshold) {
  const int64_t n = boxes.size(0);
  const at::Tensor by_score_t =
      std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const int64_t* by_score = by_score_t.data_ptr<int64_t>();
  const int64_t* cls = idxs.data_ptr<int64_t>();
  const std::vector<int64_t> order = group_by_category(cls, by_score, n, idxs);

  const T* b = boxes.data_ptr<T>();
  BoxColumns<T> cols(n);
  std::vector<int64_t> seg_start;
  for (int64_t p = 0; p < n; ++p) {
    cols.set(p, b + 4 * order[p]);
    if (p == 0 || cls[order[p]] != cls[order[p - 1]]) {
      seg_start.push_back(p);
    }
  }
  const int64_t segments = static_cast<int64_t>(seg_start.size());
  seg_start.push_back(n);

  const T thr = lower_threshold<T>(iou_threshold);
  std::vector<uint8_t> keep_sorted(n, 0);
  // A few big categories parallelise inside their scan; many categories
  // parallelise across segments.
  const bool few = segments < 2 * at::get_num_threads();
  if (few) {
    for (int64_t s = 0; s < segments; ++s) {
      greedy_nms(cols, seg_start[s], seg_start[s + 1], thr, /*parallel=*/true,
                 keep_sorted.data());
    }
  } else {
    at::parallel_for(0, segments, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t s = lo; s < hi; ++s) {
        greedy_nms(cols, seg_start[s], seg_start[s + 1], thr,
                   /*parallel=*/false, keep_sorted.data());
      }
    });
  }

  std::vector<uint8_t> kept(n, 0);
  int64_t count = 0;
  for (int64_t p = 0; p < n; ++p) {
    kept[order[p]] = keep_sorted[p];
    count += keep_sorted[p];
  }
  at::Tensor out = at::empty({count}, boxes.options().dtype(at::kLong));
  int64_t* o = out.data_ptr<int64_t>();
  for (int64_t p = 0; p < n; ++p) {
    if (kept[by_score[p]]) {
      *o++ = by_score[p];
    }
  }
  return out;
}

at::Tensor batched_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores,
                           const at::Tensor& idxs, double iou_threshold) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4,
              "batched_nms: boxes must have shape [N, 4], got ", boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0),
              "batched_nms: scores must have shape [N] matching boxes, got ",
              scores.sizes());
  TORCH_CHECK(idxs.dim() == 1 && idxs.size(0) == boxes.size(0),
              "batched_nms: idxs must have shape [N] matching boxes, got ",
              idxs.sizes());
  TORCH_CHECK(idxs.scalar_type() == at::kLong,
              "batched_nms: idxs must be int64, got ", idxs.scalar_type());
  TORCH_CHECK(boxes.scalar_type() == scores.scalar_type(),
              "batched_nms: boxes and scores must share a dtype");
  if (boxes.size(0) == 0) {
    return at::empty({0}, boxes.options().dtype(at::kLong));
  }
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "batched_nms_cpu", [&] {
    out =
        batched_nms_cpu_impl<scalar_t>(boxes.contiguous(), scores.contiguous(),
                                       idxs.contiguous(), iou_threshold);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CPU, m) { m.impl("batched_nms", batched_nms_cpu); }

}  // namespace dets
