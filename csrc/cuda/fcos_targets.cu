// FCOS training targets on the GPU: one thread per location, one grid row
// (blockIdx.y) per image, the image's boxes staged in shared memory in rounds
// and walked in index order by every thread (fcos_targets.h, the same code as
// the CPU). No atomics, no host sync, deterministic.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "fcos_targets.h"
#include "heatmap_checks.h"

namespace dets {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxLevels = 16;

struct Levels {
  int64_t start[kMaxLevels + 1];
  int64_t width[kMaxLevels];
  int64_t stride[kMaxLevels];
  float lo[kMaxLevels], hi[kMaxLevels], half[kMaxLevels];
  int count;
};

template <typename scalar_t>
__global__ void fcos_targets_kernel(
    const scalar_t* __restrict__ boxes, const int64_t* __restrict__ labels,
    const int64_t* __restrict__ num_boxes, int64_t slots, int64_t total,
    const Levels levels, int64_t* __restrict__ out_labels,
    scalar_t* __restrict__ reg, scalar_t* __restrict__ ctr) {
  __shared__ float stage[kThreads * 4];
  const int64_t b = blockIdx.y;
  const int64_t loc = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x;
  int k = 0;
  while (k + 1 < levels.count && loc >= levels.start[k + 1]) {
    ++k;
  }
  const int64_t pos = loc - levels.start[k];
  const int64_t s = levels.stride[k];
  const float x = static_cast<float>(s / 2 + (pos % levels.width[k]) * s);
  const float y = static_cast<float>(s / 2 + (pos / levels.width[k]) * s);
  int64_t n = num_boxes[b];
  n = n < 0 ? 0 : (n > slots ? slots : n);
  const scalar_t* bi = boxes + b * slots * 4;
  fcos::Assignment<float> best{-1, 0.f, 0.f, 0.f, 0.f};
  float best_area = 0.f;
  for (int64_t base = 0; base < n; base += kThreads) {
    const int64_t count = n - base < kThreads ? n - base : kThreads;
    __syncthreads();
    if (threadIdx.x < count) {
      for (int c = 0; c < 4; ++c) {
        stage[threadIdx.x * 4 + c] =
            static_cast<float>(bi[(base + threadIdx.x) * 4 + c]);
      }
    }
    __syncthreads();
    if (loc >= total) {
      continue;
    }
    const fcos::Assignment<float> a = fcos::assign<float>(
        x, y, levels.half[k], levels.lo[k], levels.hi[k], count,
        [&](int64_t j, float& x1, float& y1, float& x2, float& y2) {
          x1 = stage[j * 4];
          y1 = stage[j * 4 + 1];
          x2 = stage[j * 4 + 2];
          y2 = stage[j * 4 + 3];
        });
    if (a.box >= 0) {
      const float* q = stage + a.box * 4;
      const float area = (q[2] - q[0] + 1.f) * (q[3] - q[1] + 1.f);
      // Strict <: a later round only wins with a smaller area.
      if (best.box < 0 || area < best_area) {
        best = a;
        best.box += base;
        best_area = area;
      }
    }
  }
  if (loc >= total) {
    return;
  }
  const int64_t o = b * total + loc;
  scalar_t* r = reg + o * 4;
  if (best.box >= 0) {
    out_labels[o] = labels[b * slots + best.box];
    r[0] = static_cast<scalar_t>(best.l);
    r[1] = static_cast<scalar_t>(best.t);
    r[2] = static_cast<scalar_t>(best.r);
    r[3] = static_cast<scalar_t>(best.b);
    ctr[o] = static_cast<scalar_t>(
        fcos::centerness<float>(best.l, best.t, best.r, best.b));
  } else {
    out_labels[o] = -1;
    for (int c = 0; c < 4; ++c) {
      r[c] = scalar_t(0);
    }
    ctr[o] = scalar_t(0);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fcos_targets_cuda(
    const at::Tensor& boxes, const at::Tensor& labels,
    const at::Tensor& num_boxes, at::IntArrayRef heights,
    at::IntArrayRef widths, at::IntArrayRef strides,
    at::ArrayRef<double> range_lo, at::ArrayRef<double> range_hi,
    double radius) {
  check_target_boxes("fcos_targets", boxes, labels, num_boxes);
  const int64_t total =
      check_fcos_levels(heights, widths, strides, range_lo, range_hi, radius);
  const size_t count = heights.size();
  TORCH_CHECK(count <= kMaxLevels, "fcos_targets: at most ", kMaxLevels,
              " levels on CUDA");
  TORCH_CHECK(boxes.scalar_type() != at::kDouble,
              "fcos_targets: CUDA takes float32, float16 or bfloat16 boxes");
  Levels levels;
  levels.count = static_cast<int>(count);
  levels.start[0] = 0;
  for (size_t k = 0; k < count; ++k) {
    levels.start[k + 1] = levels.start[k] + heights[k] * widths[k];
    levels.width[k] = widths[k] > 0 ? widths[k] : 1;
    levels.stride[k] = strides[k];
    levels.lo[k] = static_cast<float>(range_lo[k]);
    levels.hi[k] = static_cast<float>(range_hi[k]);
    levels.half[k] =
        static_cast<float>(radius * static_cast<double>(strides[k]));
  }
  c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t batch = boxes.size(0), slots = boxes.size(1);
  at::Tensor out_labels = at::empty({batch, total}, labels.options());
  at::Tensor reg = at::empty({batch, total, 4}, boxes.options());
  at::Tensor ctr = at::empty({batch, total}, boxes.options());
  if (batch == 0 || total == 0) {
    return {out_labels, reg, ctr};
  }
  TORCH_CHECK(batch <= 65535, "fcos_targets: batch too large for the grid");
  const at::Tensor b = boxes.contiguous();
  const at::Tensor l = labels.contiguous();
  const at::Tensor nb = num_boxes.contiguous();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const dim3 grid((total + kThreads - 1) / kThreads, batch);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, boxes.scalar_type(), "fcos_targets_cuda", [&] {
        fcos_targets_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
            b.data_ptr<scalar_t>(), l.data_ptr<int64_t>(),
            nb.data_ptr<int64_t>(), slots, total, levels,
            out_labels.data_ptr<int64_t>(), reg.data_ptr<scalar_t>(),
            ctr.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {out_labels, reg, ctr};
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CUDA, m) { m.impl("fcos_targets", fcos_targets_cuda); }

}  // namespace dets
