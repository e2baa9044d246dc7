// Schema of RoIAlign (Mask R-CNN), same semantics as torchvision.ops.roi_align.
// rois are [K, 5] rows (batch index, x1, y1, x2, y2) in input-image
// coordinates; see dets/ops/roi_align.py for the full convention. The backward
// returns the gradient of `input` only (RoI coordinates get none).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dets, m) {
  m.def(
      "roi_align(Tensor input, Tensor rois, float spatial_scale, "
      "int pooled_height, int pooled_width, int sampling_ratio, "
      "bool aligned) -> Tensor");
  m.def(
      "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, "
      "int pooled_height, int pooled_width, int batch_size, int channels, "
      "int height, int width, int sampling_ratio, bool aligned) -> Tensor");
}
