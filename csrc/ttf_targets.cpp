// Schema of the TTFNet training targets (see dets/ops/ttf_targets.py for the
// conventions). Ground truth comes padded: boxes [B, M, 4] (x1, y1, x2, y2 in
// input pixels), labels [B, M] int64 0-based, num_boxes [B] int64.
// area_process: 0 log, 1 sqrt, 2 norm (all 1), 3 none (the raw area).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dets, m) {
  m.def(
      "ttf_targets(Tensor boxes, Tensor labels, Tensor num_boxes, "
      "int num_classes, int out_h, int out_w, float down_ratio, float alpha, "
      "int area_process) -> (Tensor heatmap, Tensor box_target, "
      "Tensor reg_weight)");
}
