// RoICrop on CUDA.
//
// A block owns one RoI and a group of consecutive channels, i.e. one contiguous
// run of the output: thread t handles elements t, t + blockDim, ... of it, so
// warps write (and, in backward, read grad) fully coalesced, and the gathers
// of a warp hit one or two rows of a single channel plane. Within a block all
// index arithmetic is 32-bit (no 64-bit division per element); the block's base
// offsets and the final flat addresses are int64. Positions, neighbours and
// weights come from csrc/roi_crop.h (the CPU kernel's code) in
// at::opmath_type. Backward scatters the same four weighted values with
// atomicAdd into an opmath-typed buffer (float32 for half/bfloat16, cast at the
// end; grad_input itself for float32/float64).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "roi_checks.h"
#include "roi_crop.h"

namespace dets {
namespace {

constexpr int kThreads = 256;
// Output elements per block (channels x points); a few per thread.
constexpr int64_t kBlockElements = 1024;

struct Launch {
  int64_t channels_per_block, channel_blocks, blocks;
};

Launch launch_shape(int64_t num_rois, int64_t channels, int64_t points) {
  Launch l;
  l.channels_per_block =
      std::max<int64_t>(1, std::min(channels, kBlockElements / points));
  l.channel_blocks =
      (channels + l.channels_per_block - 1) / l.channels_per_block;
  l.blocks = num_rois * l.channel_blocks;
  TORCH_CHECK(l.blocks <= std::numeric_limits<int32_t>::max(),
              "roi_crop (CUDA): too many RoIs x channels for one launch");
  return l;
}

// RoI geometry read once per block.
template <typename acc_t>
struct RoI {
  int64_t batch;  // -1: skip the RoI (invalid batch index)
  acc_t x1, y1, x2, y2;
};

template <typename T, typename acc_t>
__device__ __forceinline__ RoI<acc_t> load_roi(const T* __restrict__ rois,
                                               int64_t k, acc_t scale,
                                               int64_t batch) {
  const T* roi = rois + k * 5;
  RoI<acc_t> r;
  r.batch = roi_crop_batch(static_cast<acc_t>(roi[0]), batch);
  r.x1 = static_cast<acc_t>(roi[1]) * scale;
  r.y1 = static_cast<acc_t>(roi[2]) * scale;
  r.x2 = static_cast<acc_t>(roi[3]) * scale;
  r.y2 = static_cast<acc_t>(roi[4]) * scale;
  return r;
}

// Neighbour offsets in a channel plane and their weights for point (i, j);
// false when the point has no neighbour in the map (the point is 0).
template <typename acc_t>
__device__ __forceinline__ bool point_taps(const RoI<acc_t>& r, int i, int j,
                                           int out_h, int out_w, int64_t height,
                                           int64_t width, int64_t off[4],
                                           acc_t w[4]) {
  RoICropAxisTap<acc_t> tx, ty;
  if (!roi_crop_axis_tap(roi_crop_point(r.x1, r.x2, j, out_w), width, &tx) ||
      !roi_crop_axis_tap(roi_crop_point(r.y1, r.y2, i, out_h), height, &ty)) {
    return false;
  }
  off[0] = ty.lo * width + tx.lo;
  off[1] = ty.lo * width + tx.hi;
  off[2] = ty.hi * width + tx.lo;
  off[3] = ty.hi * width + tx.hi;
  w[0] = ty.w_lo * tx.w_lo;
  w[1] = ty.w_lo * tx.w_hi;
  w[2] = ty.w_hi * tx.w_lo;
  w[3] = ty.w_hi * tx.w_hi;
  return true;
}

template <typename T>
__global__ void roi_crop_forward_kernel(
    const T* __restrict__ input, const T* __restrict__ rois,
    T* __restrict__ output, at::opmath_type<T> scale, int64_t batch,
    int64_t channels, int64_t height, int64_t width, int out_h, int out_w,
    int64_t channels_per_block, int64_t channel_blocks) {
  using acc_t = at::opmath_type<T>;
  const int64_t k = blockIdx.x / channel_blocks;
  const int64_t c0 = (blockIdx.x % channel_blocks) * channels_per_block;
  const int points = out_h * out_w;
  const int count = static_cast<int>(
      std::min<int64_t>(channels_per_block, channels - c0) * points);
  const RoI<acc_t> r = load_roi(rois, k, scale, batch);
  const int64_t plane = height * width;
  T* out = output + (k * channels + c0) * points;
  const T* in = input + (std::max<int64_t>(r.batch, 0) * channels + c0) * plane;
  for (int e = threadIdx.x; e < count; e += blockDim.x) {
    const int c = e / points;
    const int p = e - c * points;
    const int i = p / out_w;
    int64_t off[4];
    acc_t w[4];
    acc_t value = 0;
    if (r.batch >= 0 &&
        point_taps(r, i, p - i * out_w, out_h, out_w, height, width, off, w)) {
      const T* src = in + c * plane;
#pragma unroll
      for (int t = 0; t < 4; ++t) {
        value += w[t] * static_cast<acc_t>(src[off[t]]);
      }
    }
    out[e] = static_cast<T>(value);
  }
}

template <typename T, typename acc_t>
__global__ void roi_crop_backward_kernel(
    const T* __restrict__ grad, const T* __restrict__ rois,
    acc_t* __restrict__ grad_input, acc_t scale, int64_t batch,
    int64_t channels, int64_t height, int64_t width, int out_h, int out_w,
    int64_t channels_per_block, int64_t channel_blocks) {
  const int64_t k = blockIdx.x / channel_blocks;
  const int64_t c0 = (blockIdx.x % channel_blocks) * channels_per_block;
  const RoI<acc_t> r = load_roi(rois, k, scale, batch);
  if (r.batch < 0) {
    return;
  }
  const int points = out_h * out_w;
  const int count = static_cast<int>(
      std::min<int64_t>(channels_per_block, channels - c0) * points);
  const int64_t plane = height * width;
  const T* g = grad + (k * channels + c0) * points;
  acc_t* gin = grad_input + (r.batch * channels + c0) * plane;
  for (int e = threadIdx.x; e < count; e += blockDim.x) {
    const int c = e / points;
    const int p = e - c * points;
    const int i = p / out_w;
    int64_t off[4];
    acc_t w[4];
    if (!point_taps(r, i, p - i * out_w, out_h, out_w, height, width, off, w)) {
      continue;
    }
    const acc_t value = static_cast<acc_t>(g[e]);
    acc_t* dst = gin + c * plane;
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      // Neighbours outside the map (weight 0) cost no atomic.
      if (w[t] != acc_t(0)) {
        atomicAdd(dst + off[t], w[t] * value);
      }
    }
  }
}

// In-block indices are 32-bit: a block covers at most max(kBlockElements,
// points) elements, so only the number of points per RoI is limited.
void check_output_size(int64_t output_height, int64_t output_width) {
  TORCH_CHECK(
      output_height * output_width <= std::numeric_limits<int32_t>::max() / 2,
      "roi_crop (CUDA): output size ", output_height, "x", output_width,
      " is too large");
}

void check_devices(const at::Tensor& data, const at::Tensor& rois) {
  TORCH_CHECK(data.is_cuda() && rois.is_cuda(),
              "roi_crop: tensors must be CUDA tensors");
  TORCH_CHECK(data.get_device() == rois.get_device(),
              "roi_crop: tensors must be on one device");
}

at::Tensor roi_crop_cuda(const at::Tensor& input, const at::Tensor& rois,
                         double spatial_scale, int64_t output_height,
                         int64_t output_width) {
  check_devices(input, rois);
  roi_checks::check_roi_crop_forward(input, rois, output_height, output_width);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor output =
      at::empty({rois.size(0), input.size(1), output_height, output_width},
                input.options().memory_format(at::MemoryFormat::Contiguous));
  if (output.numel() == 0 || input.numel() == 0) {
    return output.zero_();
  }
  check_output_size(output_height, output_width);
  const at::Tensor in = input.contiguous();
  const at::Tensor r = rois.contiguous();
  const Launch l =
      launch_shape(r.size(0), in.size(1), output_height * output_width);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "roi_crop_cuda", [&] {
        roi_crop_forward_kernel<scalar_t><<<l.blocks, kThreads, 0, stream>>>(
            in.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(),
            output.data_ptr<scalar_t>(),
            static_cast<at::opmath_type<scalar_t>>(spatial_scale), in.size(0),
            in.size(1), in.size(2), in.size(3), static_cast<int>(output_height),
            static_cast<int>(output_width), l.channels_per_block,
            l.channel_blocks);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return output;
}

at::Tensor roi_crop_backward_cuda(const at::Tensor& grad,
                                  const at::Tensor& rois, double spatial_scale,
                                  int64_t batch_size, int64_t channels,
                                  int64_t height, int64_t width) {
  check_devices(grad, rois);
  roi_checks::check_roi_crop_backward(grad, rois, batch_size, channels, height,
                                      width);
  const c10::cuda::CUDAGuard guard(grad.device());
  const at::ScalarType acc_type = at::toOpMathType(grad.scalar_type());
  at::Tensor buffer = at::zeros({batch_size, channels, height, width},
                                grad.options().dtype(acc_type));
  if (grad.numel() == 0 || buffer.numel() == 0) {
    return buffer.to(grad.scalar_type());
  }
  check_output_size(grad.size(2), grad.size(3));
  const at::Tensor g = grad.contiguous();
  const at::Tensor r = rois.contiguous();
  const Launch l = launch_shape(r.size(0), channels, g.size(2) * g.size(3));
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_crop_backward_cuda",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        roi_crop_backward_kernel<scalar_t, acc_t>
            <<<l.blocks, kThreads, 0, stream>>>(
                g.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(),
                buffer.data_ptr<acc_t>(), static_cast<acc_t>(spatial_scale),
                batch_size, channels, height, width,
                static_cast<int>(g.size(2)), static_cast<int>(g.size(3)),
                l.channels_per_block, l.channel_blocks);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  // A no-op for float32/float64, whose buffer already has grad's dtype.
  return buffer.to(grad.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CUDA, m) {
  m.impl("roi_crop", roi_crop_cuda);
  m.impl("_roi_crop_backward", roi_crop_backward_cuda);
}

}  // namespace dets
