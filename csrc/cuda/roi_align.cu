// RoIAlign on CUDA, forward and backward.
//
// Mapping: one block per (RoI, 32 channels); lane = channel, warp = bin. The
// features are read as NHWC (an NCHW input is transposed once per call), so
// the 32 lanes of a warp read each bilinear tap as one contiguous 128-byte
// run, and the warps of a block sample neighbouring bins of the same RoI
// (L1 reuse). Results pass through shared memory so the [K, C, oh, ow] output
// is written (and the gradient read) in contiguous runs of bins.
//
// The backward adds into an NHWC buffer in the accumulation type (float for
// half types) with atomics, coalesced across the lanes, then casts once. The
// order of the atomic adds is not fixed, so the last bits of the gradient may
// vary from run to run.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "roi_align_common.h"
#include "roi_checks.h"

namespace dets {
namespace {

using roi_align_common::axis_tap;
using roi_align_common::AxisTap;
using roi_align_common::Geometry;
using roi_align_common::roi_geometry;
using roi_align_common::sample_coord;

constexpr int kLanes = 32;   // channels per block, one per lane
constexpr int kWarps = 8;    // bins sampled at once per block
constexpr int kChunk = 128;  // bins staged in shared memory per round

// Calls f(ty, tx) with the taps of every sample of bin (ph, pw) that lies
// inside the feature map, rows outer, in torchvision's order.
template <typename T, typename F>
__device__ __forceinline__ void for_each_sample(const Geometry<T>& g,
                                                int64_t ph, int64_t pw,
                                                int64_t height, int64_t width,
                                                F&& f) {
  for (int64_t iy = 0; iy < g.grid_h; ++iy) {
    AxisTap<T> ty;
    const T y = sample_coord(g.start_h, g.bin_h, ph, iy, g.grid_h);
    if (!axis_tap(y, height, ty)) continue;
    for (int64_t ix = 0; ix < g.grid_w; ++ix) {
      AxisTap<T> tx;
      const T x = sample_coord(g.start_w, g.bin_w, pw, ix, g.grid_w);
      if (!axis_tap(x, width, tx)) continue;
      f(ty, tx);
    }
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kLanes* kWarps)
    roi_align_forward_kernel(const scalar_t* __restrict__ feat,
                             const scalar_t* __restrict__ rois,
                             scalar_t* __restrict__ out, int64_t channels,
                             int64_t height, int64_t width, int64_t pooled_h,
                             int64_t pooled_w, int64_t sampling_ratio,
                             bool aligned, double spatial_scale) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t tile[kChunk][kLanes + 1];
  const int64_t k = blockIdx.x;
  const int lane = threadIdx.x % kLanes;
  const int warp = threadIdx.x / kLanes;
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * kLanes;
  const int64_t c = c0 + lane;
  const int64_t block_channels =
      min(static_cast<int64_t>(kLanes), channels - c0);
  const scalar_t* roi = rois + k * 5;
  const Geometry<acc_t> g = roi_geometry<acc_t>(
      roi, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned);
  const bool sampled = g.grid_h > 0 && g.grid_w > 0 && c < channels;
  const int64_t batch = static_cast<int64_t>(static_cast<acc_t>(roi[0]));
  const scalar_t* image = feat + batch * height * width * channels + c;
  const int64_t bins = pooled_h * pooled_w;
  scalar_t* out_k = out + k * channels * bins;

  for (int64_t b0 = 0; b0 < bins; b0 += kChunk) {
    const int64_t chunk = min(static_cast<int64_t>(kChunk), bins - b0);
    for (int64_t i = warp; i < chunk; i += kWarps) {
      acc_t sum = 0;
      if (sampled) {
        const int64_t ph = (b0 + i) / pooled_w;
        const int64_t pw = (b0 + i) % pooled_w;
        for_each_sample(
            g, ph, pw, height, width,
            [&](const AxisTap<acc_t>& ty, const AxisTap<acc_t>& tx) {
              const scalar_t* row_lo = image + ty.lo * width * channels;
              const scalar_t* row_hi = image + ty.hi * width * channels;
              const acc_t v1 = static_cast<acc_t>(row_lo[tx.lo * channels]);
              const acc_t v2 = static_cast<acc_t>(row_lo[tx.hi * channels]);
              const acc_t v3 = static_cast<acc_t>(row_hi[tx.lo * channels]);
              const acc_t v4 = static_cast<acc_t>(row_hi[tx.hi * channels]);
              sum += ty.w_lo * tx.w_lo * v1 + ty.w_lo * tx.w_hi * v2 +
                     ty.w_hi * tx.w_lo * v3 + ty.w_hi * tx.w_hi * v4;
            });
      }
      tile[i][lane] = sum / g.count;
    }
    __syncthreads();
    for (int64_t t = threadIdx.x; t < block_channels * chunk; t += blockDim.x) {
      const int64_t cc = t / chunk;
      const int64_t i = t % chunk;
      out_k[(c0 + cc) * bins + b0 + i] = static_cast<scalar_t>(tile[i][cc]);
    }
    __syncthreads();
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kLanes* kWarps)
    roi_align_backward_kernel(const scalar_t* __restrict__ grad,
                              const scalar_t* __restrict__ rois,
                              acc_t* __restrict__ grad_nhwc, int64_t channels,
                              int64_t height, int64_t width, int64_t pooled_h,
                              int64_t pooled_w, int64_t sampling_ratio,
                              bool aligned, double spatial_scale) {
  __shared__ acc_t tile[kChunk][kLanes + 1];
  const int64_t k = blockIdx.x;
  const int lane = threadIdx.x % kLanes;
  const int warp = threadIdx.x / kLanes;
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * kLanes;
  const int64_t c = c0 + lane;
  const int64_t block_channels =
      min(static_cast<int64_t>(kLanes), channels - c0);
  const scalar_t* roi = rois + k * 5;
  const Geometry<acc_t> g = roi_geometry<acc_t>(
      roi, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned);
  // Uniform across the block, so returning before the barriers is safe.
  if (g.grid_h <= 0 || g.grid_w <= 0) return;
  const int64_t batch = static_cast<int64_t>(static_cast<acc_t>(roi[0]));
  acc_t* image = grad_nhwc + batch * height * width * channels + c;
  const int64_t bins = pooled_h * pooled_w;
  const scalar_t* grad_k = grad + k * channels * bins;

  for (int64_t b0 = 0; b0 < bins; b0 += kChunk) {
    const int64_t chunk = min(static_cast<int64_t>(kChunk), bins - b0);
    for (int64_t t = threadIdx.x; t < block_channels * chunk; t += blockDim.x) {
      const int64_t cc = t / chunk;
      const int64_t i = t % chunk;
      tile[i][cc] = static_cast<acc_t>(grad_k[(c0 + cc) * bins + b0 + i]);
    }
    __syncthreads();
    for (int64_t i = warp; i < chunk && c < channels; i += kWarps) {
      const acc_t gv = tile[i][lane] / g.count;
      const int64_t ph = (b0 + i) / pooled_w;
      const int64_t pw = (b0 + i) % pooled_w;
      for_each_sample(
          g, ph, pw, height, width,
          [&](const AxisTap<acc_t>& ty, const AxisTap<acc_t>& tx) {
            acc_t* row_lo = image + ty.lo * width * channels;
            acc_t* row_hi = image + ty.hi * width * channels;
            atomicAdd(row_lo + tx.lo * channels, ty.w_lo * tx.w_lo * gv);
            atomicAdd(row_lo + tx.hi * channels, ty.w_lo * tx.w_hi * gv);
            atomicAdd(row_hi + tx.lo * channels, ty.w_hi * tx.w_lo * gv);
            atomicAdd(row_hi + tx.hi * channels, ty.w_hi * tx.w_hi * gv);
          });
    }
    __syncthreads();
  }
}

dim3 launch_grid(int64_t num_rois, int64_t channels) {
  const int64_t channel_blocks = (channels + kLanes - 1) / kLanes;
  TORCH_CHECK(num_rois <= std::numeric_limits<int32_t>::max(),
              "roi_align: at most 2^31 - 1 RoIs per call on CUDA, got ",
              num_rois);
  TORCH_CHECK(channel_blocks <= 65535,
              "roi_align: at most 65535 * 32 channels on CUDA, got ", channels);
  return dim3(static_cast<unsigned>(num_rois),
              static_cast<unsigned>(channel_blocks));
}

at::Tensor roi_align_cuda(const at::Tensor& input, const at::Tensor& rois,
                          double spatial_scale, int64_t pooled_h,
                          int64_t pooled_w, int64_t sampling_ratio,
                          bool aligned) {
  roi_checks::check_roi_align_forward(input, rois, pooled_h, pooled_w);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor out = at::empty({rois.size(0), input.size(1), pooled_h, pooled_w},
                             input.options());
  if (out.numel() == 0) return out;
  const at::Tensor feat = input.permute({0, 2, 3, 1}).contiguous();
  const at::Tensor r = rois.contiguous();
  const dim3 grid = launch_grid(rois.size(0), input.size(1));
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "roi_align_cuda", [&] {
        roi_align_forward_kernel<scalar_t>
            <<<grid, kLanes * kWarps, 0, stream>>>(
                feat.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(),
                out.data_ptr<scalar_t>(), input.size(1), input.size(2),
                input.size(3), pooled_h, pooled_w, sampling_ratio, aligned,
                spatial_scale);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return out;
}

at::Tensor roi_align_backward_cuda(const at::Tensor& grad,
                                   const at::Tensor& rois, double spatial_scale,
                                   int64_t pooled_h, int64_t pooled_w,
                                   int64_t batch_size, int64_t channels,
                                   int64_t height, int64_t width,
                                   int64_t sampling_ratio, bool aligned) {
  roi_checks::check_roi_align_backward(grad, rois, pooled_h, pooled_w,
                                       batch_size, channels, height, width);
  const c10::cuda::CUDAGuard guard(grad.device());
  const at::ScalarType acc_type = at::toOpMathType(grad.scalar_type());
  at::Tensor acc = at::zeros({batch_size, height, width, channels},
                             grad.options().dtype(acc_type));
  if (grad.numel() > 0 && acc.numel() > 0) {
    const at::Tensor g = grad.contiguous();
    const at::Tensor r = rois.contiguous();
    const dim3 grid = launch_grid(rois.size(0), channels);
    cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_align_backward_cuda",
        [&] {
          using acc_t = at::opmath_type<scalar_t>;
          roi_align_backward_kernel<scalar_t, acc_t>
              <<<grid, kLanes * kWarps, 0, stream>>>(
                  g.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(),
                  acc.data_ptr<acc_t>(), channels, height, width, pooled_h,
                  pooled_w, sampling_ratio, aligned, spatial_scale);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
  }
  at::Tensor out =
      at::empty({batch_size, channels, height, width}, grad.options());
  return out.copy_(acc.permute({0, 3, 1, 2}));
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CUDA, m) {
  m.impl("roi_align", roi_align_cuda);
  m.impl("_roi_align_backward", roi_align_backward_cuda);
}

}  // namespace dets
