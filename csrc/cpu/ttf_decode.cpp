// TTFNet decoding on the CPU: fused peak test + top-k (heatmap_peaks.h), then
// the k boxes per image read `wh` through its strides (no copy of the maps).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "cpu/heatmap_peaks.h"

namespace dets {
namespace {

template <typename scalar_t>
void ttf_decode_cpu_impl(const at::Tensor& heat, const at::Tensor& wh,
                         int64_t k, double down_ratio, at::Tensor& boxes,
                         at::Tensor& scores, at::Tensor& labels) {
  const int64_t batch = heat.size(0), channels = heat.size(1);
  const int64_t height = heat.size(2), width = heat.size(3);
  const int64_t plane = height * width;
  const scalar_t* h = heat.data_ptr<scalar_t>();
  const std::vector<int64_t> index = heatmap_peaks::top_peaks(
      h, batch, channels, height, width, k);

  const scalar_t* m = wh.data_ptr<scalar_t>();
  const int64_t sb = wh.stride(0), sc = wh.stride(1);
  const int64_t sy = wh.stride(2), sx = wh.stride(3);
  scalar_t* out_box = boxes.data_ptr<scalar_t>();
  scalar_t* out_score = scores.data_ptr<scalar_t>();
  int64_t* out_label = labels.data_ptr<int64_t>();
  const scalar_t d = static_cast<scalar_t>(down_ratio);
  at::parallel_for(0, batch * k, 256, [&](int64_t begin, int64_t end) {
    for (int64_t slot = begin; slot < end; ++slot) {
      const int64_t b = slot / k;
      const int64_t i = index[slot];
      scalar_t* box = out_box + 4 * slot;
      if (i < 0) {
        box[0] = box[1] = box[2] = box[3] = scalar_t(0);
        out_score[slot] = scalar_t(0);
        out_label[slot] = -1;
        continue;
      }
      const int64_t pos = i % plane;
      const int64_t y = pos / width, x = pos % width;
      const scalar_t* at = m + b * sb + y * sy + x * sx;
      const scalar_t cx = static_cast<scalar_t>(x) * d;
      const scalar_t cy = static_cast<scalar_t>(y) * d;
      box[0] = cx - at[0];
      box[1] = cy - at[sc];
      box[2] = cx + at[2 * sc];
      box[3] = cy + at[3 * sc];
      out_score[slot] = h[b * channels * plane + i];
      out_label[slot] = i / plane;
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ttf_decode_cpu(
    const at::Tensor& heatmap, const at::Tensor& wh, int64_t k,
    double down_ratio) {
  TORCH_CHECK(heatmap.dim() == 4, "ttf_decode: heatmap must be [B, C, H, W]");
  TORCH_CHECK(wh.dim() == 4 && wh.size(0) == heatmap.size(0) &&
                  wh.size(1) == 4 && wh.size(2) == heatmap.size(2) &&
                  wh.size(3) == heatmap.size(3),
              "ttf_decode: wh must be [B, 4, H, W] matching heatmap, got ",
              wh.sizes());
  TORCH_CHECK(wh.scalar_type() == heatmap.scalar_type(),
              "ttf_decode: wh and heatmap must share a dtype");
  TORCH_CHECK(k > 0, "ttf_decode: k must be positive");
  const int64_t batch = heatmap.size(0);
  at::Tensor boxes = at::zeros({batch, k, 4}, heatmap.options());
  at::Tensor scores = at::zeros({batch, k}, heatmap.options());
  at::Tensor labels =
      at::full({batch, k}, -1, heatmap.options().dtype(at::kLong));
  if (heatmap.numel() == 0) return {boxes, scores, labels};
  AT_DISPATCH_FLOATING_TYPES(heatmap.scalar_type(), "ttf_decode_cpu", [&] {
    ttf_decode_cpu_impl<scalar_t>(heatmap.contiguous(), wh, k, down_ratio,
                                  boxes, scores, labels);
  });
  return {boxes, scores, labels};
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CPU, m) { m.impl("ttf_decode", ttf_decode_cpu); }

}  // namespace dets
