// TTFNet training targets on the GPU, in the two launches of
// cuda/heatmap_common.cuh:
//   1. ttf_box_kernel, one thread per box slot: validity, centre, radii and
//      the clipped window, and the normaliser A / sum(G), separable: the
//      product of two 1-D sums.
//   2. ttf_draw_kernel: draw_heat max-merges the Gaussians; each pixel's
//      boxes also compete for it by area (strict <, so among equal areas the
//      lower index wins), and the winner's box_target and reg_weight are
//      written at the end.
// The per-pixel walk makes the smallest-area rule an argmin in registers, so
// neither the 64-bit atomicMin on packed (area, index) keys nor atomic float
// max on the heatmap is needed.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <limits>

#include "cuda/heatmap_common.cuh"
#include "heatmap_checks.h"
#include "heatmap_targets.h"

namespace dets {
namespace {

using heatmap_cuda::kBoxThreads;
using heatmap_cuda::kTileH;
using heatmap_cuda::kTileW;

struct TtfParams {
  heatmap_cuda::WindowRecord win;
  float area, ax, ay, scale;  // G = exp(-(dx^2 ax + dy^2 ay)); w = G scale

  __device__ float gaussian(float dx, float dy) const {
    return expf(-(dx * dx * ax + dy * dy * ay));
  }
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
  const int64_t s = heatmap_cuda::box_slot(total);
  if (s < 0) {
    return;
  }
  const scalar_t* b = boxes + 4 * s;
  const int64_t label = labels[s];
  float area;
  const heatmap::TtfBox box = heatmap::ttf_box<float>(
      static_cast<float>(b[0]), static_cast<float>(b[1]),
      static_cast<float>(b[2]), static_cast<float>(b[3]), down_ratio, alpha,
      height, width, &area);
  TtfParams p{heatmap_cuda::kEmptyWindow, area, 0.f, 0.f, 0.f};
  const int64_t n = num_boxes[s / slots];
  if (box.valid && s % slots < n && heatmap::known_label(label, num_classes)) {
    p.win = heatmap_cuda::make_window(box.cx, box.cy, box.rw, box.rh, label,
                                      height, width);
    p.ax = heatmap_cuda::gaussian_coef(box.rw);
    p.ay = heatmap_cuda::gaussian_coef(box.rh);
    const heatmap_cuda::WindowRecord& w = p.win;
    if (w.x0 <= w.x1 && w.y0 <= w.y1) {
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
      const float norm = gaussian_sum(w.x0, w.x1, w.cx, p.ax) *
                         gaussian_sum(w.y0, w.y1, w.cy, p.ay);
      p.scale = weight / norm;
    }
  }
  params[s] = p;
}

// The pixel's box so far: the smallest area, the lower slot among equals.
struct SmallestArea {
  float area = std::numeric_limits<float>::infinity();
  float g = 0.f;
  int64_t slot = -1;

  __device__ void operator()(const TtfParams& p, int64_t s, float gs) {
    if (p.area < area) {
      area = p.area;
      g = gs;
      slot = s;
    }
  }
};

template <typename scalar_t>
__global__ void ttf_draw_kernel(const scalar_t* __restrict__ boxes,
                                const TtfParams* __restrict__ params,
                                int64_t slots, int64_t num_classes,
                                int64_t height, int64_t width,
                                scalar_t* __restrict__ heat,
                                scalar_t* __restrict__ target,
                                scalar_t* __restrict__ weight) {
  const int64_t b = blockIdx.z;
  const int64_t plane = height * width;
  const heatmap_cuda::Pixel px = heatmap_cuda::tile_pixel(height, width);
  const TtfParams* params_b = params + b * slots;
  SmallestArea best;
  heatmap_cuda::draw_heat(params_b, slots, num_classes, height, width, px,
                          heat + b * num_classes * plane, best);
  if (!px.inside) {
    return;
  }
  scalar_t* target_b = target + b * 4 * plane;
  if (best.slot >= 0) {
    const scalar_t* box = boxes + 4 * (b * slots + best.slot);
    for (int k = 0; k < 4; ++k) {
      target_b[k * plane + px.index] = box[k];
    }
    weight[b * plane + px.index] =
        static_cast<scalar_t>(best.g * params_b[best.slot].scale);
  } else {
    for (int k = 0; k < 4; ++k) {
      target_b[k * plane + px.index] = scalar_t(-1);
    }
    weight[b * plane + px.index] = scalar_t(0);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ttf_targets_cuda(
    const at::Tensor& boxes, const at::Tensor& labels,
    const at::Tensor& num_boxes, int64_t num_classes, int64_t out_h,
    int64_t out_w, double down_ratio, double alpha, int64_t area_process) {
  check_target_args("ttf_targets", boxes, labels, num_boxes, num_classes, out_h,
                    out_w, down_ratio);
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
  at::Tensor storage;
  TtfParams* pp = heatmap_cuda::params_buffer<TtfParams>(total, opts, storage);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, boxes.scalar_type(), "ttf_targets_cuda", [&] {
        if (total > 0) {
          ttf_box_kernel<scalar_t>
              <<<heatmap_cuda::box_blocks(total), kBoxThreads, 0, stream>>>(
                  b.data_ptr<scalar_t>(), l.data_ptr<int64_t>(),
                  nb.data_ptr<int64_t>(), total, slots, num_classes, out_h,
                  out_w, static_cast<float>(down_ratio),
                  static_cast<float>(alpha), area_process, pp);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
        ttf_draw_kernel<scalar_t>
            <<<heatmap_cuda::draw_grid(batch, out_h, out_w),
               dim3(kTileW, kTileH), 0, stream>>>(
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
