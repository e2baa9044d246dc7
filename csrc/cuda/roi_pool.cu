// RoIPool on CUDA (semantics: dets/ops/roi_pool.py).
//
// Forward: one thread per output (k, c, ph, pw), pw fastest, so a warp writes
// output and argmax contiguously and reads neighbouring columns of one input
// plane (the feature map is small enough to stay in L2 across RoIs). Bin
// geometry runs in at::opmath_type (float, or double for double inputs).
//
// Backward: one thread per grad element scatters into its argmax pixel with
// atomicAdd, into a zeroed gradient of the opmath type (a float32 buffer for
// half and bfloat16, cast at the end). Summation order between overlapping
// RoIs follows the hardware, so the result is not bit-reproducible.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <ATen/cuda/Atomic.cuh>
#include <cfloat>

#include "roi_checks.h"

namespace dets {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 30;
// Scaled corners are clamped to +-2^40 so the integer bin arithmetic cannot
// overflow.
constexpr double kCoordLimit = 1099511627776.0;

__device__ __forceinline__ float round_away(float v) { return roundf(v); }
__device__ __forceinline__ double round_away(double v) { return round(v); }
__device__ __forceinline__ float floor_(float v) { return floorf(v); }
__device__ __forceinline__ double floor_(double v) { return floor(v); }
__device__ __forceinline__ float ceil_(float v) { return ceilf(v); }
__device__ __forceinline__ double ceil_(double v) { return ceil(v); }

// Rounded, clamped corner; *ok becomes false for NaN or infinity.
template <typename acc_t>
__device__ __forceinline__ int64_t corner(acc_t v, bool* ok) {
  if (!isfinite(v)) {
    *ok = false;
    return 0;
  }
  const acc_t limit = static_cast<acc_t>(kCoordLimit);
  const acc_t r = round_away(v);
  return static_cast<int64_t>(r < -limit ? -limit : (r > limit ? limit : r));
}

template <typename scalar_t>
__global__ void roi_pool_forward_kernel(
    const scalar_t* __restrict__ input, const scalar_t* __restrict__ rois,
    at::opmath_type<scalar_t> scale, int64_t total, int64_t channels,
    int64_t height, int64_t width, int64_t pooled_h, int64_t pooled_w,
    scalar_t* __restrict__ output, int32_t* __restrict__ argmax) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < total; i += stride) {
    const int64_t pw = i % pooled_w;
    const int64_t ph = (i / pooled_w) % pooled_h;
    const int64_t c = (i / (pooled_w * pooled_h)) % channels;
    const int64_t k = i / (pooled_w * pooled_h * channels);
    const scalar_t* roi = rois + k * 5;
    const int64_t batch = static_cast<int64_t>(static_cast<acc_t>(roi[0]));
    bool ok = true;
    const int64_t x1 = corner(static_cast<acc_t>(roi[1]) * scale, &ok);
    const int64_t y1 = corner(static_cast<acc_t>(roi[2]) * scale, &ok);
    const int64_t x2 = corner(static_cast<acc_t>(roi[3]) * scale, &ok);
    const int64_t y2 = corner(static_cast<acc_t>(roi[4]) * scale, &ok);
    // Legacy Caffe "+1" size, with malformed RoIs forced to 1 x 1.
    const int64_t roi_w = max(x2 - x1 + 1, int64_t{1});
    const int64_t roi_h = max(y2 - y1 + 1, int64_t{1});
    const acc_t bin_h =
        static_cast<acc_t>(roi_h) / static_cast<acc_t>(pooled_h);
    const acc_t bin_w =
        static_cast<acc_t>(roi_w) / static_cast<acc_t>(pooled_w);
    int64_t h0 = static_cast<int64_t>(floor_(static_cast<acc_t>(ph) * bin_h));
    int64_t h1 =
        static_cast<int64_t>(ceil_(static_cast<acc_t>(ph + 1) * bin_h));
    int64_t w0 = static_cast<int64_t>(floor_(static_cast<acc_t>(pw) * bin_w));
    int64_t w1 =
        static_cast<int64_t>(ceil_(static_cast<acc_t>(pw + 1) * bin_w));
    h0 = min(max(h0 + y1, int64_t{0}), height);
    h1 = min(max(h1 + y1, int64_t{0}), height);
    w0 = min(max(w0 + x1, int64_t{0}), width);
    w1 = min(max(w1 + x1, int64_t{0}), width);
    if (!ok || h1 <= h0 || w1 <= w0) {
      output[i] = static_cast<scalar_t>(0);
      if (argmax != nullptr) {
        argmax[i] = -1;
      }
      continue;
    }
    // Strict '>' from -FLT_MAX in row-major order: the first maximum wins and
    // NaN never does (torchvision's rule).
    acc_t best = static_cast<acc_t>(-FLT_MAX);
    int32_t where = -1;
    const scalar_t* plane = input + (batch * channels + c) * height * width;
    for (int64_t h = h0; h < h1; ++h) {
      for (int64_t w = w0; w < w1; ++w) {
        const acc_t v = static_cast<acc_t>(__ldg(plane + h * width + w));
        if (v > best) {
          best = v;
          where = static_cast<int32_t>(h * width + w);
        }
      }
    }
    output[i] = static_cast<scalar_t>(best);
    if (argmax != nullptr) {
      argmax[i] = where;
    }
  }
}

template <typename scalar_t>
__global__ void roi_pool_backward_kernel(
    const scalar_t* __restrict__ grad, const scalar_t* __restrict__ rois,
    const int32_t* __restrict__ argmax, int64_t total, int64_t channels,
    int64_t plane, int64_t pooled_h, int64_t pooled_w, int64_t gs0, int64_t gs1,
    int64_t gs2, int64_t gs3,
    at::opmath_type<scalar_t>* __restrict__ grad_input) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < total; i += stride) {
    const int32_t offset = argmax[i];
    if (offset < 0) {
      continue;
    }
    const int64_t pw = i % pooled_w;
    const int64_t ph = (i / pooled_w) % pooled_h;
    const int64_t c = (i / (pooled_w * pooled_h)) % channels;
    const int64_t k = i / (pooled_w * pooled_h * channels);
    const int64_t batch = static_cast<int64_t>(static_cast<acc_t>(rois[k * 5]));
    const acc_t g =
        static_cast<acc_t>(grad[k * gs0 + c * gs1 + ph * gs2 + pw * gs3]);
    gpuAtomicAdd(grad_input + (batch * channels + c) * plane + offset, g);
  }
}

int blocks_for(int64_t total) {
  return static_cast<int>(
      std::min((total + kThreads - 1) / kThreads, kMaxBlocks));
}

std::tuple<at::Tensor, at::Tensor> roi_pool_cuda(
    const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
    int64_t pooled_height, int64_t pooled_width, bool with_argmax) {
  TORCH_CHECK(input.is_cuda() && rois.is_cuda(),
              "roi_pool: input and rois must be CUDA tensors");
  roi_checks::check_roi_pool_forward(input, rois, pooled_height, pooled_width);
  const c10::cuda::CUDAGuard guard(input.device());
  const int64_t channels = input.size(1);
  at::Tensor output = at::empty(
      {rois.size(0), channels, pooled_height, pooled_width}, input.options());
  at::Tensor argmax =
      with_argmax ? at::empty_like(output, output.options().dtype(at::kInt))
                  : at::empty({0}, output.options().dtype(at::kInt));
  const int64_t total = output.numel();
  if (total == 0) {
    return {output, argmax};
  }
  const at::Tensor x = input.contiguous();
  const at::Tensor r = rois.contiguous();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "roi_pool_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        roi_pool_forward_kernel<scalar_t>
            <<<blocks_for(total), kThreads, 0, stream>>>(
                x.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(),
                static_cast<acc_t>(spatial_scale), total, channels,
                input.size(2), input.size(3), pooled_height, pooled_width,
                output.data_ptr<scalar_t>(),
                with_argmax ? argmax.data_ptr<int32_t>() : nullptr);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {output, argmax};
}

at::Tensor roi_pool_backward_cuda(const at::Tensor& grad,
                                  const at::Tensor& rois,
                                  const at::Tensor& argmax, int64_t batch_size,
                                  int64_t channels, int64_t height,
                                  int64_t width) {
  TORCH_CHECK(grad.is_cuda() && rois.is_cuda() && argmax.is_cuda(),
              "_roi_pool_backward: tensors must be on a CUDA device");
  roi_checks::check_roi_pool_backward(grad, rois, argmax, batch_size, channels,
                                      height, width);
  const c10::cuda::CUDAGuard guard(grad.device());
  const auto acc_type = at::toOpMathType(grad.scalar_type());
  at::Tensor buffer = at::zeros({batch_size, channels, height, width},
                                grad.options().dtype(acc_type));
  const int64_t total = grad.numel();
  if (total > 0 && buffer.numel() > 0) {
    const at::Tensor r = rois.contiguous();
    const at::Tensor a = argmax.contiguous();
    cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_pool_backward_cuda",
        [&] {
          using acc_t = at::opmath_type<scalar_t>;
          roi_pool_backward_kernel<scalar_t>
              <<<blocks_for(total), kThreads, 0, stream>>>(
                  grad.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(),
                  a.data_ptr<int32_t>(), total, channels, height * width,
                  grad.size(2), grad.size(3), grad.stride(0), grad.stride(1),
                  grad.stride(2), grad.stride(3), buffer.data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
  }
  return buffer.scalar_type() == grad.scalar_type()
             ? buffer
             : buffer.to(grad.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CUDA, m) {
  m.impl("roi_pool", roi_pool_cuda);
  m.impl("_roi_pool_backward", roi_pool_backward_cuda);
}

}  // namespace dets
