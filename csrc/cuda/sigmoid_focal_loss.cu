// Sigmoid focal loss on the GPU: one grid-stride pass forward (the elementwise
// loss, or one partial sum per block reduced in shared memory and added up by
// at::sum over the few partials: deterministic, no atomics) and one pass
// backward. Math in at::opmath_type (float for half and bfloat16).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "sigmoid_focal_loss_common.h"

namespace dets {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

template <typename scalar_t>
__global__ void focal_forward_kernel(
    const scalar_t* __restrict__ x, const scalar_t* __restrict__ t, int64_t n,
    at::opmath_type<scalar_t> alpha, at::opmath_type<scalar_t> gamma,
    bool reduce, scalar_t* __restrict__ out,
    at::opmath_type<scalar_t>* __restrict__ partial) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t sums[kThreads];
  acc_t acc = acc_t(0);
  const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x;
       i < n; i += step) {
    const acc_t v = focal::loss<acc_t>(static_cast<acc_t>(x[i]),
                                       static_cast<acc_t>(t[i]), alpha, gamma);
    if (reduce) {
      acc += v;
    } else {
      out[i] = static_cast<scalar_t>(v);
    }
  }
  if (!reduce) {
    return;
  }
  sums[threadIdx.x] = acc;
  __syncthreads();
  for (int width = kThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) {
      sums[threadIdx.x] += sums[threadIdx.x + width];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    partial[blockIdx.x] = sums[0];
  }
}

template <typename scalar_t>
__global__ void focal_backward_kernel(
    const scalar_t* __restrict__ grad, const scalar_t* __restrict__ x,
    const scalar_t* __restrict__ t, int64_t n, at::opmath_type<scalar_t> alpha,
    at::opmath_type<scalar_t> gamma, bool elementwise,
    at::opmath_type<scalar_t> scale, scalar_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads;
  const acc_t g0 = elementwise ? acc_t(0) : static_cast<acc_t>(grad[0]) * scale;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x;
       i < n; i += step) {
    const acc_t d = focal::grad<acc_t>(static_cast<acc_t>(x[i]),
                                       static_cast<acc_t>(t[i]), alpha, gamma);
    const acc_t g = elementwise ? static_cast<acc_t>(grad[i]) : g0;
    out[i] = static_cast<scalar_t>(g * d);
  }
}

int64_t blocks_for(int64_t n) {
  return std::max<int64_t>(1,
                           std::min(kMaxBlocks, (n + kThreads - 1) / kThreads));
}

at::Tensor sigmoid_focal_loss_cuda(const at::Tensor& logits,
                                   const at::Tensor& targets, double alpha,
                                   double gamma, int64_t reduction) {
  focal::check_args(logits, targets, reduction);
  c10::cuda::CUDAGuard guard(logits.device());
  const at::Tensor x = logits.contiguous();
  const at::Tensor t = targets.contiguous();
  const int64_t n = x.numel();
  const int64_t blocks = blocks_for(n);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "sigmoid_focal_loss_cuda",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        if (reduction == 0) {
          out = at::empty_like(x);
          if (n > 0) {
            focal_forward_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
                x.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(), n,
                static_cast<acc_t>(alpha), static_cast<acc_t>(gamma), false,
                out.data_ptr<scalar_t>(), nullptr);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          }
          return;
        }
        at::Tensor partial = at::zeros(
            {blocks},
            x.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
        if (n > 0) {
          focal_forward_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
              x.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(), n,
              static_cast<acc_t>(alpha), static_cast<acc_t>(gamma), true,
              nullptr, partial.data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
        at::Tensor total = partial.sum();
        if (reduction == 2) {
          total = total / static_cast<double>(n);
        }
        out = total.to(x.scalar_type());
      });
  return out;
}

at::Tensor sigmoid_focal_loss_backward_cuda(const at::Tensor& grad,
                                            const at::Tensor& logits,
                                            const at::Tensor& targets,
                                            double alpha, double gamma,
                                            int64_t reduction) {
  focal::check_args(logits, targets, reduction);
  focal::check_grad(grad, logits, reduction);
  c10::cuda::CUDAGuard guard(logits.device());
  const at::Tensor x = logits.contiguous();
  const at::Tensor t = targets.contiguous();
  const at::Tensor go = grad.to(x.scalar_type()).contiguous();
  const int64_t n = x.numel();
  at::Tensor out = at::empty_like(x);
  if (n == 0) {
    return out;
  }
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(),
      "sigmoid_focal_loss_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const acc_t scale =
            reduction == 2 ? acc_t(1) / static_cast<acc_t>(n) : acc_t(1);
        focal_backward_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
            go.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
            t.data_ptr<scalar_t>(), n, static_cast<acc_t>(alpha),
            static_cast<acc_t>(gamma), reduction == 0, scale,
            out.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CUDA, m) {
  m.impl("sigmoid_focal_loss", sigmoid_focal_loss_cuda);
  m.impl("_sigmoid_focal_loss_backward", sigmoid_focal_loss_backward_cuda);
}

}  // namespace dets
