// Argument checks of the RoIAlign and RoIPool launchers, shared by the CPU and
// CUDA kernels so both reject the same inputs with the same messages.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <limits>

namespace dets {
namespace roi_checks {

inline void check_roi_align_rois(const at::Tensor& rois, int64_t pooled_h,
                                 int64_t pooled_w) {
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5,
              "roi_align: rois must have shape [K, 5], got ", rois.sizes());
  TORCH_CHECK(pooled_h > 0 && pooled_w > 0,
              "roi_align: the output size must be positive, got ", pooled_h,
              "x", pooled_w);
}

inline void check_roi_align_forward(const at::Tensor& input,
                                    const at::Tensor& rois, int64_t pooled_h,
                                    int64_t pooled_w) {
  TORCH_CHECK(input.dim() == 4, "roi_align: input must be [N, C, H, W], got ",
              input.sizes());
  check_roi_align_rois(rois, pooled_h, pooled_w);
  TORCH_CHECK(rois.scalar_type() == input.scalar_type(),
              "roi_align: rois and input must share a dtype");
  // Always true on the CPU: the dispatcher sends mixed devices to CUDA.
  TORCH_CHECK(rois.device() == input.device(),
              "roi_align: rois and input must be on one device");
  TORCH_CHECK(input.size(2) > 0 && input.size(3) > 0,
              "roi_align: input must have a non-empty H x W, got ",
              input.sizes());
}

inline void check_roi_align_backward(const at::Tensor& grad,
                                     const at::Tensor& rois, int64_t pooled_h,
                                     int64_t pooled_w, int64_t channels,
                                     int64_t height, int64_t width) {
  check_roi_align_rois(rois, pooled_h, pooled_w);
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == rois.size(0) &&
                  grad.size(1) == channels && grad.size(2) == pooled_h &&
                  grad.size(3) == pooled_w,
              "roi_align backward: grad must be [K, C, pooled_h, pooled_w], "
              "got ",
              grad.sizes());
  TORCH_CHECK(rois.scalar_type() == grad.scalar_type(),
              "roi_align backward: rois and grad must share a dtype");
  TORCH_CHECK(height > 0 && width > 0,
              "roi_align backward: the input must have a non-empty H x W");
}

inline void check_roi_pool_forward(const at::Tensor& input,
                                   const at::Tensor& rois, int64_t pooled_h,
                                   int64_t pooled_w) {
  TORCH_CHECK(input.dim() == 4, "roi_pool: input must be [N, C, H, W], got ",
              input.sizes());
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5,
              "roi_pool: rois must be [K, 5], got ", rois.sizes());
  TORCH_CHECK(rois.scalar_type() == input.scalar_type(),
              "roi_pool: rois and input must share a dtype");
  TORCH_CHECK(pooled_h > 0 && pooled_w > 0,
              "roi_pool: the output size must be positive, got ", pooled_h,
              " x ", pooled_w);
  TORCH_CHECK(
      input.size(2) * input.size(3) <= std::numeric_limits<int32_t>::max(),
      "roi_pool: H * W must be below 2^31 (argmax is int32)");
}

inline void check_roi_pool_backward(const at::Tensor& grad,
                                    const at::Tensor& rois,
                                    const at::Tensor& argmax,
                                    int64_t channels) {
  TORCH_CHECK(grad.dim() == 4 && grad.size(1) == channels,
              "_roi_pool_backward: grad must be [K, C, PH, PW], got ",
              grad.sizes());
  TORCH_CHECK(
      argmax.scalar_type() == at::kInt && argmax.sizes() == grad.sizes(),
      "_roi_pool_backward: argmax must be int32 shaped like grad");
  TORCH_CHECK(
      rois.dim() == 2 && rois.size(1) == 5 && rois.size(0) == grad.size(0),
      "_roi_pool_backward: rois must be [K, 5] matching grad");
  TORCH_CHECK(rois.scalar_type() == grad.scalar_type(),
              "_roi_pool_backward: rois and grad must share a dtype");
}

}  // namespace roi_checks
}  // namespace dets
