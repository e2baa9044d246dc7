// Schema of the NMS family. Conventions: boxes are (x1, y1, x2, y2) with no
// "+1" on widths; a box is suppressed when its IoU with a kept box is strictly
// greater than iou_threshold; kept indices are int64, by decreasing score,
// equal scores in increasing index order (stable sort).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dets, m) {
  m.def("nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor");
}
