// CenterNet decoding on the CPU: fused peak test + top-k (heatmap_peaks.h),
// then the k boxes per image read `wh` and `offset` through their strides.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "cpu/heatmap_peaks.h"
#include "heatmap_checks.h"

namespace dets {
namespace {

template <typename scalar_t>
void centernet_decode_cpu_impl(const at::Tensor& heat, const at::Tensor& wh,
                               const std::optional<at::Tensor>& offset,
                               int64_t k, double down_ratio, at::Tensor& boxes,
                               at::Tensor& scores, at::Tensor& labels) {
  const scalar_t* size = wh.data_ptr<scalar_t>();
  const int64_t wb = wh.stride(0), wc = wh.stride(1);
  const int64_t wy = wh.stride(2), wx = wh.stride(3);
  const bool has_offset = offset.has_value();
  const scalar_t* shift = has_offset ? offset->data_ptr<scalar_t>() : nullptr;
  const int64_t ob = has_offset ? offset->stride(0) : 0;
  const int64_t oc = has_offset ? offset->stride(1) : 0;
  const int64_t oy = has_offset ? offset->stride(2) : 0;
  const int64_t ox = has_offset ? offset->stride(3) : 0;
  const scalar_t d = static_cast<scalar_t>(down_ratio);
  heatmap_peaks::decode_boxes<scalar_t>(
      heat, k, boxes, scores, labels,
      [&](int64_t b, int64_t y, int64_t x, scalar_t* box) {
        scalar_t cx = static_cast<scalar_t>(x);
        scalar_t cy = static_cast<scalar_t>(y);
        if (has_offset) {
          const scalar_t* at = shift + b * ob + y * oy + x * ox;
          cx = cx + at[0];
          cy = cy + at[oc];
        }
        const scalar_t* at = size + b * wb + y * wy + x * wx;
        const scalar_t half_w = at[0] * scalar_t(0.5);
        const scalar_t half_h = at[wc] * scalar_t(0.5);
        box[0] = (cx - half_w) * d;
        box[1] = (cy - half_h) * d;
        box[2] = (cx + half_w) * d;
        box[3] = (cy + half_h) * d;
      });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> centernet_decode_cpu(
    const at::Tensor& heatmap, const at::Tensor& wh,
    const std::optional<at::Tensor>& offset, int64_t k, double down_ratio) {
  check_decode_args("centernet_decode", heatmap, k);
  check_decode_map("centernet_decode", "wh", wh, heatmap, 2, false);
  if (offset.has_value()) {
    check_decode_map("centernet_decode", "offset", *offset, heatmap, 2, false);
  }
  return heatmap_peaks::decode_peaks(
      heatmap, k,
      [&](const at::Tensor& heat, at::Tensor& boxes, at::Tensor& scores,
          at::Tensor& labels) {
        AT_DISPATCH_FLOATING_TYPES(
            heat.scalar_type(), "centernet_decode_cpu", [&] {
              centernet_decode_cpu_impl<scalar_t>(
                  heat, wh, offset, k, down_ratio, boxes, scores, labels);
            });
      });
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CPU, m) {
  m.impl("centernet_decode", centernet_decode_cpu);
}

}  // namespace dets
