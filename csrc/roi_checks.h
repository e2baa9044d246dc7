// Argument checks of the RoI ops' C++ entries (RoIAlign, RoIPool, RoICrop,
// forward and backward), shared by the CPU and CUDA kernels so both reject the
// same inputs with the same messages. torch.ops.dets.* is reachable without
// the Python wrappers (directly, or from a compiled graph), so these checks
// cover everything a kernel would otherwise index out of bounds with: shapes,
// dtypes, batch indices and argmax offsets.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <cmath>
#include <cstdint>
#include <limits>

namespace dets {
namespace roi_checks {

// Every RoI's batch index (column 0 of rois [K, 5], stored as a float) must be
// a whole number in [0, batch_size): the kernels index the feature map (or
// its gradient) with it. NaN fails every comparison, so it is rejected too.
// One pass over the RoIs; on a GPU, one reduction and one host sync (the
// Python wrappers make the same check, naming the argument, before calling).
inline void check_batch_indices(const char* op, const at::Tensor& rois,
                                int64_t batch_size) {
  if (rois.size(0) == 0) {
    return;
  }
  auto fail = [&](int64_t k, double b) {
    TORCH_CHECK(false, op, ": rois[", k, ", 0] = ", b,
                " is not a batch index in [0, ", batch_size, ")");
  };
  if (rois.is_cpu()) {
    const at::Tensor r = rois.contiguous();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, r.scalar_type(), "check_batch_indices", [&] {
          const scalar_t* p = r.const_data_ptr<scalar_t>();
          for (int64_t k = 0; k < r.size(0); ++k) {
            const double b = static_cast<double>(p[5 * k]);
            if (!(b >= 0 && b < static_cast<double>(batch_size) &&
                  b == std::floor(b))) {
              fail(k, b);
            }
          }
        });
    return;
  }
  const at::Tensor b = rois.select(1, 0).to(at::kDouble);
  const at::Tensor ok = b.ge(0)
                            .logical_and_(b.lt(static_cast<double>(batch_size)))
                            .logical_and_(b.eq(b.floor()));
  if (!ok.all().item<bool>()) {
    const int64_t k = ok.logical_not().nonzero()[0][0].item<int64_t>();
    fail(k, b[k].item<double>());
  }
}

inline void check_rois_shape(const char* op, const at::Tensor& rois) {
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, op,
              ": rois must have shape [K, 5], got ", rois.sizes());
}

// The input shape a backward op is told to rebuild must be a real shape.
inline void check_input_shape(const char* op, int64_t batch_size,
                              int64_t channels, int64_t height, int64_t width) {
  TORCH_CHECK(batch_size >= 0 && channels >= 0 && height >= 0 && width >= 0, op,
              ": the input shape must be non-negative, got [", batch_size, ", ",
              channels, ", ", height, ", ", width, "]");
}

// grad [K, channels, out_h, out_w] with K = rois.size(0) and a dtype shared
// with rois; out_h / out_w < 0 accept any output size.
inline void check_grad(const char* op, const at::Tensor& grad,
                       const at::Tensor& rois, int64_t channels, int64_t out_h,
                       int64_t out_w) {
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == rois.size(0) &&
                  grad.size(1) == channels &&
                  (out_h < 0 || grad.size(2) == out_h) &&
                  (out_w < 0 || grad.size(3) == out_w),
              op, ": grad must be [K, C, out_h, out_w] = [", rois.size(0), ", ",
              channels, ", ", out_h, ", ", out_w, "], got ", grad.sizes());
  TORCH_CHECK(rois.scalar_type() == grad.scalar_type(), op,
              ": rois and grad must share a dtype, got ", rois.scalar_type(),
              " and ", grad.scalar_type());
}

inline void check_forward(const char* op, const at::Tensor& input,
                          const at::Tensor& rois, int64_t out_h,
                          int64_t out_w) {
  TORCH_CHECK(input.dim() == 4, op, ": input must be [N, C, H, W], got ",
              input.sizes());
  check_rois_shape(op, rois);
  TORCH_CHECK(out_h > 0 && out_w > 0, op,
              ": the output size must be positive, got ", out_h, "x", out_w);
  TORCH_CHECK(rois.scalar_type() == input.scalar_type(), op,
              ": rois and input must share a dtype, got ", rois.scalar_type(),
              " and ", input.scalar_type());
  // Always true on the CPU: the dispatcher sends mixed devices to CUDA.
  TORCH_CHECK(rois.device() == input.device(), op,
              ": rois and input must be on one device");
  check_batch_indices(op, rois, input.size(0));
}

inline void check_roi_align_forward(const at::Tensor& input,
                                    const at::Tensor& rois, int64_t pooled_h,
                                    int64_t pooled_w) {
  check_forward("roi_align", input, rois, pooled_h, pooled_w);
  TORCH_CHECK(input.size(2) > 0 && input.size(3) > 0,
              "roi_align: input must have a non-empty H x W, got ",
              input.sizes());
}

inline void check_roi_align_backward(const at::Tensor& grad,
                                     const at::Tensor& rois, int64_t pooled_h,
                                     int64_t pooled_w, int64_t batch_size,
                                     int64_t channels, int64_t height,
                                     int64_t width) {
  constexpr const char* op = "_roi_align_backward";
  check_rois_shape(op, rois);
  TORCH_CHECK(pooled_h > 0 && pooled_w > 0, op,
              ": the output size must be positive, got ", pooled_h, "x",
              pooled_w);
  check_grad(op, grad, rois, channels, pooled_h, pooled_w);
  check_input_shape(op, batch_size, channels, height, width);
  TORCH_CHECK(height > 0 && width > 0, op,
              ": the input must have a non-empty H x W");
  check_batch_indices(op, rois, batch_size);
}

inline void check_roi_pool_forward(const at::Tensor& input,
                                   const at::Tensor& rois, int64_t pooled_h,
                                   int64_t pooled_w) {
  check_forward("roi_pool", input, rois, pooled_h, pooled_w);
  TORCH_CHECK(
      input.size(2) * input.size(3) <= std::numeric_limits<int32_t>::max(),
      "roi_pool: H * W must be below 2^31 (argmax is int32)");
}

// Every argmax entry is -1 (nothing pooled) or a pixel offset in its plane of
// `plane` = H * W pixels: the backward adds the gradient there.
inline void check_argmax(const char* op, const at::Tensor& argmax,
                         int64_t plane) {
  if (argmax.numel() == 0) {
    return;
  }
  bool ok = true;
  if (argmax.is_cpu()) {
    const at::Tensor a = argmax.contiguous();
    const int32_t* p = a.const_data_ptr<int32_t>();
    for (int64_t i = 0; i < a.numel() && ok; ++i) {
      ok = p[i] >= -1 && p[i] < plane;
    }
  } else {
    ok = argmax.ge(-1).logical_and_(argmax.lt(plane)).all().item<bool>();
  }
  TORCH_CHECK(ok, op, ": argmax holds an offset outside [-1, H * W = ", plane,
              ")");
}

inline void check_roi_pool_backward(const at::Tensor& grad,
                                    const at::Tensor& rois,
                                    const at::Tensor& argmax,
                                    int64_t batch_size, int64_t channels,
                                    int64_t height, int64_t width) {
  constexpr const char* op = "_roi_pool_backward";
  check_rois_shape(op, rois);
  check_grad(op, grad, rois, channels, -1, -1);
  TORCH_CHECK(
      argmax.scalar_type() == at::kInt && argmax.sizes() == grad.sizes(), op,
      ": argmax must be int32 shaped like grad ", grad.sizes(), ", got ",
      argmax.scalar_type(), " ", argmax.sizes());
  check_input_shape(op, batch_size, channels, height, width);
  check_batch_indices(op, rois, batch_size);
  check_argmax(op, argmax, height * width);
}

inline void check_roi_crop_forward(const at::Tensor& input,
                                   const at::Tensor& rois, int64_t out_h,
                                   int64_t out_w) {
  check_forward("roi_crop", input, rois, out_h, out_w);
}

inline void check_roi_crop_backward(const at::Tensor& grad,
                                    const at::Tensor& rois, int64_t batch_size,
                                    int64_t channels, int64_t height,
                                    int64_t width) {
  constexpr const char* op = "_roi_crop_backward";
  check_rois_shape(op, rois);
  check_grad(op, grad, rois, channels, -1, -1);
  check_input_shape(op, batch_size, channels, height, width);
  check_batch_indices(op, rois, batch_size);
}

}  // namespace roi_checks
}  // namespace dets
