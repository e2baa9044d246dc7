// TTFNet training targets on the GPU: two launches, no atomics, no host sync,
// deterministic.
//   1. ttf_box_kernel, one thread per box slot: validity, centre, radii and
//      the clipped window (heatmap_targets.h, the same code as the CPU), and
//      the normaliser A / sum(G), separable: the product of two 1-D sums.
//   2. ttf_draw_kernel, one 32 x 8 block per (image, pixel tile): each thread
//      owns one pixel. It zeroes the pixel in every class plane (the heatmap
//      is written once, coalesced along rows, instead of a separate memset),
//      then walks the image's boxes, staged in shared memory, in index order:
//      windows that miss the tile are skipped by the whole block (a uniform
//      branch), the rest max-merge their Gaussian into the pixel's class plane
//      and compete for the pixel by area (strict <, so among equal areas the
//      lower index wins). Finally it writes box_target and reg_weight.
// The per-pixel walk makes the smallest-area rule an argmin in registers, so
// neither the 64-bit atomicMin on packed (area, index) keys nor atomic float
// max on the heatmap is needed.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <limits>

#include "heatmap_checks.h"
#include "heatmap_targets.h"

namespace dets {
namespace {

constexpr int kTileW = 32;
constexpr int kTileH = 8;
constexpr int kStage = kTileW * kTileH;  // boxes staged per round
constexpr int kBoxThreads = 128;

struct TtfParams {
  int32_t x0, x1, y0, y1, cx, cy;  // window (empty: x0 > x1) and centre
  int32_t label;
  float area, ax, ay, scale;  // G = exp(-(dx^2 ax + dy^2 ay)); w = G scale
};

__device__ float gaussian_sum(int32_t lo, int32_t hi, int32_t c, float a) {
  float sum = 0.f;
  for (int32_t i = lo; i <= hi; ++i) {
    const float d = static_cast<float>(i - c);
    sum += expf(-(d * d) * a);
  }
  return sum;
}

template <typename scalar_t>
__global__ void ttf_box_kernel(
    const scalar_t* __restrict__ boxes, const int64_t* __restrict__ labels,
    const int64_t* __restrict__ num_boxes, int64_t total, int64_t slots,
    int64_t num_classes, int64_t height, int64_t width, float down_ratio,
    float alpha, int64_t area_process, TtfParams* __restrict__ params) {
  const int64_t s = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (s >= total) {
    return;
  }
  const scalar_t* b = boxes + 4 * s;
  const int64_t label = labels[s];
  float area;
  const heatmap::TtfBox box = heatmap::ttf_box<float>(
      static_cast<float>(b[0]), static_cast<float>(b[1]),
      static_cast<float>(b[2]), static_cast<float>(b[3]), down_ratio, alpha,
      height, width, &area);
  TtfParams p;
  p.x0 = 1;
  p.x1 = 0;
  p.y0 = 1;
  p.y1 = 0;
  p.cx = p.cy = 0;
  p.label = 0;
  p.area = area;
  p.ax = p.ay = p.scale = 0.f;
  const int64_t n = num_boxes[s / slots];
  if (box.valid && s % slots < n && label >= 0 && label < num_classes) {
    // The window lies inside the map, so int32 holds it; centres are within
    // +-2^30 (heatmap::kCenterLimit).
    p.x0 = static_cast<int32_t>(box.cx - box.rw > 0 ? box.cx - box.rw : 0);
    p.x1 = static_cast<int32_t>(box.cx + box.rw < width - 1 ? box.cx + box.rw
                                                            : width - 1);
    p.y0 = static_cast<int32_t>(box.cy - box.rh > 0 ? box.cy - box.rh : 0);
    p.y1 = static_cast<int32_t>(box.cy + box.rh < height - 1 ? box.cy + box.rh
                                                             : height - 1);
    p.cx = static_cast<int32_t>(box.cx);
    p.cy = static_cast<int32_t>(box.cy);
    p.label = static_cast<int32_t>(label);
    // exp(-d^2 / (2 sigma^2)) with sigma = (2r+1)/6: exp(-d^2 18 / (2r+1)^2).
    const float dw = static_cast<float>(2 * box.rw + 1);
    const float dh = static_cast<float>(2 * box.rh + 1);
    p.ax = 18.f / (dw * dw);
    p.ay = 18.f / (dh * dh);
    if (p.x0 <= p.x1 && p.y0 <= p.y1) {
      float weight;
      switch (area_process) {
        case 0:
          weight = logf(area);
          break;
        case 1:
          weight = sqrtf(area);
          break;
        case 2:
          weight = 1.f;
          break;
        default:
          weight = area;
      }
      const float norm = gaussian_sum(p.x0, p.x1, p.cx, p.ax) *
                         gaussian_sum(p.y0, p.y1, p.cy, p.ay);
      p.scale = weight / norm;
    }
  }
  params[s] = p;
}

template <typename scalar_t>
__global__ void ttf_draw_kernel(const scalar_t* __restrict__ boxes,
                                const TtfParams* __restrict__ params,
                                int64_t slots, int64_t num_classes,
                                int64_t height, int64_t width,
                                scalar_t* __restrict__ heat,
                                scalar_t* __restrict__ target,
                                scalar_t* __restrict__ weight) {
  __shared__ TtfParams stage[kStage];
  const int64_t b = blockIdx.z;
  const int32_t tx0 = blockIdx.x * kTileW, ty0 = blockIdx.y * kTileH;
  const int32_t x = tx0 + threadIdx.x, y = ty0 + threadIdx.y;
  const int tid = threadIdx.y * kTileW + threadIdx.x;
  const bool inside = x < width && y < height;
  const int64_t plane = height * width;
  const int64_t pix = static_cast<int64_t>(y) * width + x;
  scalar_t* heat_b = heat + b * num_classes * plane;
  if (inside) {
    for (int64_t c = 0; c < num_classes; ++c) {
      heat_b[c * plane + pix] = scalar_t(0);
    }
  }
  float best_area = std::numeric_limits<float>::infinity();
  float best_g = 0.f;
  int64_t best = -1;
  const TtfParams* params_b = params + b * slots;
  for (int64_t base = 0; base < slots; base += kStage) {
    const int64_t count = slots - base < kStage ? slots - base : kStage;
    __syncthreads();
    if (tid < count) {
      stage[tid] = params_b[base + tid];
    }
    __syncthreads();
    for (int64_t k = 0; k < count; ++k) {
      const TtfParams& p = stage[k];
      if (p.x0 > p.x1 || p.y0 > p.y1 || p.x1 < tx0 || p.x0 >= tx0 + kTileW ||
          p.y1 < ty0 || p.y0 >= ty0 + kTileH) {
        continue;  // uniform across the block
      }
      if (!inside || x < p.x0 || x > p.x1 || y < p.y0 || y > p.y1) {
        continue;
      }
      const float dx = static_cast<float>(x - p.cx);
      const float dy = static_cast<float>(y - p.cy);
      const float g = expf(-(dx * dx * p.ax + dy * dy * p.ay));
      scalar_t* h = heat_b + p.label * plane + pix;
      const scalar_t gv = static_cast<scalar_t>(g);
      if (gv > *h) {
        *h = gv;
      }
      if (p.area < best_area) {
        best_area = p.area;
        best_g = g;
        best = base + k;
      }
    }
  }
  if (!inside) {
    return;
  }
  scalar_t* target_b = target + b * 4 * plane;
  if (best >= 0) {
    const scalar_t* box = boxes + 4 * (b * slots + best);
    for (int k = 0; k < 4; ++k) {
      target_b[k * plane + pix] = box[k];
    }
    weight[b * plane + pix] =
        static_cast<scalar_t>(best_g * params_b[best].scale);
  } else {
    for (int k = 0; k < 4; ++k) {
      target_b[k * plane + pix] = scalar_t(-1);
    }
    weight[b * plane + pix] = scalar_t(0);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ttf_targets_cuda(
    const at::Tensor& boxes, const at::Tensor& labels,
    const at::Tensor& num_boxes, int64_t num_classes, int64_t out_h,
    int64_t out_w, double down_ratio, double alpha, int64_t area_process) {
  check_target_boxes("ttf_targets", boxes, labels, num_boxes);
  TORCH_CHECK(num_classes > 0 && out_h > 0 && out_w > 0 && down_ratio > 0,
              "ttf_targets: num_classes, output size and down_ratio must be "
              "positive");
  check_cuda_target_grid("ttf_targets", boxes, out_h, out_w, kTileH);
  c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t batch = boxes.size(0), slots = boxes.size(1);
  const auto opts = boxes.options();
  at::Tensor heat = at::empty({batch, num_classes, out_h, out_w}, opts);
  at::Tensor target = at::empty({batch, 4, out_h, out_w}, opts);
  at::Tensor weight = at::empty({batch, 1, out_h, out_w}, opts);
  if (batch == 0) {
    return {heat, target, weight};
  }
  const at::Tensor b = boxes.contiguous();
  const at::Tensor l = labels.contiguous();
  const at::Tensor nb = num_boxes.contiguous();
  const int64_t total = batch * slots;
  at::Tensor params = at::empty(
      {std::max<int64_t>(total, 1) * static_cast<int64_t>(sizeof(TtfParams))},
      opts.dtype(at::kByte));
  TtfParams* pp = reinterpret_cast<TtfParams*>(params.data_ptr<uint8_t>());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, boxes.scalar_type(), "ttf_targets_cuda", [&] {
        if (total > 0) {
          const int64_t blocks = (total + kBoxThreads - 1) / kBoxThreads;
          ttf_box_kernel<scalar_t><<<blocks, kBoxThreads, 0, stream>>>(
              b.data_ptr<scalar_t>(), l.data_ptr<int64_t>(),
              nb.data_ptr<int64_t>(), total, slots, num_classes, out_h, out_w,
              static_cast<float>(down_ratio), static_cast<float>(alpha),
              area_process, pp);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
        const dim3 grid((out_w + kTileW - 1) / kTileW,
                        (out_h + kTileH - 1) / kTileH, batch);
        ttf_draw_kernel<scalar_t><<<grid, dim3(kTileW, kTileH), 0, stream>>>(
            b.data_ptr<scalar_t>(), pp, slots, num_classes, out_h, out_w,
            heat.data_ptr<scalar_t>(), target.data_ptr<scalar_t>(),
            weight.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {heat, target, weight};
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CUDA, m) { m.impl("ttf_targets", ttf_targets_cuda); }

}  // namespace dets
