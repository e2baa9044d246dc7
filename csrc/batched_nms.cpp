// Schema of batched NMS: NMS run independently within each category of
// `idxs` (int64 [N]); conventions as in csrc/nms.cpp. The result holds the
// kept indices of every category together, by decreasing score (equal scores
// in increasing index order).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dets, m) {
  m.def(
      "batched_nms(Tensor boxes, Tensor scores, Tensor idxs, "
      "float iou_threshold) -> Tensor");
}
