// CenterNet (ctdet) training targets on the GPU, in the two launches of
// cuda/heatmap_common.cuh:
//   1. centernet_box_kernel, one thread per object slot (image, k <
//      max_objs): validity, clamped box, radius (float64, the corrected
//      quadratics) and centre; writes wh, offset, index and mask of the slot
//      and the clipped window.
//   2. centernet_draw_kernel: draw_heat max-merges the Gaussians.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "cuda/heatmap_common.cuh"
#include "heatmap_checks.h"
#include "heatmap_targets.h"

namespace dets {
namespace {

using heatmap_cuda::kBoxThreads;
using heatmap_cuda::kTileH;
using heatmap_cuda::kTileW;

struct CenternetParams {
  heatmap_cuda::WindowRecord win;
  float a;  // G = exp(-(dx^2 + dy^2) a)

  __device__ float gaussian(float dx, float dy) const {
    return expf(-(dx * dx + dy * dy) * a);
  }
};

// CenterNet's pixels keep nothing but the heatmap.
struct HeatOnly {
  __device__ void operator()(const CenternetParams&, int64_t, float) const {}
};

template <typename scalar_t>
__global__ void centernet_box_kernel(
    const scalar_t* __restrict__ boxes, const int64_t* __restrict__ labels,
    const int64_t* __restrict__ num_boxes, int64_t total, int64_t slots,
    int64_t max_objs, int64_t num_classes, int64_t height, int64_t width,
    float down_ratio, double min_overlap, scalar_t* __restrict__ wh,
    scalar_t* __restrict__ offset, int64_t* __restrict__ index,
    scalar_t* __restrict__ mask, CenternetParams* __restrict__ params) {
  const int64_t s = heatmap_cuda::box_slot(total);
  if (s < 0) {
    return;
  }
  const int64_t b = s / max_objs, k = s % max_objs;
  const int64_t n = num_boxes[b] < slots ? num_boxes[b] : slots;
  CenternetParams p{heatmap_cuda::kEmptyWindow, 0.f};
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
  if (box.valid && heatmap::known_label(label, num_classes)) {
    p.win = heatmap_cuda::make_window(box.ix, box.iy, box.radius, box.radius,
                                      label, height, width);
    p.a = heatmap_cuda::gaussian_coef(box.radius);
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
  const int64_t b = blockIdx.z;
  HeatOnly visit;
  heatmap_cuda::draw_heat(params + b * max_objs, max_objs, num_classes, height,
                          width, heatmap_cuda::tile_pixel(height, width),
                          heat + b * num_classes * height * width, visit);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
centernet_targets_cuda(const at::Tensor& boxes, const at::Tensor& labels,
                       const at::Tensor& num_boxes, int64_t num_classes,
                       int64_t out_h, int64_t out_w, double down_ratio,
                       double min_overlap, int64_t max_objs) {
  check_target_args("centernet_targets", boxes, labels, num_boxes, num_classes,
                    out_h, out_w, down_ratio);
  check_centernet_args(max_objs, min_overlap);
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
  at::Tensor storage;
  CenternetParams* pp =
      heatmap_cuda::params_buffer<CenternetParams>(total, opts, storage);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, boxes.scalar_type(), "centernet_targets_cuda",
      [&] {
        centernet_box_kernel<scalar_t>
            <<<heatmap_cuda::box_blocks(total), kBoxThreads, 0, stream>>>(
                b.data_ptr<scalar_t>(), l.data_ptr<int64_t>(),
                nb.data_ptr<int64_t>(), total, slots, max_objs, num_classes,
                out_h, out_w, static_cast<float>(down_ratio), min_overlap,
                wh.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(),
                index.data_ptr<int64_t>(), mask.data_ptr<scalar_t>(), pp);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        centernet_draw_kernel<scalar_t>
            <<<heatmap_cuda::draw_grid(batch, out_h, out_w),
               dim3(kTileW, kTileH), 0, stream>>>(pp, max_objs, num_classes,
                                                  out_h, out_w,
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
