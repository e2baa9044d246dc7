// TTFNet decoding on the GPU: peaks and top-k (heatmap_peaks.cuh), then one
// thread per output slot reads the score and distances and writes the box.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <tuple>

#include "cuda/heatmap_peaks.cuh"
#include "heatmap_checks.h"

namespace dets {
namespace {

using heatmap_peaks_cuda::MapStrides;

// The box of a peak at (y, x): its distances to the four sides, read from
// `wh` [B, 4, H, W], around the point scaled back to the input.
template <typename scalar_t>
struct TtfBoxWriter {
  const scalar_t* __restrict__ wh;
  MapStrides st;
  float down_ratio;

  __device__ void operator()(int64_t b, int64_t y, int64_t x,
                             scalar_t* box) const {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* at = wh + b * st.b + y * st.y + x * st.x;
    const acc_t d = static_cast<acc_t>(down_ratio);
    const acc_t cx = static_cast<acc_t>(x) * d;
    const acc_t cy = static_cast<acc_t>(y) * d;
    heatmap_peaks_cuda::store_box(box, cx - static_cast<acc_t>(at[0]),
                                  cy - static_cast<acc_t>(at[st.c]),
                                  cx + static_cast<acc_t>(at[2 * st.c]),
                                  cy + static_cast<acc_t>(at[3 * st.c]));
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> ttf_decode_cuda(
    const at::Tensor& heatmap, const at::Tensor& wh, int64_t k,
    double down_ratio) {
  check_decode_args("ttf_decode", heatmap, k);
  check_decode_map("ttf_decode", "wh", wh, heatmap, 4, true);
  return heatmap_peaks_cuda::decode_peaks(
      heatmap, k,
      [&](const at::Tensor& heat, const at::Tensor& keys, at::Tensor& boxes,
          at::Tensor& scores, at::Tensor& labels) {
        AT_DISPATCH_FLOATING_TYPES_AND2(
            at::kHalf, at::kBFloat16, heat.scalar_type(), "ttf_decode_cuda",
            [&] {
              const TtfBoxWriter<scalar_t> write_box{
                  wh.const_data_ptr<scalar_t>(),
                  heatmap_peaks_cuda::map_strides(wh),
                  static_cast<float>(down_ratio)};
              heatmap_peaks_cuda::launch_decode_boxes<scalar_t>(
                  heat, keys, k, write_box, boxes, scores, labels);
            });
      });
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CUDA, m) { m.impl("ttf_decode", ttf_decode_cuda); }

}  // namespace dets
