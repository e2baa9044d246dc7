// Argument checks shared by the CPU and CUDA launchers of the heatmap decoders
// and target builders, so that both devices reject the same inputs with the
// same words.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace dets {

// The heatmap [B, C, H, W] and k of decoder `op`.
inline void check_decode_args(const char* op, const at::Tensor& heatmap,
                              int64_t k) {
  TORCH_CHECK(heatmap.dim() == 4, op, ": heatmap must be [B, C, H, W]");
  TORCH_CHECK(k > 0, op, ": k must be positive");
}

// `map`, a per-pixel regression map read at the heatmap's peaks, must be
// [B, channels, H, W] like `heatmap` and share its dtype (and, with
// `same_device`, its device: only the CUDA launchers can be handed a map on
// another device).
inline void check_decode_map(const char* op, const char* name,
                             const at::Tensor& map, const at::Tensor& heatmap,
                             int64_t channels, bool same_device) {
  TORCH_CHECK(map.dim() == 4 && map.size(0) == heatmap.size(0) &&
                  map.size(1) == channels && map.size(2) == heatmap.size(2) &&
                  map.size(3) == heatmap.size(3),
              op, ": ", name, " must be [B, ", channels,
              ", H, W] matching heatmap, got ", map.sizes());
  TORCH_CHECK(map.scalar_type() == heatmap.scalar_type() &&
                  (!same_device || map.device() == heatmap.device()),
              op, ": ", name, " and heatmap must share a dtype",
              same_device ? " and device" : "");
}

// The ground truth a target builder (`op`) reads: boxes [B, M, 4], labels
// [B, M] and num_boxes [B], the last two int64.
inline void check_target_boxes(const char* op, const at::Tensor& boxes,
                               const at::Tensor& labels,
                               const at::Tensor& num_boxes) {
  TORCH_CHECK(boxes.dim() == 3 && boxes.size(2) == 4, op,
              ": boxes must be [B, M, 4], got ", boxes.sizes());
  TORCH_CHECK(labels.dim() == 2 && labels.size(0) == boxes.size(0) &&
                  labels.size(1) == boxes.size(1),
              op, ": labels must be [B, M], got ", labels.sizes());
  TORCH_CHECK(num_boxes.dim() == 1 && num_boxes.size(0) == boxes.size(0), op,
              ": num_boxes must be [B], got ", num_boxes.sizes());
  TORCH_CHECK(
      labels.scalar_type() == at::kLong && num_boxes.scalar_type() == at::kLong,
      op, ": labels and num_boxes must be int64");
}

// Everything the target builder `op` takes besides its own parameters.
inline void check_target_args(const char* op, const at::Tensor& boxes,
                              const at::Tensor& labels,
                              const at::Tensor& num_boxes, int64_t num_classes,
                              int64_t out_h, int64_t out_w, double down_ratio) {
  check_target_boxes(op, boxes, labels, num_boxes);
  TORCH_CHECK(num_classes > 0 && out_h > 0 && out_w > 0 && down_ratio > 0, op,
              ": num_classes, output size and down_ratio must be positive");
}

// centernet_targets' own parameters.
inline void check_centernet_args(int64_t max_objs, double min_overlap) {
  TORCH_CHECK(max_objs > 0, "centernet_targets: max_objs must be positive");
  TORCH_CHECK(min_overlap > 0 && min_overlap < 1,
              "centernet_targets: min_overlap must lie in (0, 1)");
}

// What the CUDA target kernels can run: no float64, and a grid of
// (out_w tiles, out_h / tile_h, B) blocks within CUDA's limits.
inline void check_cuda_target_grid(const char* op, const at::Tensor& boxes,
                                   int64_t out_h, int64_t out_w,
                                   int64_t tile_h) {
  TORCH_CHECK(boxes.scalar_type() != at::kDouble, op,
              ": CUDA takes float32, float16 or bfloat16 boxes");
  TORCH_CHECK(out_h <= int64_t{65535} * tile_h && out_w < (int64_t{1} << 30) &&
                  boxes.size(0) <= 65535,
              op, ": output size or batch too large for the grid");
}

// The pyramid fcos_targets is given: one entry per level in each list, sizes
// >= 0, strides > 0, radius >= 0. Returns the number of locations.
inline int64_t check_fcos_levels(at::IntArrayRef heights,
                                 at::IntArrayRef widths,
                                 at::IntArrayRef strides,
                                 at::ArrayRef<double> range_lo,
                                 at::ArrayRef<double> range_hi, double radius) {
  const size_t levels = heights.size();
  TORCH_CHECK(levels > 0 && widths.size() == levels &&
                  strides.size() == levels && range_lo.size() == levels &&
                  range_hi.size() == levels,
              "fcos_targets: heights, widths, strides, range_lo and range_hi "
              "must have one entry per level");
  int64_t total = 0;
  for (size_t k = 0; k < levels; ++k) {
    TORCH_CHECK(heights[k] >= 0 && widths[k] >= 0 && strides[k] > 0,
                "fcos_targets: level sizes must be >= 0 and strides > 0");
    total += heights[k] * widths[k];
  }
  TORCH_CHECK(radius >= 0, "fcos_targets: radius must be >= 0");
  return total;
}

}  // namespace dets
