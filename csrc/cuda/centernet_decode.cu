// CenterNet decoding on the GPU: peaks and top-k (heatmap_peaks.cuh), then one
// thread per output slot reads the score, size and offset and writes the box.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "cuda/heatmap_peaks.cuh"
#include "heatmap_checks.h"

namespace dets {
namespace {

using heatmap_peaks_cuda::MapStrides;

// The box of a peak at (y, x): its size from `wh` [B, 2, H, W] around the
// point, moved by `offset` [B, 2, H, W] when given (nullptr otherwise), scaled
// back to the input.
template <typename scalar_t>
struct CenterNetBoxWriter {
  const scalar_t* __restrict__ wh;
  MapStrides wst;
  const scalar_t* __restrict__ offset;
  MapStrides ost;
  float down_ratio;

  __device__ void operator()(int64_t b, int64_t y, int64_t x,
                             scalar_t* box) const {
    using acc_t = at::opmath_type<scalar_t>;
    acc_t cx = static_cast<acc_t>(x);
    acc_t cy = static_cast<acc_t>(y);
    if (offset != nullptr) {
      const scalar_t* at = offset + b * ost.b + y * ost.y + x * ost.x;
      cx = cx + static_cast<acc_t>(at[0]);
      cy = cy + static_cast<acc_t>(at[ost.c]);
    }
    const scalar_t* at = wh + b * wst.b + y * wst.y + x * wst.x;
    const acc_t half_w = static_cast<acc_t>(at[0]) * acc_t(0.5);
    const acc_t half_h = static_cast<acc_t>(at[wst.c]) * acc_t(0.5);
    const acc_t d = static_cast<acc_t>(down_ratio);
    heatmap_peaks_cuda::store_box(box, (cx - half_w) * d, (cy - half_h) * d,
                                  (cx + half_w) * d, (cy + half_h) * d);
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> centernet_decode_cuda(
    const at::Tensor& heatmap, const at::Tensor& wh,
    const std::optional<at::Tensor>& offset, int64_t k, double down_ratio) {
  check_decode_args("centernet_decode", heatmap, k);
  check_decode_map("centernet_decode", "wh", wh, heatmap, 2, true);
  if (offset.has_value()) {
    check_decode_map("centernet_decode", "offset", *offset, heatmap, 2, true);
  }
  return heatmap_peaks_cuda::decode_peaks(
      heatmap, k,
      [&](const at::Tensor& heat, const at::Tensor& keys, at::Tensor& boxes,
          at::Tensor& scores, at::Tensor& labels) {
        AT_DISPATCH_FLOATING_TYPES_AND2(
            at::kHalf, at::kBFloat16, heat.scalar_type(),
            "centernet_decode_cuda", [&] {
              const CenterNetBoxWriter<scalar_t> write_box{
                  wh.const_data_ptr<scalar_t>(),
                  heatmap_peaks_cuda::map_strides(wh),
                  offset.has_value() ? offset->const_data_ptr<scalar_t>()
                                     : nullptr,
                  offset.has_value() ? heatmap_peaks_cuda::map_strides(*offset)
                                     : MapStrides{0, 0, 0, 0},
                  static_cast<float>(down_ratio)};
              heatmap_peaks_cuda::launch_decode_boxes<scalar_t>(
                  heat, keys, k, write_box, boxes, scores, labels);
            });
      });
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CUDA, m) {
  m.impl("centernet_decode", centernet_decode_cuda);
}

}  // namespace dets
