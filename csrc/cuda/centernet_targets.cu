// CenterNet (ctdet) training targets on the GPU: two launches, no atomics,
// no host sync, deterministic.
//   1. centernet_box_kernel, one thread per object slot (image, k <
//      max_objs): validity, clamped box, radius (float64, the corrected
//      quadratics) and centre (heatmap_targets.h, the same code as the CPU);
//      writes wh, offset, index and mask of the slot and the clipped window.
//   2. centernet_draw_kernel, one 32 x 8 block per (image, pixel tile): each
//      thread owns one pixel, zeroes it in every class plane (the heatmap is
//      written once, coalesced, with no separate memset), then walks the
//      image's slots staged in shared memory; windows missing the tile are
//      skipped by the whole block, the rest max-merge their Gaussian.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "heatmap_checks.h"
#include "heatmap_targets.h"

namespace dets {
namespace {

constexpr int kTileW = 32;
constexpr int kTileH = 8;
constexpr int kStage = kTileW * kTileH;
constexpr int kBoxThreads = 128;

struct CenternetParams {
  int32_t x0, x1, y0, y1, cx, cy;  // window (empty: x0 > x1) and centre
  int32_t label;
  float a;  // G = exp(-(dx^2 + dy^2) a)
};

template <typename scalar_t>
__global__ void centernet_box_kernel(
    const scalar_t* __restrict__ boxes, const int64_t* __restrict__ labels,
    const int64_t* __restrict__ num_boxes, int64_t total, int64_t slots,
    int64_t max_objs, int64_t num_classes, int64_t height, int64_t width,
    float down_ratio, double min_overlap, scalar_t* __restrict__ wh,
    scalar_t* __restrict__ offset, int64_t* __restrict__ index,
    scalar_t* __restrict__ mask, CenternetParams* __restrict__ params) {
  const int64_t s = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (s >= total) {
    return;
  }
  const int64_t b = s / max_objs, k = s % max_objs;
  const int64_t n = num_boxes[b] < slots ? num_boxes[b] : slots;
  CenternetParams p{1, 0, 1, 0, 0, 0, 0, 0.f};
  heatmap::CenternetBox<float> box{false, 0.f, 0.f, 0.f, 0.f, 0, 0, 0};
  int64_t label = -1;
  if (k < n) {
    const scalar_t* src = boxes + 4 * (b * slots + k);
    label = labels[b * slots + k];
    box = heatmap::centernet_box<float>(
        static_cast<float>(src[0]), static_cast<float>(src[1]),
        static_cast<float>(src[2]), static_cast<float>(src[3]), down_ratio,
        min_overlap, height, width);
  }
  if (box.valid && label >= 0 && label < num_classes) {
    const int64_t r = box.radius;
    p.x0 = static_cast<int32_t>(box.ix - r > 0 ? box.ix - r : 0);
    p.x1 =
        static_cast<int32_t>(box.ix + r < width - 1 ? box.ix + r : width - 1);
    p.y0 = static_cast<int32_t>(box.iy - r > 0 ? box.iy - r : 0);
    p.y1 =
        static_cast<int32_t>(box.iy + r < height - 1 ? box.iy + r : height - 1);
    p.cx = static_cast<int32_t>(box.ix);
    p.cy = static_cast<int32_t>(box.iy);
    p.label = static_cast<int32_t>(label);
    // exp(-d^2 / (2 sigma^2)) with sigma = (2r+1)/6: exp(-d^2 18 / (2r+1)^2).
    const float d = static_cast<float>(2 * r + 1);
    p.a = 18.f / (d * d);
    wh[2 * s] = static_cast<scalar_t>(box.w);
    wh[2 * s + 1] = static_cast<scalar_t>(box.h);
    offset[2 * s] = static_cast<scalar_t>(box.cx - static_cast<float>(box.ix));
    offset[2 * s + 1] =
        static_cast<scalar_t>(box.cy - static_cast<float>(box.iy));
    index[s] = box.iy * width + box.ix;
    mask[s] = scalar_t(1);
  } else {
    wh[2 * s] = wh[2 * s + 1] = scalar_t(0);
    offset[2 * s] = offset[2 * s + 1] = scalar_t(0);
    index[s] = 0;
    mask[s] = scalar_t(0);
  }
  params[s] = p;
}

template <typename scalar_t>
__global__ void centernet_draw_kernel(
    const CenternetParams* __restrict__ params, int64_t max_objs,
    int64_t num_classes, int64_t height, int64_t width,
    scalar_t* __restrict__ heat) {
  __shared__ CenternetParams stage[kStage];
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
  const CenternetParams* params_b = params + b * max_objs;
  for (int64_t base = 0; base < max_objs; base += kStage) {
    const int64_t count = max_objs - base < kStage ? max_objs - base : kStage;
    __syncthreads();
    if (tid < count) {
      stage[tid] = params_b[base + tid];
    }
    __syncthreads();
    for (int64_t k = 0; k < count; ++k) {
      const CenternetParams& p = stage[k];
      if (p.x0 > p.x1 || p.y0 > p.y1 || p.x1 < tx0 || p.x0 >= tx0 + kTileW ||
          p.y1 < ty0 || p.y0 >= ty0 + kTileH) {
        continue;  // uniform across the block
      }
      if (!inside || x < p.x0 || x > p.x1 || y < p.y0 || y > p.y1) {
        continue;
      }
      const float dx = static_cast<float>(x - p.cx);
      const float dy = static_cast<float>(y - p.cy);
      const scalar_t g =
          static_cast<scalar_t>(expf(-(dx * dx + dy * dy) * p.a));
      scalar_t* h = heat_b + p.label * plane + pix;
      if (g > *h) {
        *h = g;
      }
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
centernet_targets_cuda(const at::Tensor& boxes, const at::Tensor& labels,
                       const at::Tensor& num_boxes, int64_t num_classes,
                       int64_t out_h, int64_t out_w, double down_ratio,
                       double min_overlap, int64_t max_objs) {
  check_target_boxes("centernet_targets", boxes, labels, num_boxes);
  TORCH_CHECK(num_classes > 0 && out_h > 0 && out_w > 0 && down_ratio > 0 &&
                  max_objs > 0,
              "centernet_targets: num_classes, output size, down_ratio and "
              "max_objs must be positive");
  TORCH_CHECK(min_overlap > 0 && min_overlap < 1,
              "centernet_targets: min_overlap must lie in (0, 1)");
  check_cuda_target_grid("centernet_targets", boxes, out_h, out_w, kTileH);
  c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t batch = boxes.size(0), slots = boxes.size(1);
  const auto opts = boxes.options();
  at::Tensor heat = at::empty({batch, num_classes, out_h, out_w}, opts);
  at::Tensor wh = at::empty({batch, max_objs, 2}, opts);
  at::Tensor offset = at::empty({batch, max_objs, 2}, opts);
  at::Tensor index = at::empty({batch, max_objs}, opts.dtype(at::kLong));
  at::Tensor mask = at::empty({batch, max_objs}, opts);
  if (batch == 0) {
    return {heat, wh, offset, index, mask};
  }
  const at::Tensor b = boxes.contiguous();
  const at::Tensor l = labels.contiguous();
  const at::Tensor nb = num_boxes.contiguous();
  const int64_t total = batch * max_objs;
  at::Tensor params =
      at::empty({total * static_cast<int64_t>(sizeof(CenternetParams))},
                opts.dtype(at::kByte));
  auto* pp = reinterpret_cast<CenternetParams*>(params.data_ptr<uint8_t>());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, boxes.scalar_type(), "centernet_targets_cuda",
      [&] {
        const int64_t blocks = (total + kBoxThreads - 1) / kBoxThreads;
        centernet_box_kernel<scalar_t><<<blocks, kBoxThreads, 0, stream>>>(
            b.data_ptr<scalar_t>(), l.data_ptr<int64_t>(),
            nb.data_ptr<int64_t>(), total, slots, max_objs, num_classes, out_h,
            out_w, static_cast<float>(down_ratio), min_overlap,
            wh.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(),
            index.data_ptr<int64_t>(), mask.data_ptr<scalar_t>(), pp);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        const dim3 grid((out_w + kTileW - 1) / kTileW,
                        (out_h + kTileH - 1) / kTileH, batch);
        centernet_draw_kernel<scalar_t>
            <<<grid, dim3(kTileW, kTileH), 0, stream>>>(
                pp, max_objs, num_classes, out_h, out_w,
                heat.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {heat, wh, offset, index, mask};
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CUDA, m) {
  m.impl("centernet_targets", centernet_targets_cuda);
}

}  // namespace dets
