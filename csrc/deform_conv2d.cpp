// Schema of modulated deformable convolution (DCNv2), same semantics as
// torchvision.ops.deform_conv2d; see dets/ops/deform_conv2d.py for the full
// convention. `mask` is read only when use_mask is true (the Python wrapper
// passes a placeholder otherwise); `bias` is always a [C_out] tensor (zeros for
// none). The backward returns the gradients of input, weight, offset, mask and
// bias, in that order (mask's is zeros when use_mask is false).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dets, m) {
  m.def(
      "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, "
      "Tensor bias, int stride_h, int stride_w, int pad_h, int pad_w, "
      "int dilation_h, int dilation_w, int groups, int offset_groups, "
      "bool use_mask) -> Tensor");
  m.def(
      "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, "
      "Tensor offset, Tensor mask, Tensor bias, int stride_h, int stride_w, "
      "int pad_h, int pad_w, int dilation_h, int dilation_w, int groups, "
      "int offset_groups, bool use_mask) -> (Tensor, Tensor, Tensor, Tensor, "
      "Tensor)");
}
