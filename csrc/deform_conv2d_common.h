// Deformable convolution (DCNv2): argument checks and sample geometry shared by
// the CPU and CUDA kernels, so both reject the same inputs with the same
// messages and place every sample as torchvision does.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define DETS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define DETS_HOST_DEVICE inline
#endif

namespace dets {
namespace deform_conv2d_common {

// Sizes of one call; out_h/out_w follow from the input and the kernel.
struct Shape {
  int64_t batch, channels, height, width;
  int64_t out_channels, kernel_h, kernel_w, out_h, out_w;
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int64_t groups, offset_groups;
  bool use_mask;

  int64_t taps() const { return kernel_h * kernel_w; }
  int64_t positions() const { return out_h * out_w; }
};

inline Shape check_forward(const at::Tensor& input, const at::Tensor& weight,
                           const at::Tensor& offset, const at::Tensor& mask,
                           const at::Tensor& bias, int64_t stride_h,
                           int64_t stride_w, int64_t pad_h, int64_t pad_w,
                           int64_t dilation_h, int64_t dilation_w,
                           int64_t groups, int64_t offset_groups,
                           bool use_mask) {
  TORCH_CHECK(input.dim() == 4, "deform_conv2d: input must be [B, C, H, W]");
  TORCH_CHECK(weight.dim() == 4,
              "deform_conv2d: weight must be [C_out, C_in / groups, kh, kw]");
  TORCH_CHECK(offset.dim() == 4, "deform_conv2d: offset must be 4-D");
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0),
              "deform_conv2d: bias must be [C_out]");
  for (const at::Tensor* t : {&weight, &offset, &mask, &bias}) {
    TORCH_CHECK(t->scalar_type() == input.scalar_type(),
                "deform_conv2d: all tensors must share input's dtype");
    TORCH_CHECK(t->device() == input.device(),
                "deform_conv2d: all tensors must be on input's device");
  }
  TORCH_CHECK(stride_h > 0 && stride_w > 0 && dilation_h > 0 &&
                  dilation_w > 0 && pad_h >= 0 && pad_w >= 0,
              "deform_conv2d: stride and dilation must be positive, padding "
              "non-negative");
  Shape s;
  s.batch = input.size(0);
  s.channels = input.size(1);
  s.height = input.size(2);
  s.width = input.size(3);
  s.out_channels = weight.size(0);
  s.kernel_h = weight.size(2);
  s.kernel_w = weight.size(3);
  s.stride_h = stride_h;
  s.stride_w = stride_w;
  s.pad_h = pad_h;
  s.pad_w = pad_w;
  s.dilation_h = dilation_h;
  s.dilation_w = dilation_w;
  s.groups = groups;
  s.offset_groups = offset_groups;
  s.use_mask = use_mask;
  TORCH_CHECK(s.channels > 0 && s.height > 0 && s.width > 0,
              "deform_conv2d: input must have C, H and W > 0");
  TORCH_CHECK(s.kernel_h > 0 && s.kernel_w > 0 && s.out_channels > 0,
              "deform_conv2d: weight must be non-empty");
  TORCH_CHECK(groups > 0 && s.channels % groups == 0 &&
                  s.out_channels % groups == 0 &&
                  weight.size(1) * groups == s.channels,
              "deform_conv2d: groups must divide C_in and C_out, with "
              "weight.size(1) == C_in / groups");
  TORCH_CHECK(offset_groups > 0 && s.channels % offset_groups == 0,
              "deform_conv2d: offset_groups must divide C_in");
  s.out_h =
      (s.height + 2 * pad_h - (dilation_h * (s.kernel_h - 1) + 1)) / stride_h +
      1;
  s.out_w =
      (s.width + 2 * pad_w - (dilation_w * (s.kernel_w - 1) + 1)) / stride_w +
      1;
  TORCH_CHECK(s.out_h > 0 && s.out_w > 0,
              "deform_conv2d: the output would be empty");
  TORCH_CHECK(offset.size(0) == s.batch &&
                  offset.size(1) == 2 * offset_groups * s.taps() &&
                  offset.size(2) == s.out_h && offset.size(3) == s.out_w,
              "deform_conv2d: offset must be [B, 2 * offset_groups * kh * kw, "
              "H_out, W_out]");
  TORCH_CHECK(!use_mask || (mask.dim() == 4 && mask.size(0) == s.batch &&
                            mask.size(1) == offset_groups * s.taps() &&
                            mask.size(2) == s.out_h && mask.size(3) == s.out_w),
              "deform_conv2d: mask must be [B, offset_groups * kh * kw, H_out, "
              "W_out]");
  return s;
}

inline Shape check_backward(const at::Tensor& grad, const at::Tensor& input,
                            const at::Tensor& weight, const at::Tensor& offset,
                            const at::Tensor& mask, const at::Tensor& bias,
                            int64_t stride_h, int64_t stride_w, int64_t pad_h,
                            int64_t pad_w, int64_t dilation_h,
                            int64_t dilation_w, int64_t groups,
                            int64_t offset_groups, bool use_mask) {
  const Shape s = check_forward(input, weight, offset, mask, bias, stride_h,
                                stride_w, pad_h, pad_w, dilation_h, dilation_w,
                                groups, offset_groups, use_mask);
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == s.batch &&
                  grad.size(1) == s.out_channels && grad.size(2) == s.out_h &&
                  grad.size(3) == s.out_w,
              "deform_conv2d backward: grad must be [B, C_out, H_out, W_out]");
  TORCH_CHECK(grad.scalar_type() == input.scalar_type() &&
                  grad.device() == input.device(),
              "deform_conv2d backward: grad must match input's dtype and "
              "device");
  return s;
}

// Where a sample's four bilinear corners lie: (lo, lo), (lo, hi), (hi, lo),
// (hi, hi) as (y, x), torchvision's order. A corner off the map is not
// valid (it reads 0). `weight` holds the bilinear weights, all 0 when the
// sample itself is off the map by torchvision's rule (y <= -1, y >= H, x <= -1
// or x >= W, or non-finite). The gradient of the coordinates still uses the
// valid corners of such a sample (torchvision's get_coordinate_weight does not
// apply the rule), which matters only on the borders y == -1 and x == -1.
template <typename T>
struct Sample {
  int64_t y_lo, x_lo;
  bool valid[4];
  T weight[4];
  T ly, lx;  // fractional parts of y and x
};

// Floor, fraction and corner validity along one axis of `size` pixels.
// Coordinates outside (-2, size + 1) touch no pixel; they are caught before
// the integer conversion so that it stays defined (NaN included).
template <typename T>
DETS_HOST_DEVICE void axis_corners(T v, int64_t size, int64_t& lo, bool& lo_ok,
                                   bool& hi_ok, T& frac) {
  if (!(v > T(-2) && v < static_cast<T>(size + 1))) {
    lo = 0;
    lo_ok = hi_ok = false;
    frac = T(0);
    return;
  }
  using std::floor;
  const T f = floor(v);
  lo = static_cast<int64_t>(f);
  frac = v - f;
  lo_ok = lo >= 0 && lo < size;
  hi_ok = lo + 1 >= 0 && lo + 1 < size;
}

template <typename T>
DETS_HOST_DEVICE Sample<T> sample_at(T y, T x, int64_t height, int64_t width) {
  Sample<T> s;
  bool y_lo_ok, y_hi_ok, x_lo_ok, x_hi_ok;
  axis_corners(y, height, s.y_lo, y_lo_ok, y_hi_ok, s.ly);
  axis_corners(x, width, s.x_lo, x_lo_ok, x_hi_ok, s.lx);
  s.valid[0] = y_lo_ok && x_lo_ok;
  s.valid[1] = y_lo_ok && x_hi_ok;
  s.valid[2] = y_hi_ok && x_lo_ok;
  s.valid[3] = y_hi_ok && x_hi_ok;
  const bool inside = y > T(-1) && y < static_cast<T>(height) && x > T(-1) &&
                      x < static_cast<T>(width);
  const T hy = T(1) - s.ly, hx = T(1) - s.lx;
  s.weight[0] = inside ? hy * hx : T(0);
  s.weight[1] = inside ? hy * s.lx : T(0);
  s.weight[2] = inside ? s.ly * hx : T(0);
  s.weight[3] = inside ? s.ly * s.lx : T(0);
  return s;
}

// Sampling point of kernel tap (i, j) at output (oy, ox): the grid position in
// integers (exact), then the learned offset, as torchvision adds them.
template <typename T>
DETS_HOST_DEVICE T sample_coord(int64_t out, int64_t stride, int64_t pad,
                                int64_t tap, int64_t dilation, T offset) {
  return static_cast<T>(out * stride - pad + tap * dilation) + offset;
}

// d(sample)/dy and d(sample)/dx from the four corner values (or their dot
// products with a gradient): torchvision's get_coordinate_weight.
template <typename T>
DETS_HOST_DEVICE T grad_y(const Sample<T>& s, const T v[4]) {
  return s.lx * (v[3] - v[1]) + (T(1) - s.lx) * (v[2] - v[0]);
}

template <typename T>
DETS_HOST_DEVICE T grad_x(const Sample<T>& s, const T v[4]) {
  return s.ly * (v[3] - v[2]) + (T(1) - s.ly) * (v[1] - v[0]);
}

}  // namespace deform_conv2d_common
}  // namespace dets
