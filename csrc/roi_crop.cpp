// Schema of RoICrop (faster-rcnn.pytorch's affine grid + bilinear sampler).
// rois are [K, 5] (batch index, x1, y1, x2, y2) in input-image coordinates,
// multiplied by spatial_scale; each RoI gives an output_height x output_width
// grid of bilinear samples spanning the scaled box corners inclusive (geometry:
// csrc/roi_crop.h). The backward op returns the input gradient [N, C, H, W];
// boxes get none.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dets, m) {
  m.def(
      "roi_crop(Tensor input, Tensor rois, float spatial_scale, "
      "int output_height, int output_width) -> Tensor");
  m.def(
      "_roi_crop_backward(Tensor grad, Tensor rois, float spatial_scale, "
      "int batch_size, int channels, int height, int width) -> Tensor");
}
