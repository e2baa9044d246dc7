// Schema of the CenterNet (ctdet) training targets (see
// dets/ops/centernet_targets.py for the conventions). Ground truth comes
// padded: boxes [B, M, 4] (x1, y1, x2, y2 in input pixels), labels [B, M]
// int64 0-based, num_boxes [B] int64.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dets, m) {
  m.def(
      "centernet_targets(Tensor boxes, Tensor labels, Tensor num_boxes, "
      "int num_classes, int out_h, int out_w, float down_ratio, "
      "float min_overlap, int max_objs) -> (Tensor heatmap, Tensor wh, "
      "Tensor offset, Tensor index, Tensor mask)");
}
