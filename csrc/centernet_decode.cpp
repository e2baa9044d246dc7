// Schema of CenterNet decoding. Peaks, order and padding as in ttf_decode.cpp;
// boxes are ((x + ox -+ w/2) * d, (y + oy -+ h/2) * d), offset optional.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dets, m) {
  m.def(
      "centernet_decode(Tensor heatmap, Tensor wh, Tensor? offset, int k, "
      "float down_ratio) -> (Tensor, Tensor, Tensor)");
}
