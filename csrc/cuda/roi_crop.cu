// RoICrop on CUDA.
//
// One thread per output element (RoI k, channel c, point p), p fastest: a warp
// writes consecutive outputs and its gathers hit one or two rows of a single
// channel plane. Positions, neighbours and weights come from csrc/roi_crop.h
// (the CPU kernel's code) in at::opmath_type. Backward scatters the same four
// weighted values with atomicAdd into an opmath-typed buffer (float32 for
// half/bfloat16, cast at the end; grad_input itself otherwise). Flat indices
// are int64 throughout.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "roi_crop.h"

namespace dets {
namespace {

constexpr int kThreads = 256;

int64_t num_blocks(int64_t total) {
  const int64_t wanted = (total + kThreads - 1) / kThreads;
  const int64_t cap =
      static_cast<int64_t>(
          at::cuda::getCurrentDeviceProperties()->multiProcessorCount) *
      32;
  return std::max<int64_t>(1, std::min(wanted, cap));
}

// Neighbour offsets in the (b, c) plane and their weights for point p of RoI
// k; false when the point has no neighbour in the map (or the RoI's batch
// index is invalid), in which case the point is 0.
template <typename T, typename acc_t>
__device__ __forceinline__ bool point_taps(const T* __restrict__ rois,
                                           int64_t k, int64_t p, acc_t scale,
                                           int64_t batch, int64_t height,
                                           int64_t width, int64_t out_h,
                                           int64_t out_w, int64_t* b,
                                           int64_t off[4], acc_t w[4]) {
  const T* roi = rois + k * 5;
  *b = roi_crop_batch(static_cast<acc_t>(roi[0]), batch);
  if (*b < 0) {
    return false;
  }
  const int64_t i = p / out_w, j = p % out_w;
  const acc_t x = roi_crop_point(static_cast<acc_t>(roi[1]) * scale,
                                 static_cast<acc_t>(roi[3]) * scale, j, out_w);
  const acc_t y = roi_crop_point(static_cast<acc_t>(roi[2]) * scale,
                                 static_cast<acc_t>(roi[4]) * scale, i, out_h);
  RoICropAxisTap<acc_t> tx, ty;
  if (!roi_crop_axis_tap(x, width, &tx) || !roi_crop_axis_tap(y, height, &ty)) {
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
__global__ void roi_crop_forward_kernel(const T* __restrict__ input,
                                        const T* __restrict__ rois,
                                        T* __restrict__ output, int64_t total,
                                        at::opmath_type<T> scale, int64_t batch,
                                        int64_t channels, int64_t height,
                                        int64_t width, int64_t out_h,
                                        int64_t out_w) {
  using acc_t = at::opmath_type<T>;
  const int64_t points = out_h * out_w;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t index =
           static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       index < total; index += stride) {
    const int64_t p = index % points;
    const int64_t c = (index / points) % channels;
    const int64_t k = index / (points * channels);
    int64_t b, off[4];
    acc_t w[4];
    acc_t value = 0;
    if (point_taps(rois, k, p, scale, batch, height, width, out_h, out_w, &b,
                   off, w)) {
      const T* plane = input + (b * channels + c) * height * width;
#pragma unroll
      for (int t = 0; t < 4; ++t) {
        value += w[t] * static_cast<acc_t>(plane[off[t]]);
      }
    }
    output[index] = static_cast<T>(value);
  }
}

template <typename T, typename acc_t>
__global__ void roi_crop_backward_kernel(const T* __restrict__ grad,
                                         const T* __restrict__ rois,
                                         acc_t* __restrict__ grad_input,
                                         int64_t total, acc_t scale,
                                         int64_t batch, int64_t channels,
                                         int64_t height, int64_t width,
                                         int64_t out_h, int64_t out_w) {
  const int64_t points = out_h * out_w;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t index =
           static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       index < total; index += stride) {
    const int64_t p = index % points;
    const int64_t c = (index / points) % channels;
    const int64_t k = index / (points * channels);
    int64_t b, off[4];
    acc_t w[4];
    if (!point_taps(rois, k, p, scale, batch, height, width, out_h, out_w, &b,
                    off, w)) {
      continue;
    }
    const acc_t g = static_cast<acc_t>(grad[index]);
    acc_t* plane = grad_input + (b * channels + c) * height * width;
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      // Neighbours outside the map (weight 0) cost no atomic.
      if (w[t] != acc_t(0)) {
        atomicAdd(plane + off[t], w[t] * g);
      }
    }
  }
}

void check_args(const at::Tensor& data, const at::Tensor& rois) {
  TORCH_CHECK(data.is_cuda() && rois.is_cuda(),
              "roi_crop: tensors must be CUDA tensors");
  TORCH_CHECK(data.get_device() == rois.get_device(),
              "roi_crop: tensors must be on one device");
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5,
              "roi_crop: rois must have shape [K, 5], got ", rois.sizes());
  TORCH_CHECK(rois.scalar_type() == data.scalar_type(),
              "roi_crop: rois and input/grad must share a dtype");
}

at::Tensor roi_crop_cuda(const at::Tensor& input, const at::Tensor& rois,
                         double spatial_scale, int64_t output_height,
                         int64_t output_width) {
  TORCH_CHECK(input.dim() == 4, "roi_crop: input must be [N, C, H, W], got ",
              input.sizes());
  TORCH_CHECK(output_height > 0 && output_width > 0,
              "roi_crop: output size must be positive");
  check_args(input, rois);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor output =
      at::empty({rois.size(0), input.size(1), output_height, output_width},
                input.options().memory_format(at::MemoryFormat::Contiguous));
  if (output.numel() == 0 || input.numel() == 0) {
    return output.zero_();
  }
  const at::Tensor in = input.contiguous();
  const at::Tensor r = rois.contiguous();
  const int64_t total = output.numel();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "roi_crop_cuda", [&] {
        roi_crop_forward_kernel<scalar_t>
            <<<num_blocks(total), kThreads, 0, stream>>>(
                in.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(),
                output.data_ptr<scalar_t>(), total,
                static_cast<at::opmath_type<scalar_t>>(spatial_scale),
                in.size(0), in.size(1), in.size(2), in.size(3), output_height,
                output_width);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return output;
}

at::Tensor roi_crop_backward_cuda(const at::Tensor& grad,
                                  const at::Tensor& rois, double spatial_scale,
                                  int64_t batch_size, int64_t channels,
                                  int64_t height, int64_t width) {
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == rois.size(0) &&
                  grad.size(1) == channels,
              "roi_crop backward: grad must be [K, C, oh, ow], got ",
              grad.sizes());
  check_args(grad, rois);
  const c10::cuda::CUDAGuard guard(grad.device());
  const at::ScalarType acc_type = at::toOpMathType(grad.scalar_type());
  at::Tensor buffer = at::zeros({batch_size, channels, height, width},
                                grad.options().dtype(acc_type));
  if (grad.numel() == 0 || buffer.numel() == 0) {
    return buffer.to(grad.scalar_type());
  }
  const at::Tensor g = grad.contiguous();
  const at::Tensor r = rois.contiguous();
  const int64_t total = g.numel();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_crop_backward_cuda",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        roi_crop_backward_kernel<scalar_t, acc_t>
            <<<num_blocks(total), kThreads, 0, stream>>>(
                g.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(),
                buffer.data_ptr<acc_t>(), total,
                static_cast<acc_t>(spatial_scale), batch_size, channels, height,
                width, g.size(2), g.size(3));
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
