// Schema of the sigmoid focal loss (conventions:
// dets/ops/sigmoid_focal_loss.py). targets is a float tensor shaped like
// logits; alpha < 0 turns the class weighting off; reduction: 0 none, 1 sum, 2
// mean. The backward takes the incoming gradient (shaped like logits for none,
// a scalar otherwise) and returns the gradient of logits; targets get none.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dets, m) {
  m.def(
      "sigmoid_focal_loss(Tensor logits, Tensor targets, float alpha, "
      "float gamma, int reduction) -> Tensor");
  m.def(
      "_sigmoid_focal_loss_backward(Tensor grad, Tensor logits, "
      "Tensor targets, float alpha, float gamma, int reduction) -> Tensor");
}
