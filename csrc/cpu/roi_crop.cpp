// RoICrop on the CPU.
//
// The four neighbours and weights of every output point of an RoI are computed
// once and reused across channels. Forward runs in parallel over (RoI, channel
// group) tasks. Backward runs in parallel over channel ranges: a thread owns
// every grad_input plane of its channels and adds the RoIs in order, so it is
// race-free and its result does not depend on the number of threads.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "roi_crop.h"

namespace dets {
namespace {

// Channels per forward task: enough work to amortise the tap computation,
// few enough to spread a handful of RoIs over the threads.
constexpr int64_t kChannelGroup = 32;

template <typename T>
struct PointTaps {
  int64_t point;  // index in the oh x ow output plane
  int64_t offset[4];
  T weight[4];
};

// Taps of the points of RoI `roi` that have at least one neighbour in the map;
// returns their number (the other points are 0 and get no gradient).
template <typename T>
int64_t roi_taps(const T* roi, T scale, int64_t height, int64_t width,
                 int64_t out_h, int64_t out_w, std::vector<RoICropAxisTap<T>>& xs,
                 std::vector<char>& x_ok, PointTaps<T>* taps) {
  const T x1 = roi[1] * scale, y1 = roi[2] * scale;
  const T x2 = roi[3] * scale, y2 = roi[4] * scale;
  for (int64_t j = 0; j < out_w; ++j) {
    x_ok[j] =
        roi_crop_axis_tap(roi_crop_point(x1, x2, j, out_w), width, &xs[j]);
  }
  int64_t count = 0;
  for (int64_t i = 0; i < out_h; ++i) {
    RoICropAxisTap<T> ty;
    if (!roi_crop_axis_tap(roi_crop_point(y1, y2, i, out_h), height, &ty)) {
      continue;
    }
    for (int64_t j = 0; j < out_w; ++j) {
      if (!x_ok[j]) {
        continue;
      }
      const RoICropAxisTap<T>& tx = xs[j];
      PointTaps<T>& t = taps[count++];
      t.point = i * out_w + j;
      t.offset[0] = ty.lo * width + tx.lo;
      t.offset[1] = ty.lo * width + tx.hi;
      t.offset[2] = ty.hi * width + tx.lo;
      t.offset[3] = ty.hi * width + tx.hi;
      t.weight[0] = ty.w_lo * tx.w_lo;
      t.weight[1] = ty.w_lo * tx.w_hi;
      t.weight[2] = ty.w_hi * tx.w_lo;
      t.weight[3] = ty.w_hi * tx.w_hi;
    }
  }
  return count;
}

template <typename T>
void forward_impl(const at::Tensor& input, const at::Tensor& rois, T scale,
                  int64_t out_h, int64_t out_w, at::Tensor& output) {
  const int64_t batch = input.size(0), channels = input.size(1);
  const int64_t height = input.size(2), width = input.size(3);
  const int64_t num_rois = rois.size(0);
  const int64_t points = out_h * out_w;
  const int64_t plane = height * width;
  const int64_t groups = (channels + kChannelGroup - 1) / kChannelGroup;
  const T* in = input.data_ptr<T>();
  const T* r = rois.data_ptr<T>();
  T* out = output.data_ptr<T>();
  const int64_t grain =
      std::max<int64_t>(1, 32768 / (kChannelGroup * std::max<int64_t>(points, 1)));
  at::parallel_for(0, num_rois * groups, grain, [&](int64_t begin, int64_t end) {
    std::vector<RoICropAxisTap<T>> xs(out_w);
    std::vector<char> x_ok(out_w);
    std::vector<PointTaps<T>> taps(points);
    int64_t cached_roi = -1, count = 0, b = -1;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t k = task / groups;
      const int64_t c0 = (task % groups) * kChannelGroup;
      const int64_t c1 = std::min(channels, c0 + kChannelGroup);
      if (k != cached_roi) {
        cached_roi = k;
        b = roi_crop_batch(r[k * 5], batch);
        count = b < 0 ? 0
                      : roi_taps(r + k * 5, scale, height, width, out_h, out_w,
                                 xs, x_ok, taps.data());
      }
      T* dst = out + (k * channels + c0) * points;
      if (count < points) {
        std::fill(dst, dst + (c1 - c0) * points, T(0));
      }
      if (count == 0) {
        continue;
      }
      for (int64_t c = c0; c < c1; ++c, dst += points) {
        const T* src = in + (b * channels + c) * plane;
        for (int64_t q = 0; q < count; ++q) {
          const PointTaps<T>& t = taps[q];
          dst[t.point] = t.weight[0] * src[t.offset[0]] +
                         t.weight[1] * src[t.offset[1]] +
                         t.weight[2] * src[t.offset[2]] +
                         t.weight[3] * src[t.offset[3]];
        }
      }
    }
  });
}

template <typename T>
void backward_impl(const at::Tensor& grad, const at::Tensor& rois, T scale,
                   at::Tensor& grad_input) {
  const int64_t batch = grad_input.size(0), channels = grad_input.size(1);
  const int64_t height = grad_input.size(2), width = grad_input.size(3);
  const int64_t num_rois = rois.size(0);
  const int64_t out_h = grad.size(2), out_w = grad.size(3);
  const int64_t points = out_h * out_w;
  const int64_t plane = height * width;
  const T* g = grad.data_ptr<T>();
  const T* r = rois.data_ptr<T>();
  T* gin = grad_input.data_ptr<T>();
  at::parallel_for(0, channels, 1, [&](int64_t c0, int64_t c1) {
    std::vector<RoICropAxisTap<T>> xs(out_w);
    std::vector<char> x_ok(out_w);
    std::vector<PointTaps<T>> taps(points);
    for (int64_t k = 0; k < num_rois; ++k) {
      const int64_t b = roi_crop_batch(r[k * 5], batch);
      if (b < 0) {
        continue;
      }
      const int64_t count = roi_taps(r + k * 5, scale, height, width, out_h,
                                     out_w, xs, x_ok, taps.data());
      for (int64_t c = c0; c < c1; ++c) {
        const T* src = g + (k * channels + c) * points;
        T* dst = gin + (b * channels + c) * plane;
        for (int64_t q = 0; q < count; ++q) {
          const PointTaps<T>& t = taps[q];
          const T v = src[t.point];
          dst[t.offset[0]] += t.weight[0] * v;
          dst[t.offset[1]] += t.weight[1] * v;
          dst[t.offset[2]] += t.weight[2] * v;
          dst[t.offset[3]] += t.weight[3] * v;
        }
      }
    }
  });
}

void check_rois_arg(const at::Tensor& rois, const at::Tensor& other) {
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5,
              "roi_crop: rois must have shape [K, 5], got ", rois.sizes());
  TORCH_CHECK(rois.scalar_type() == other.scalar_type(),
              "roi_crop: rois and input/grad must share a dtype");
}

at::Tensor roi_crop_cpu(const at::Tensor& input, const at::Tensor& rois,
                        double spatial_scale, int64_t output_height,
                        int64_t output_width) {
  TORCH_CHECK(input.dim() == 4, "roi_crop: input must be [N, C, H, W], got ",
              input.sizes());
  TORCH_CHECK(output_height > 0 && output_width > 0,
              "roi_crop: output size must be positive");
  check_rois_arg(rois, input);
  // Every element is written below (points with no neighbour in the map as 0).
  at::Tensor output = at::empty(
      {rois.size(0), input.size(1), output_height, output_width},
      input.options().memory_format(at::MemoryFormat::Contiguous));
  if (output.numel() == 0 || input.numel() == 0) {
    return output.zero_();
  }
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_crop_cpu", [&] {
    forward_impl<scalar_t>(input.contiguous(), rois.contiguous(),
                           static_cast<scalar_t>(spatial_scale), output_height,
                           output_width, output);
  });
  return output;
}

at::Tensor roi_crop_backward_cpu(const at::Tensor& grad, const at::Tensor& rois,
                                 double spatial_scale, int64_t batch_size,
                                 int64_t channels, int64_t height,
                                 int64_t width) {
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == rois.size(0) &&
                  grad.size(1) == channels,
              "roi_crop backward: grad must be [K, C, oh, ow], got ",
              grad.sizes());
  check_rois_arg(rois, grad);
  at::Tensor grad_input = at::zeros({batch_size, channels, height, width},
                                    grad.options().memory_format(
                                        at::MemoryFormat::Contiguous));
  if (grad.numel() == 0 || grad_input.numel() == 0) {
    return grad_input;
  }
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "roi_crop_backward_cpu", [&] {
    backward_impl<scalar_t>(grad.contiguous(), rois.contiguous(),
                            static_cast<scalar_t>(spatial_scale), grad_input);
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CPU, m) {
  m.impl("roi_crop", roi_crop_cpu);
  m.impl("_roi_crop_backward", roi_crop_backward_cpu);
}

}  // namespace dets
