// RoICrop on the CPU.
//
// The neighbours and weights of an RoI's output rows and columns are computed
// once and reused across channels (the sampling grid is separable). Both
// passes work on blocks of channels whose planes fit in a core's cache, so the
// feature map is read (or grad_input written) about once, not once per RoI.
// Forward runs in parallel over (chunk of one image's RoIs, channel block)
// tasks. Backward runs in parallel over channel ranges: a thread owns every
// grad_input plane of its channels and adds the RoIs in order, so it is
// race-free and its result does not depend on the number of threads.
#include "roi_crop.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "roi_checks.h"

namespace dets {
namespace {

// Neighbours along one axis of an RoI, one entry per output row or column. An
// entry with no neighbour in the map gets zero weights (and index 0), so the
// inner loops need no branch; rows and columns are separable, so the weights of
// point (i, j) are products of a row and a column entry.
template <typename T>
struct AxisTaps {
  std::vector<int64_t> lo, hi;
  std::vector<T> w_lo, w_hi;
  std::vector<char> ok;
  int64_t valid = 0;

  explicit AxisTaps(int64_t n) : lo(n), hi(n), w_lo(n), w_hi(n), ok(n) {}

  void fill(T first, T last, int64_t size) {
    const int64_t n = static_cast<int64_t>(lo.size());
    valid = 0;
    for (int64_t j = 0; j < n; ++j) {
      RoICropAxisTap<T> tap;
      ok[j] = roi_crop_axis_tap(roi_crop_point(first, last, j, n), size, &tap);
      if (!ok[j]) {
        tap = {0, 0, T(0), T(0)};
      }
      valid += ok[j];
      lo[j] = tap.lo;
      hi[j] = tap.hi;
      w_lo[j] = tap.w_lo;
      w_hi[j] = tap.w_hi;
    }
  }
};

// Taps of RoI `roi`; returns its batch index, or -1 when the RoI is skipped
// (invalid batch index, or no point with a neighbour in the map).
template <typename T>
int64_t roi_axis_taps(const T* roi, T scale, int64_t batch, int64_t height,
                      int64_t width, AxisTaps<T>& xs, AxisTaps<T>& ys) {
  const int64_t b = roi_crop_batch(roi[0], batch);
  if (b < 0) {
    return -1;
  }
  xs.fill(roi[1] * scale, roi[3] * scale, width);
  ys.fill(roi[2] * scale, roi[4] * scale, height);
  return xs.valid > 0 && ys.valid > 0 ? b : -1;
}

// Channels per cache block: a block's planes (`plane_bytes` each) should stay
// in a core's cache (~256 KB) while every RoI of the task reads them.
int64_t cache_block(int64_t plane_bytes, int64_t channels) {
  const int64_t fit = (int64_t{256} << 10) / std::max<int64_t>(plane_bytes, 1);
  return std::max<int64_t>(1, std::min(fit, channels));
}

// RoIs per forward task.
constexpr int64_t kRoIChunk = 64;

template <typename T>
void forward_impl(const at::Tensor& input, const at::Tensor& rois, T scale,
                  int64_t out_h, int64_t out_w, at::Tensor& output) {
  const int64_t batch = input.size(0), channels = input.size(1);
  const int64_t height = input.size(2), width = input.size(3);
  const int64_t num_rois = rois.size(0);
  const int64_t points = out_h * out_w;
  const int64_t plane = height * width;
  const T* in = input.data_ptr<T>();
  const T* r = rois.data_ptr<T>();
  T* out = output.data_ptr<T>();

  // RoIs sorted by image (stable), then cut into chunks of one image each: a
  // task (chunk, channel block) reads its planes once and serves all of the
  // chunk's RoIs from cache. RoIs with an invalid batch index are zeroed here.
  std::vector<int64_t> first(batch + 1, 0), order(num_rois);
  for (int64_t k = 0; k < num_rois; ++k) {
    const int64_t b = roi_crop_batch(r[k * 5], batch);
    if (b >= 0) {
      ++first[b + 1];
    } else {
      std::fill(out + k * channels * points, out + (k + 1) * channels * points,
                T(0));
    }
  }
  for (int64_t b = 0; b < batch; ++b) {
    first[b + 1] += first[b];
  }
  std::vector<int64_t> cursor(first.begin(), first.end() - 1);
  for (int64_t k = 0; k < num_rois; ++k) {
    const int64_t b = roi_crop_batch(r[k * 5], batch);
    if (b >= 0) {
      order[cursor[b]++] = k;
    }
  }
  std::vector<int64_t> chunk_begin, chunk_image;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t n = first[b]; n < first[b + 1]; n += kRoIChunk) {
      chunk_begin.push_back(n);
      chunk_image.push_back(b);
    }
  }
  const int64_t chunks = static_cast<int64_t>(chunk_begin.size());
  const int64_t block = cache_block(plane * sizeof(T), channels);
  const int64_t blocks = (channels + block - 1) / block;
  // Task t = (channel block t / chunks, chunk t % chunks): consecutive tasks of
  // a thread share a channel block.
  at::parallel_for(0, chunks * blocks, 1, [&](int64_t begin, int64_t end) {
    AxisTaps<T> xs(out_w), ys(out_h);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t chunk = task % chunks;
      const int64_t b = chunk_image[chunk];
      const int64_t c0 = (task / chunks) * block;
      const int64_t c1 = std::min(channels, c0 + block);
      const int64_t n1 = std::min(first[b + 1], chunk_begin[chunk] + kRoIChunk);
      for (int64_t n = chunk_begin[chunk]; n < n1; ++n) {
        const int64_t k = order[n];
        T* dst = out + (k * channels + c0) * points;
        if (roi_axis_taps(r + k * 5, scale, batch, height, width, xs, ys) < 0) {
          std::fill(dst, dst + (c1 - c0) * points, T(0));
          continue;
        }
        const int64_t* xl = xs.lo.data();
        const int64_t* xh = xs.hi.data();
        const T* wxl = xs.w_lo.data();
        const T* wxh = xs.w_hi.data();
        for (int64_t c = c0; c < c1; ++c) {
          const T* src = in + (b * channels + c) * plane;
          for (int64_t i = 0; i < out_h; ++i, dst += out_w) {
            if (!ys.ok[i]) {
              std::fill(dst, dst + out_w, T(0));
              continue;
            }
            const T* row_lo = src + ys.lo[i] * width;
            const T* row_hi = src + ys.hi[i] * width;
            const T wyl = ys.w_lo[i], wyh = ys.w_hi[i];
            for (int64_t j = 0; j < out_w; ++j) {
              dst[j] = wyl * (wxl[j] * row_lo[xl[j]] + wxh[j] * row_lo[xh[j]]) +
                       wyh * (wxl[j] * row_hi[xl[j]] + wxh[j] * row_hi[xh[j]]);
            }
          }
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
    // Each thread zeroes its own planes: no separate pass over grad_input, and
    // the planes are in this thread's cache when the scatter starts.
    for (int64_t b = 0; b < batch; ++b) {
      T* first = gin + (b * channels + c0) * plane;
      std::fill(first, first + (c1 - c0) * plane, T(0));
    }
    // Channel sub-blocks whose planes (of every image) stay in cache while all
    // RoIs scatter into them; each channel still adds the RoIs in order.
    const int64_t block = cache_block(batch * plane * sizeof(T), c1 - c0);
    AxisTaps<T> xs(out_w), ys(out_h);
    for (int64_t s0 = c0; s0 < c1; s0 += block) {
      const int64_t s1 = std::min(c1, s0 + block);
      for (int64_t k = 0; k < num_rois; ++k) {
        const int64_t b =
            roi_axis_taps(r + k * 5, scale, batch, height, width, xs, ys);
        if (b < 0) {
          continue;
        }
        const int64_t* xl = xs.lo.data();
        const int64_t* xh = xs.hi.data();
        const T* wxl = xs.w_lo.data();
        const T* wxh = xs.w_hi.data();
        for (int64_t c = s0; c < s1; ++c) {
          const T* src = g + (k * channels + c) * points;
          T* dst = gin + (b * channels + c) * plane;
          for (int64_t i = 0; i < out_h; ++i) {
            if (!ys.ok[i]) {
              continue;
            }
            T* row_lo = dst + ys.lo[i] * width;
            T* row_hi = dst + ys.hi[i] * width;
            const T wyl = ys.w_lo[i], wyh = ys.w_hi[i];
            const T* grow = src + i * out_w;
            // Columns without a neighbour have zero weights and add 0 at
            // index 0.
            for (int64_t j = 0; j < out_w; ++j) {
              const T lo = wyl * grow[j], hi = wyh * grow[j];
              row_lo[xl[j]] += wxl[j] * lo;
              row_lo[xh[j]] += wxh[j] * lo;
              row_hi[xl[j]] += wxl[j] * hi;
              row_hi[xh[j]] += wxh[j] * hi;
            }
          }
        }
      }
    }
  });
}

at::Tensor roi_crop_cpu(const at::Tensor& input, const at::Tensor& rois,
                        double spatial_scale, int64_t output_height,
                        int64_t output_width) {
  roi_checks::check_roi_crop_forward(input, rois, output_height, output_width);
  // Every element is written below (points with no neighbour in the map as 0).
  at::Tensor output =
      at::empty({rois.size(0), input.size(1), output_height, output_width},
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
  roi_checks::check_roi_crop_backward(grad, rois, batch_size, channels, height,
                                      width);
  // Zeroed by the kernel's threads, plane by plane.
  at::Tensor grad_input =
      at::empty({batch_size, channels, height, width},
                grad.options().memory_format(at::MemoryFormat::Contiguous));
  if (grad.numel() == 0 || grad_input.numel() == 0) {
    return grad_input.zero_();
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
