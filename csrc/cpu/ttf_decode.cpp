// TTFNet decoding on the CPU: fused peak test + top-k (heatmap_peaks.h), then
// the k boxes per image read `wh` through its strides (no copy of the maps).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "cpu/heatmap_peaks.h"
#include "heatmap_checks.h"

namespace dets {
namespace {

template <typename scalar_t>
void ttf_decode_cpu_impl(const at::Tensor& heat, const at::Tensor& wh,
                         int64_t k, double down_ratio, at::Tensor& boxes,
                         at::Tensor& scores, at::Tensor& labels) {
  const scalar_t* m = wh.data_ptr<scalar_t>();
  const int64_t sb = wh.stride(0), sc = wh.stride(1);
  const int64_t sy = wh.stride(2), sx = wh.stride(3);
  const scalar_t d = static_cast<scalar_t>(down_ratio);
  heatmap_peaks::decode_boxes<scalar_t>(
      heat, k, boxes, scores, labels,
      [&](int64_t b, int64_t y, int64_t x, scalar_t* box) {
        const scalar_t* at = m + b * sb + y * sy + x * sx;
        const scalar_t cx = static_cast<scalar_t>(x) * d;
        const scalar_t cy = static_cast<scalar_t>(y) * d;
        box[0] = cx - at[0];
        box[1] = cy - at[sc];
        box[2] = cx + at[2 * sc];
        box[3] = cy + at[3 * sc];
      });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ttf_decode_cpu(
    const at::Tensor& heatmap, const at::Tensor& wh, int64_t k,
    double down_ratio) {
  check_decode_args("ttf_decode", heatmap, k);
  check_decode_map("ttf_decode", "wh", wh, heatmap, 4, false);
  return heatmap_peaks::decode_peaks(
      heatmap, k,
      [&](const at::Tensor& heat, at::Tensor& boxes, at::Tensor& scores,
          at::Tensor& labels) {
        AT_DISPATCH_FLOATING_TYPES(heat.scalar_type(), "ttf_decode_cpu", [&] {
          ttf_decode_cpu_impl<scalar_t>(heat, wh, k, down_ratio, boxes, scores,
                                        labels);
        });
      });
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CPU, m) { m.impl("ttf_decode", ttf_decode_cpu); }

}  // namespace dets
