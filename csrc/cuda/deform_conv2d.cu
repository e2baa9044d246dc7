// Deformable convolution (DCNv2) on CUDA, forward and backward.
//
// im2col + cuBLAS: the samples of a chunk of images are written as columns
// [C_in * kh * kw, images * H_out * W_out] (row c * kh * kw + tap, the order of
// the weight's flattened rows), and each weight group is one batched GEMM
// (at::bmm). The backward forms the column gradient with the transposed
// weight, then
//   col2im: one thread per column entry adds it to the four corners of the
//           input gradient (an accumulation-type buffer) with atomics;
//   coord:  one thread per (image, offset group, tap, position) forms the
//           offset and mask gradients from the group's channels (no atomics);
// and the weight gradient is the output gradient times the recomputed columns.
// Sampling and accumulation run in at::opmath_type (float for half types).
// The order of the atomic adds is not fixed, so the last bits of the input
// gradient may vary from run to run.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "deform_conv2d_common.h"

namespace dets {
namespace {

using deform_conv2d_common::Sample;
using deform_conv2d_common::sample_at;
using deform_conv2d_common::sample_coord;
using deform_conv2d_common::Shape;

constexpr int kThreads = 256;
// Column entries per chunk of images (the columns and their gradient).
constexpr int64_t kColumnBudget = int64_t(1) << 26;

// Sizes the kernels need, passed by value.
struct Dims {
  int64_t channels, height, width, out_w, plane, taps, kernel_w;
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int64_t per_offset_group, offset_groups, first_image, n_pos;
  bool use_mask;
};

// The sample of tap k at chunk position idx (image first_image + idx / plane)
// for offset group o, and its mask.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ Sample<acc_t> tap_sample(
    const Dims& d, const scalar_t* offset, const scalar_t* mask, int64_t idx,
    int64_t o, int64_t k, int64_t& image, acc_t& m) {
  image = d.first_image + idx / d.plane;
  const int64_t p = idx % d.plane;
  const int64_t oy = p / d.out_w, ox = p % d.out_w;
  const int64_t i = k / d.kernel_w, j = k % d.kernel_w;
  const int64_t og = image * d.offset_groups + o;
  const scalar_t* off = offset + (og * 2 * d.taps + 2 * k) * d.plane + p;
  const acc_t y = sample_coord(oy, d.stride_h, d.pad_h, i, d.dilation_h,
                               static_cast<acc_t>(off[0]));
  const acc_t x = sample_coord(ox, d.stride_w, d.pad_w, j, d.dilation_w,
                               static_cast<acc_t>(off[d.plane]));
  m = d.use_mask ? static_cast<acc_t>(mask[(og * d.taps + k) * d.plane + p])
                 : acc_t(1);
  return sample_at(y, x, d.height, d.width);
}

// Element offsets of the four corners in an H x W plane (valid ones only).
template <typename acc_t>
__device__ __forceinline__ void corner_offsets(const Sample<acc_t>& s,
                                               int64_t width, int64_t at[4]) {
  const int64_t base = s.y_lo * width + s.x_lo;
  at[0] = base;
  at[1] = base + 1;
  at[2] = base + width;
  at[3] = base + width + 1;
}

template <typename scalar_t>
__global__ void im2col_kernel(Dims d, const scalar_t* __restrict__ input,
                              const scalar_t* __restrict__ offset,
                              const scalar_t* __restrict__ mask,
                              scalar_t* __restrict__ cols) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = d.channels * d.n_pos;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total;
       t += int64_t(blockDim.x) * gridDim.x) {
    const int64_t c = t / d.n_pos, idx = t % d.n_pos;
    for (int64_t k = 0; k < d.taps; ++k) {
      int64_t image;
      acc_t m;
      const Sample<acc_t> s = tap_sample<scalar_t, acc_t>(
          d, offset, mask, idx, c / d.per_offset_group, k, image, m);
      const scalar_t* plane =
          input + (image * d.channels + c) * d.height * d.width;
      int64_t at[4];
      corner_offsets(s, d.width, at);
      acc_t v = 0;
      for (int q = 0; q < 4; ++q) {
        if (s.valid[q]) v += s.weight[q] * static_cast<acc_t>(plane[at[q]]);
      }
      cols[(c * d.taps + k) * d.n_pos + idx] = static_cast<scalar_t>(m * v);
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void col2im_kernel(Dims d, const scalar_t* __restrict__ grad_cols,
                              const scalar_t* __restrict__ offset,
                              const scalar_t* __restrict__ mask,
                              acc_t* __restrict__ grad_input) {
  const int64_t total = d.channels * d.taps * d.n_pos;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total;
       t += int64_t(blockDim.x) * gridDim.x) {
    const int64_t row = t / d.n_pos, idx = t % d.n_pos;
    const int64_t c = row / d.taps, k = row % d.taps;
    int64_t image;
    acc_t m;
    const Sample<acc_t> s = tap_sample<scalar_t, acc_t>(
        d, offset, mask, idx, c / d.per_offset_group, k, image, m);
    const acc_t g = m * static_cast<acc_t>(grad_cols[t]);
    acc_t* plane = grad_input + (image * d.channels + c) * d.height * d.width;
    int64_t at[4];
    corner_offsets(s, d.width, at);
    for (int q = 0; q < 4; ++q) {
      if (s.valid[q] && s.weight[q] != acc_t(0)) {
        atomicAdd(plane + at[q], s.weight[q] * g);
      }
    }
  }
}

template <typename scalar_t>
__global__ void coord_kernel(Dims d, const scalar_t* __restrict__ grad_cols,
                             const scalar_t* __restrict__ input,
                             const scalar_t* __restrict__ offset,
                             const scalar_t* __restrict__ mask,
                             scalar_t* __restrict__ grad_offset,
                             scalar_t* __restrict__ grad_mask) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = d.offset_groups * d.taps * d.n_pos;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total;
       t += int64_t(blockDim.x) * gridDim.x) {
    const int64_t row = t / d.n_pos, idx = t % d.n_pos;
    const int64_t o = row / d.taps, k = row % d.taps;
    int64_t image;
    acc_t m;
    const Sample<acc_t> s =
        tap_sample<scalar_t, acc_t>(d, offset, mask, idx, o, k, image, m);
    int64_t at[4];
    corner_offsets(s, d.width, at);
    acc_t dots[4] = {0, 0, 0, 0};
    for (int64_t c = o * d.per_offset_group; c < (o + 1) * d.per_offset_group;
         ++c) {
      const acc_t g =
          static_cast<acc_t>(grad_cols[(c * d.taps + k) * d.n_pos + idx]);
      const scalar_t* plane =
          input + (image * d.channels + c) * d.height * d.width;
      for (int q = 0; q < 4; ++q) {
        if (s.valid[q]) dots[q] += g * static_cast<acc_t>(plane[at[q]]);
      }
    }
    const int64_t p = idx % d.plane;
    const int64_t og = image * d.offset_groups + o;
    scalar_t* go = grad_offset + (og * 2 * d.taps + 2 * k) * d.plane + p;
    go[0] = static_cast<scalar_t>(m * deform_conv2d_common::grad_y(s, dots));
    go[d.plane] =
        static_cast<scalar_t>(m * deform_conv2d_common::grad_x(s, dots));
    if (d.use_mask) {
      acc_t v = 0;
      for (int q = 0; q < 4; ++q) v += s.weight[q] * dots[q];
      grad_mask[(og * d.taps + k) * d.plane + p] = static_cast<scalar_t>(v);
    }
  }
}

Dims make_dims(const Shape& s) {
  Dims d;
  d.channels = s.channels;
  d.height = s.height;
  d.width = s.width;
  d.out_w = s.out_w;
  d.plane = s.positions();
  d.taps = s.taps();
  d.kernel_w = s.kernel_w;
  d.stride_h = s.stride_h;
  d.stride_w = s.stride_w;
  d.pad_h = s.pad_h;
  d.pad_w = s.pad_w;
  d.dilation_h = s.dilation_h;
  d.dilation_w = s.dilation_w;
  d.per_offset_group = s.channels / s.offset_groups;
  d.offset_groups = s.offset_groups;
  d.use_mask = s.use_mask;
  return d;
}

int64_t images_per_chunk(const Shape& s) {
  return std::clamp<int64_t>(
      kColumnBudget / (s.channels * s.taps() * s.positions()), 1, s.batch);
}

unsigned blocks_for(int64_t total) {
  const int64_t cap = int64_t(1) << 20;  // grid-stride loops cover the rest
  return static_cast<unsigned>(
      std::min<int64_t>((total + kThreads - 1) / kThreads, cap));
}

template <typename scalar_t>
at::Tensor im2col(const Dims& d, const at::Tensor& input,
                  const at::Tensor& offset, const at::Tensor& mask,
                  cudaStream_t stream) {
  at::Tensor cols = at::empty({d.channels * d.taps, d.n_pos}, input.options());
  im2col_kernel<scalar_t>
      <<<blocks_for(d.channels * d.n_pos), kThreads, 0, stream>>>(
          d, input.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(),
          mask.data_ptr<scalar_t>(), cols.data_ptr<scalar_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return cols;
}

// grad [B, C_out, H_out, W_out] images [b0, b0 + nb) as [groups, C_out /
// groups, nb * H_out * W_out].
at::Tensor grouped_rows(const at::Tensor& t, const Shape& s, int64_t b0,
                        int64_t nb) {
  return t.narrow(0, b0, nb)
      .reshape({nb, s.groups, s.out_channels / s.groups, s.positions()})
      .permute({1, 2, 0, 3})
      .reshape({s.groups, s.out_channels / s.groups, nb * s.positions()});
}

at::Tensor deform_conv2d_cuda(const at::Tensor& input, const at::Tensor& weight,
                              const at::Tensor& offset, const at::Tensor& mask,
                              const at::Tensor& bias, int64_t stride_h,
                              int64_t stride_w, int64_t pad_h, int64_t pad_w,
                              int64_t dilation_h, int64_t dilation_w,
                              int64_t groups, int64_t offset_groups,
                              bool use_mask) {
  // The ATen calls below work on internal tensors: no autograd graph.
  const at::AutoDispatchBelowADInplaceOrView no_autograd;
  const Shape s = deform_conv2d_common::check_forward(
      input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w,
      dilation_h, dilation_w, groups, offset_groups, use_mask);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor out =
      at::empty({s.batch, s.out_channels, s.out_h, s.out_w}, input.options());
  if (s.batch == 0) return out;
  const at::Tensor in = input.contiguous();
  const at::Tensor off = offset.contiguous();
  const at::Tensor msk = use_mask ? mask.contiguous() : in;
  const at::Tensor grouped =
      weight.reshape({groups, s.out_channels / groups, -1});
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t step = images_per_chunk(s);
  Dims d = make_dims(s);
  for (int64_t b0 = 0; b0 < s.batch; b0 += step) {
    const int64_t nb = std::min(step, s.batch - b0);
    d.first_image = b0;
    d.n_pos = nb * s.positions();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, input.scalar_type(), "deform_conv2d_cuda",
        [&] {
          const at::Tensor cols = im2col<scalar_t>(d, in, off, msk, stream);
          const at::Tensor res =
              at::bmm(grouped, cols.view({groups, -1, d.n_pos}));
          out.narrow(0, b0, nb).copy_(
              res.view({s.out_channels, nb, s.out_h, s.out_w}).transpose(0, 1));
        });
  }
  return out.add_(bias.view({1, -1, 1, 1}));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
deform_conv2d_backward_cuda(const at::Tensor& grad, const at::Tensor& input,
                            const at::Tensor& weight, const at::Tensor& offset,
                            const at::Tensor& mask, const at::Tensor& bias,
                            int64_t stride_h, int64_t stride_w, int64_t pad_h,
                            int64_t pad_w, int64_t dilation_h,
                            int64_t dilation_w, int64_t groups,
                            int64_t offset_groups, bool use_mask) {
  // The ATen calls below work on internal tensors: no autograd graph.
  const at::AutoDispatchBelowADInplaceOrView no_autograd;
  const Shape s = deform_conv2d_common::check_backward(
      grad, input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w,
      dilation_h, dilation_w, groups, offset_groups, use_mask);
  const c10::cuda::CUDAGuard guard(input.device());
  const at::ScalarType acc_type = at::toOpMathType(input.scalar_type());
  at::Tensor grad_acc =
      at::zeros(input.sizes(), input.options().dtype(acc_type));
  at::Tensor grad_weight_acc =
      at::zeros({groups, s.out_channels / groups, weight[0].numel()},
                weight.options().dtype(acc_type));
  at::Tensor grad_offset = at::zeros_like(offset, at::MemoryFormat::Contiguous);
  at::Tensor grad_mask = at::zeros_like(mask, at::MemoryFormat::Contiguous);
  at::Tensor grad_bias = grad.sum({0, 2, 3});
  const at::Tensor in = input.contiguous();
  const at::Tensor off = offset.contiguous();
  const at::Tensor msk = use_mask ? mask.contiguous() : in;
  const at::Tensor g_all = grad.contiguous();
  const at::Tensor grouped_t =
      weight.reshape({groups, s.out_channels / groups, -1}).transpose(1, 2);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t step = images_per_chunk(s);
  Dims d = make_dims(s);
  for (int64_t b0 = 0; b0 < s.batch; b0 += step) {
    const int64_t nb = std::min(step, s.batch - b0);
    d.first_image = b0;
    d.n_pos = nb * s.positions();
    const at::Tensor g = grouped_rows(g_all, s, b0, nb);
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, input.scalar_type(),
        "deform_conv2d_backward_cuda", [&] {
          using acc_t = at::opmath_type<scalar_t>;
          const at::Tensor cols = im2col<scalar_t>(d, in, off, msk, stream);
          grad_weight_acc.add_(
              at::bmm(g, cols.view({groups, -1, d.n_pos}).transpose(1, 2)));
          const at::Tensor grad_cols =
              at::bmm(grouped_t, g).reshape({-1, d.n_pos}).contiguous();
          col2im_kernel<scalar_t, acc_t>
              <<<blocks_for(grad_cols.numel()), kThreads, 0, stream>>>(
                  d, grad_cols.data_ptr<scalar_t>(), off.data_ptr<scalar_t>(),
                  msk.data_ptr<scalar_t>(), grad_acc.data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
          coord_kernel<scalar_t>
              <<<blocks_for(offset_groups * s.taps() * d.n_pos), kThreads, 0,
                 stream>>>(d, grad_cols.data_ptr<scalar_t>(),
                           in.data_ptr<scalar_t>(), off.data_ptr<scalar_t>(),
                           msk.data_ptr<scalar_t>(),
                           grad_offset.data_ptr<scalar_t>(),
                           use_mask ? grad_mask.data_ptr<scalar_t>()
                                    : grad_offset.data_ptr<scalar_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
  }
  return {grad_acc.to(input.scalar_type()),
          grad_weight_acc.view(weight.sizes()).to(weight.scalar_type()),
          grad_offset, grad_mask, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CUDA, m) {
  m.impl("deform_conv2d", deform_conv2d_cuda);
  m.impl("_deform_conv2d_backward", deform_conv2d_backward_cuda);
}

}  // namespace dets
