// Schema of the FCOS training targets (conventions: dets/ops/fcos_targets.py).
// Ground truth comes padded: boxes [B, M, 4] (x1, y1, x2, y2 in input pixels),
// labels [B, M] int64 0-based, num_boxes [B] int64. Level l has a map of
// heights[l] x widths[l] locations at strides[l] and keeps boxes whose largest
// side distance lies in [range_lo[l], range_hi[l]]; radius 0 turns centre
// sampling off.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dets, m) {
  m.def(
      "fcos_targets(Tensor boxes, Tensor labels, Tensor num_boxes, "
      "int[] heights, int[] widths, int[] strides, float[] range_lo, "
      "float[] range_hi, float radius) -> (Tensor labels, Tensor reg_targets, "
      "Tensor centerness)");
}
