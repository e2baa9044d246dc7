// Schema of TTFNet decoding. Conventions (dets/ops/ttf_decode.py): peaks are
// values no in-map 3x3 neighbour exceeds; the k best per image by decreasing
// score, equal scores by increasing flat index c*H*W + y*W + x; padding slots
// hold score 0, label -1, box 0. Boxes: (d*x - l, d*y - t, d*x + r, d*y + b).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dets, m) {
  m.def(
      "ttf_decode(Tensor heatmap, Tensor wh, int k, float down_ratio) -> "
      "(Tensor, Tensor, Tensor)");
}
