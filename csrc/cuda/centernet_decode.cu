// CenterNet decoding on the GPU: peaks and top-k (heatmap_peaks.cuh), then one
// thread per output slot reads the score, size and offset and writes the box.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "cuda/heatmap_peaks.cuh"

namespace dets {
namespace {

using heatmap_peaks_cuda::key_index;
using heatmap_peaks_cuda::kPadKey;

struct Strides {
  int64_t b, c, y, x;
};

template <typename scalar_t>
__global__ void centernet_boxes_kernel(
    const int64_t* __restrict__ keys, const scalar_t* __restrict__ heat,
    const scalar_t* __restrict__ wh, Strides wst,
    const scalar_t* __restrict__ offset, Strides ost, int64_t total, int64_t k,
    int64_t per_image, int64_t plane, int64_t width, float down_ratio,
    scalar_t* __restrict__ boxes, scalar_t* __restrict__ scores,
    int64_t* __restrict__ labels) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t slot = blockIdx.x * static_cast<int64_t>(blockDim.x) +
                       threadIdx.x;
  if (slot >= total) return;
  const int64_t key = keys[slot];
  scalar_t* box = boxes + 4 * slot;
  if (key == kPadKey) {
    box[0] = box[1] = box[2] = box[3] = scalar_t(0);
    scores[slot] = scalar_t(0);
    labels[slot] = -1;
    return;
  }
  const int64_t b = slot / k;
  const int64_t index = key_index(key);
  const int64_t pos = index % plane;
  const int64_t y = pos / width, x = pos % width;
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
  box[0] = static_cast<scalar_t>((cx - half_w) * d);
  box[1] = static_cast<scalar_t>((cy - half_h) * d);
  box[2] = static_cast<scalar_t>((cx + half_w) * d);
  box[3] = static_cast<scalar_t>((cy + half_h) * d);
  scores[slot] = heat[b * per_image + index];
  labels[slot] = index / plane;
}

void check_map(const char* name, const at::Tensor& map,
               const at::Tensor& heatmap) {
  TORCH_CHECK(map.dim() == 4 && map.size(0) == heatmap.size(0) &&
                  map.size(1) == 2 && map.size(2) == heatmap.size(2) &&
                  map.size(3) == heatmap.size(3),
              "centernet_decode: ", name,
              " must be [B, 2, H, W] matching heatmap, got ", map.sizes());
  TORCH_CHECK(map.scalar_type() == heatmap.scalar_type() &&
                  map.device() == heatmap.device(),
              "centernet_decode: ", name,
              " and heatmap must share a dtype and device");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> centernet_decode_cuda(
    const at::Tensor& heatmap, const at::Tensor& wh,
    const std::optional<at::Tensor>& offset, int64_t k, double down_ratio) {
  TORCH_CHECK(heatmap.dim() == 4,
              "centernet_decode: heatmap must be [B, C, H, W]");
  check_map("wh", wh, heatmap);
  if (offset.has_value()) check_map("offset", *offset, heatmap);
  TORCH_CHECK(k > 0, "centernet_decode: k must be positive");
  c10::cuda::CUDAGuard guard(heatmap.device());
  const int64_t batch = heatmap.size(0);
  if (heatmap.numel() == 0) {
    return {at::zeros({batch, k, 4}, heatmap.options()),
            at::zeros({batch, k}, heatmap.options()),
            at::full({batch, k}, -1, heatmap.options().dtype(at::kLong))};
  }
  // Every slot is written by the kernel (padding included).
  at::Tensor boxes = at::empty({batch, k, 4}, heatmap.options());
  at::Tensor scores = at::empty({batch, k}, heatmap.options());
  at::Tensor labels = at::empty({batch, k}, heatmap.options().dtype(at::kLong));
  const at::Tensor heat = heatmap.contiguous();
  const at::Tensor keys = heatmap_peaks_cuda::top_peak_keys(heat, k);
  const int64_t plane = heat.size(2) * heat.size(3);
  const int64_t total = batch * k;
  const Strides wst{wh.stride(0), wh.stride(1), wh.stride(2), wh.stride(3)};
  Strides ost{0, 0, 0, 0};
  if (offset.has_value()) {
    ost = {offset->stride(0), offset->stride(1), offset->stride(2),
           offset->stride(3)};
  }
  constexpr int kThreads = 256;
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, heat.scalar_type(), "centernet_decode_cuda",
      [&] {
        const scalar_t* shift =
            offset.has_value() ? offset->const_data_ptr<scalar_t>() : nullptr;
        centernet_boxes_kernel<scalar_t>
            <<<blocks, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
                keys.const_data_ptr<int64_t>(), heat.const_data_ptr<scalar_t>(),
                wh.const_data_ptr<scalar_t>(), wst, shift, ost, total, k,
                heat.size(1) * plane, plane, heat.size(3),
                static_cast<float>(down_ratio), boxes.data_ptr<scalar_t>(),
                scores.data_ptr<scalar_t>(), labels.data_ptr<int64_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {boxes, scores, labels};
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CUDA, m) {
  m.impl("centernet_decode", centernet_decode_cuda);
}

}  // namespace dets
