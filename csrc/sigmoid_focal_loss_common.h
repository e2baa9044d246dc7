// The per-element focal loss and its derivative, shared by the CPU and CUDA
// kernels of sigmoid_focal_loss. T is the accumulate type (float for
// float/half/bfloat16, double for double).
//
// With p = sigmoid(x), p' = 1 - p = sigmoid(-x), both from e = exp(-|x|) so
// neither is formed as a difference near 1:
//   ce   = softplus(x) - x t = max(x, 0) - x t + log1p(e)
//   q    = 1 - p_t = t p' + (1 - t) p
//   w    = alpha t + (1 - alpha)(1 - t), or 1 when alpha < 0
//   loss = w ce q^gamma
//   dloss/dx = w ((p - t) q^gamma + gamma q^(gamma-1) p p' (1 - 2t) ce),
// the second term taken as 0 where q = 0 (its limit for gamma >= 1).
#pragma once

#include <ATen/ATen.h>

#include <cmath>

#include "dets_hd.h"

namespace dets {
namespace focal {

template <typename T>
struct Terms {
  T ce, q, p, pm;
};

template <typename T>
DETS_HD Terms<T> terms(T x, T t) {
  using std::exp;
  using std::log1p;
  const T e = exp(x >= T(0) ? -x : x);
  const T inv = T(1) / (T(1) + e);
  const T p = x >= T(0) ? inv : e * inv;
  const T pm = x >= T(0) ? e * inv : inv;
  const T ce = (x > T(0) ? x : T(0)) - x * t + log1p(e);
  return {ce, t * pm + (T(1) - t) * p, p, pm};
}

template <typename T>
DETS_HD T weight(T t, T alpha) {
  return alpha >= T(0) ? alpha * t + (T(1) - alpha) * (T(1) - t) : T(1);
}

// q^gamma, with gamma == 2 (FCOS, RetinaNet) as one product.
template <typename T>
DETS_HD T modulator(T q, T gamma) {
  using std::pow;
  return gamma == T(2) ? q * q : (gamma == T(0) ? T(1) : pow(q, gamma));
}

template <typename T>
DETS_HD T loss(T x, T t, T alpha, T gamma) {
  const Terms<T> s = terms(x, t);
  return weight(t, alpha) * s.ce * modulator(s.q, gamma);
}

template <typename T>
DETS_HD T grad(T x, T t, T alpha, T gamma) {
  using std::pow;
  const Terms<T> s = terms(x, t);
  // p - t without cancellation at t in {0, 1}.
  const T dce = (T(1) - t) * s.p - t * s.pm;
  T dmod = T(0);
  if (gamma != T(0) && s.q > T(0)) {
    const T qm1 = gamma == T(2) ? s.q : pow(s.q, gamma - T(1));
    dmod = gamma * qm1 * s.p * s.pm * (T(1) - T(2) * t) * s.ce;
  }
  return weight(t, alpha) * (dce * modulator(s.q, gamma) + dmod);
}

// Argument checks of the CPU and CUDA launchers (the Python wrapper checks
// first, with the arguments' names).
inline void check_args(const at::Tensor& logits, const at::Tensor& targets,
                       int64_t reduction) {
  TORCH_CHECK(logits.sizes() == targets.sizes() &&
                  logits.scalar_type() == targets.scalar_type() &&
                  logits.device() == targets.device(),
              "sigmoid_focal_loss: targets must match logits in shape, dtype "
              "and device");
  TORCH_CHECK(reduction >= 0 && reduction <= 2,
              "sigmoid_focal_loss: reduction must be 0 (none), 1 (sum) or 2 "
              "(mean)");
}

inline void check_grad(const at::Tensor& grad, const at::Tensor& logits,
                       int64_t reduction) {
  TORCH_CHECK(
      reduction != 0 ? grad.numel() == 1 : grad.sizes() == logits.sizes(),
      "sigmoid_focal_loss: grad must be shaped like the loss");
}

}  // namespace focal
}  // namespace dets
