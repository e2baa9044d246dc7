// Batched NMS on the GPU without the coordinate-offset trick or a host loop
// over categories: boxes are ordered by (category, decreasing score) with two
// stable sorts, each box learns the end of its category's range
// (searchsorted), and the kernels of nms.cu only compare boxes inside one
// range (tiles past every row's range are skipped).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "cuda/helpers.cuh"

namespace dets {
namespace {

at::Tensor batched_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores,
                            const at::Tensor& idxs, double iou_threshold) {
  TORCH_CHECK(boxes.is_cuda() && scores.is_cuda() && idxs.is_cuda(),
              "batched_nms: boxes, scores and idxs must be CUDA tensors");
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4,
              "batched_nms: boxes must have shape [N, 4], got ", boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0),
              "batched_nms: scores must have shape [N] matching boxes, got ",
              scores.sizes());
  TORCH_CHECK(idxs.dim() == 1 && idxs.size(0) == boxes.size(0) &&
                  idxs.scalar_type() == at::kLong,
              "batched_nms: idxs must be int64 [N] matching boxes");
  const c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t n = boxes.size(0);
  if (n == 0) {
    return at::empty({0}, boxes.options().dtype(at::kLong));
  }
  const at::Tensor by_score =
      std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const auto [categories, regroup] = idxs.index_select(0, by_score)
                                         .sort(/*stable=*/true, /*dim=*/0,
                                               /*descending=*/false);
  const at::Tensor order = by_score.index_select(0, regroup);
  const at::Tensor seg_end =
      at::searchsorted(categories, categories, /*out_int32=*/false,
                       /*right=*/true);
  const at::Tensor keep = greedy_keep_cuda(
      boxes.index_select(0, order).contiguous(), seg_end, iou_threshold);
  at::Tensor kept = at::zeros({n}, boxes.options().dtype(at::kBool));
  kept.index_put_({order}, keep);
  return by_score.masked_select(kept.index_select(0, by_score));
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CUDA, m) { m.impl("batched_nms", batched_nms_cuda); }

}  // namespace dets
