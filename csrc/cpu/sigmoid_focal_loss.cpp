// Sigmoid focal loss on the CPU: one fused pass forward (elementwise loss, or
// its sum in the accumulate type without the elementwise tensor) and one
// backward (the gradient of logits from the closed-form derivative), both
// over contiguous data with at::parallel_for / at::parallel_reduce.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "sigmoid_focal_loss_common.h"

namespace dets {
namespace {

// Elements per task: the loop body is a handful of transcendental calls.
constexpr int64_t kGrain = 8192;

at::Tensor sigmoid_focal_loss_cpu(const at::Tensor& logits,
                                  const at::Tensor& targets, double alpha,
                                  double gamma, int64_t reduction) {
  focal::check_args(logits, targets, reduction);
  const at::Tensor x = logits.contiguous();
  const at::Tensor t = targets.contiguous();
  const int64_t n = x.numel();
  at::Tensor out =
      reduction == 0 ? at::empty_like(x) : at::empty({}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sigmoid_focal_loss_cpu", [&] {
    using T = scalar_t;
    const T* xp = x.data_ptr<T>();
    const T* tp = t.data_ptr<T>();
    const T a = static_cast<T>(alpha), g = static_cast<T>(gamma);
    if (reduction == 0) {
      T* op = out.data_ptr<T>();
      at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          op[i] = focal::loss<T>(xp[i], tp[i], a, g);
        }
      });
      return;
    }
    // Sums accumulate in double: 10^6 float terms would lose digits.
    const double sum = at::parallel_reduce(
        0, n, kGrain, 0.0,
        [&](int64_t begin, int64_t end, double acc) {
          for (int64_t i = begin; i < end; ++i) {
            acc += static_cast<double>(focal::loss<T>(xp[i], tp[i], a, g));
          }
          return acc;
        },
        [](double u, double v) { return u + v; });
    out.fill_(reduction == 1 ? sum : sum / static_cast<double>(n));
  });
  return out;
}

at::Tensor sigmoid_focal_loss_backward_cpu(const at::Tensor& grad,
                                           const at::Tensor& logits,
                                           const at::Tensor& targets,
                                           double alpha, double gamma,
                                           int64_t reduction) {
  focal::check_args(logits, targets, reduction);
  focal::check_grad(grad, logits, reduction);
  const at::Tensor x = logits.contiguous();
  const at::Tensor t = targets.contiguous();
  const at::Tensor go = grad.to(x.scalar_type()).contiguous();
  const int64_t n = x.numel();
  at::Tensor out = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(
      x.scalar_type(), "sigmoid_focal_loss_backward_cpu", [&] {
        using T = scalar_t;
        const T* xp = x.data_ptr<T>();
        const T* tp = t.data_ptr<T>();
        const T* gp = go.data_ptr<T>();
        T* op = out.data_ptr<T>();
        const T a = static_cast<T>(alpha), g = static_cast<T>(gamma);
        const T scale = reduction == 0   ? T(1)
                        : reduction == 1 ? gp[0]
                                         : gp[0] / static_cast<T>(n);
        const bool elementwise = reduction == 0;
        at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i) {
            const T d = focal::grad<T>(xp[i], tp[i], a, g);
            op[i] = (elementwise ? gp[i] : scale) * d;
          }
        });
      });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CPU, m) {
  m.impl("sigmoid_focal_loss", sigmoid_focal_loss_cpu);
  m.impl("_sigmoid_focal_loss_backward", sigmoid_focal_loss_backward_cpu);
}

}  // namespace dets
