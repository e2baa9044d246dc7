// Schemas of RoIPool (Caffe / Fast R-CNN max pooling over RoI bins, as
// torchvision implements it).
//
// roi_pool returns the pooled values [K, C, PH, PW] and an int32 argmax of the
// same shape: the offset h * W + w of the chosen input pixel inside its
// (batch, channel) plane, or -1 where nothing was pooled. Storing the plane
// offset rather than a global index keeps argmax at 4 bytes per output (it is
// as large as the output itself); the price is the limit H * W < 2^31, checked
// by the callers. With with_argmax false (inference: no gradient wanted) the
// argmax is not written and an empty [0] tensor comes back in its place, which
// halves the bytes the forward writes. _roi_pool_backward scatters grad (any
// strides) through the argmax into a zero [N, C, H, W] gradient of input's
// dtype.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dets, m) {
  m.def(
      "roi_pool(Tensor input, Tensor rois, float spatial_scale, "
      "int pooled_height, int pooled_width, bool with_argmax=True) -> "
      "(Tensor, Tensor)");
  m.def(
      "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, "
      "int batch_size, int channels, int height, int width) -> Tensor");
}
