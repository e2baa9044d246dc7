// TTFNet decoding on the GPU: peaks and top-k (heatmap_peaks.cuh), then one
// thread per output slot reads the score and distances and writes the box.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

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
__global__ void ttf_boxes_kernel(const int64_t* __restrict__ keys,
                                 const scalar_t* __restrict__ heat,
                                 const scalar_t* __restrict__ wh, Strides st,
                                 int64_t total, int64_t k, int64_t per_image,
                                 int64_t plane, int64_t width, float down_ratio,
                                 scalar_t* __restrict__ boxes,
                                 scalar_t* __restrict__ scores,
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
  const scalar_t* at = wh + b * st.b + y * st.y + x * st.x;
  const acc_t d = static_cast<acc_t>(down_ratio);
  const acc_t cx = static_cast<acc_t>(x) * d;
  const acc_t cy = static_cast<acc_t>(y) * d;
  box[0] = static_cast<scalar_t>(cx - static_cast<acc_t>(at[0]));
  box[1] = static_cast<scalar_t>(cy - static_cast<acc_t>(at[st.c]));
  box[2] = static_cast<scalar_t>(cx + static_cast<acc_t>(at[2 * st.c]));
  box[3] = static_cast<scalar_t>(cy + static_cast<acc_t>(at[3 * st.c]));
  scores[slot] = heat[b * per_image + index];
  labels[slot] = index / plane;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ttf_decode_cuda(
    const at::Tensor& heatmap, const at::Tensor& wh, int64_t k,
    double down_ratio) {
  TORCH_CHECK(heatmap.dim() == 4, "ttf_decode: heatmap must be [B, C, H, W]");
  TORCH_CHECK(wh.dim() == 4 && wh.size(0) == heatmap.size(0) &&
                  wh.size(1) == 4 && wh.size(2) == heatmap.size(2) &&
                  wh.size(3) == heatmap.size(3),
              "ttf_decode: wh must be [B, 4, H, W] matching heatmap, got ",
              wh.sizes());
  TORCH_CHECK(wh.scalar_type() == heatmap.scalar_type() &&
                  wh.device() == heatmap.device(),
              "ttf_decode: wh and heatmap must share a dtype and device");
  TORCH_CHECK(k > 0, "ttf_decode: k must be positive");
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
  const Strides st{wh.stride(0), wh.stride(1), wh.stride(2), wh.stride(3)};
  constexpr int kThreads = 256;
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, heat.scalar_type(), "ttf_decode_cuda", [&] {
        ttf_boxes_kernel<scalar_t>
            <<<blocks, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
                keys.const_data_ptr<int64_t>(), heat.const_data_ptr<scalar_t>(),
                wh.const_data_ptr<scalar_t>(), st, total, k,
                heat.size(1) * plane, plane, heat.size(3),
                static_cast<float>(down_ratio), boxes.data_ptr<scalar_t>(),
                scores.data_ptr<scalar_t>(), labels.data_ptr<int64_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {boxes, scores, labels};
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CUDA, m) { m.impl("ttf_decode", ttf_decode_cuda); }

}  // namespace dets
