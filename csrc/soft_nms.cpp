// Schema of Soft-NMS (Bodla et al., 2017). method: 0 hard, 1 linear,
// 2 gaussian (DetNet's numbering). Returns (keep int64 [K], new scores [K]) in
// selection order; the selection rule is documented in dets/ops/soft_nms.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dets, m) {
  m.def(
      "soft_nms(Tensor boxes, Tensor scores, float iou_threshold, "
      "float sigma, float score_threshold, int method) -> (Tensor, Tensor)");
}
