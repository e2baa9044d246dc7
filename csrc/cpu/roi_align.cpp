// RoIAlign on the CPU, forward and backward.
//
// Layout: the features are read (and the gradient accumulated) as NHWC, so the
// four taps of a sample are each a contiguous run of channels and the inner
// loop is a vectorised multiply-add over a block of channels held in
// registers. A channels-last input needs no copy; an NCHW input is transposed
// once per call, which costs far less than gathering four strided taps per
// sample per channel. Each RoI's taps and weights are computed once and reused
// for every channel.
//
// Threads: the forward splits the RoIs; the backward splits the channels, so
// every gradient element has one owner that adds the RoIs in order: no races,
// and the result does not depend on the thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "isa_clones.h"
#include "roi_align_common.h"
#include "roi_checks.h"

namespace dets {
namespace {

using roi_align_common::axis_tap;
using roi_align_common::AxisTap;
using roi_align_common::Geometry;
using roi_align_common::roi_geometry;
using roi_align_common::sample_coord;

// Channels per register block of the inner loops.
constexpr int64_t kBlock = 16;

// The per-RoI channel loops are cloned per instruction set (isa_clones.h). The
// sample geometry stays in baseline code: FMA contraction there could move
// samples.

// One in-image sample: offsets of its four taps (in elements of the NHWC
// image, channel 0) and their bilinear weights, in torchvision's order
// (lo/lo, lo/hi, hi/lo, hi/hi as y/x).
template <typename T>
struct Sample {
  int64_t offset[4];
  T weight[4];
};

// The samples of every bin of one RoI, grouped by bin; samples outside the
// image contribute nothing and are left out.
template <typename T>
struct RoiSamples {
  std::vector<Sample<T>> samples;
  std::vector<int64_t> bin_start;  // bins + 1 entries
  std::vector<AxisTap<T>> ys, xs;
  std::vector<char> y_in, x_in;
  T count = T(1);

  // False when the RoI has no samples at all (its output is 0).
  bool build(const T* roi, double spatial_scale, int64_t pooled_h,
             int64_t pooled_w, int64_t sampling_ratio, bool aligned,
             int64_t height, int64_t width, int64_t channels) {
    const Geometry<T> g = roi_geometry<T>(roi, spatial_scale, pooled_h,
                                          pooled_w, sampling_ratio, aligned);
    if (g.grid_h <= 0 || g.grid_w <= 0) return false;
    count = g.count;
    axis_taps(g.start_h, g.bin_h, pooled_h, g.grid_h, height, ys, y_in);
    axis_taps(g.start_w, g.bin_w, pooled_w, g.grid_w, width, xs, x_in);
    samples.clear();
    bin_start.assign(1, 0);
    for (int64_t ph = 0; ph < pooled_h; ++ph) {
      for (int64_t pw = 0; pw < pooled_w; ++pw) {
        for (int64_t iy = ph * g.grid_h; iy < (ph + 1) * g.grid_h; ++iy) {
          if (!y_in[iy]) continue;
          const AxisTap<T>& ty = ys[iy];
          for (int64_t ix = pw * g.grid_w; ix < (pw + 1) * g.grid_w; ++ix) {
            if (!x_in[ix]) continue;
            const AxisTap<T>& tx = xs[ix];
            Sample<T> s;
            s.offset[0] = (ty.lo * width + tx.lo) * channels;
            s.offset[1] = (ty.lo * width + tx.hi) * channels;
            s.offset[2] = (ty.hi * width + tx.lo) * channels;
            s.offset[3] = (ty.hi * width + tx.hi) * channels;
            s.weight[0] = ty.w_lo * tx.w_lo;
            s.weight[1] = ty.w_lo * tx.w_hi;
            s.weight[2] = ty.w_hi * tx.w_lo;
            s.weight[3] = ty.w_hi * tx.w_hi;
            samples.push_back(s);
          }
        }
        bin_start.push_back(static_cast<int64_t>(samples.size()));
      }
    }
    return true;
  }

 private:
  // Taps of every sample along one axis, sample i of bin p at p * grid + i.
  static void axis_taps(T start, T bin, int64_t pooled, int64_t grid,
                        int64_t size, std::vector<AxisTap<T>>& taps,
                        std::vector<char>& inside) {
    taps.resize(pooled * grid);
    inside.resize(taps.size());
    for (int64_t p = 0; p < pooled; ++p) {
      for (int64_t i = 0; i < grid; ++i) {
        const int64_t s = p * grid + i;
        const T v = sample_coord(start, bin, p, i, grid);
        inside[s] = axis_tap(v, size, taps[s]);
      }
    }
  }
};

// Sum over one bin's samples for `n` channels starting at `image` (NHWC,
// already offset to the first channel); out[j * out_stride] = sum / count.
// N is the compile-time block width (0: runtime width n).
template <typename T, int64_t N>
DETS_INLINE void gather_bin(const T* image, const Sample<T>* s, int64_t ns,
                            int64_t n, T count, T* out, int64_t out_stride) {
  constexpr int64_t kMax = N > 0 ? N : kBlock;
  const int64_t width = N > 0 ? N : n;
  T acc[kMax] = {};
  for (int64_t i = 0; i < ns; ++i) {
    const T* p0 = image + s[i].offset[0];
    const T* p1 = image + s[i].offset[1];
    const T* p2 = image + s[i].offset[2];
    const T* p3 = image + s[i].offset[3];
    const T w0 = s[i].weight[0], w1 = s[i].weight[1], w2 = s[i].weight[2],
            w3 = s[i].weight[3];
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) {
      acc[j] += w0 * p0[j] + w1 * p1[j] + w2 * p2[j] + w3 * p3[j];
    }
  }
  for (int64_t j = 0; j < width; ++j) out[j * out_stride] = acc[j] / count;
}

// Adds one bin's gradient (g[j] = grad / count for `n` channels) to the taps
// of its samples in `image` (NHWC, already offset to the first channel).
template <typename T, int64_t N>
DETS_INLINE void scatter_bin(T* image, const Sample<T>* s, int64_t ns,
                             int64_t n, const T* g) {
  const int64_t width = N > 0 ? N : n;
  for (int64_t i = 0; i < ns; ++i) {
    T* p0 = image + s[i].offset[0];
    T* p1 = image + s[i].offset[1];
    T* p2 = image + s[i].offset[2];
    T* p3 = image + s[i].offset[3];
    const T w0 = s[i].weight[0], w1 = s[i].weight[1], w2 = s[i].weight[2],
            w3 = s[i].weight[3];
    // Taps may coincide (clamped at the border), so the four updates stay
    // separate loops rather than one with possibly aliasing stores.
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) p0[j] += w0 * g[j];
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) p1[j] += w1 * g[j];
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) p2[j] += w2 * g[j];
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) p3[j] += w3 * g[j];
  }
}

// One RoI's output [C, bins] (out_k) from its samples; `image` is NHWC.
template <typename T>
DETS_INLINE void forward_roi(const T* image, const Sample<T>* samples,
                             const int64_t* bin_start, int64_t bins,
                             int64_t channels, T count, T* out_k) {
  for (int64_t bin = 0; bin < bins; ++bin) {
    const Sample<T>* s = samples + bin_start[bin];
    const int64_t ns = bin_start[bin + 1] - bin_start[bin];
    int64_t c = 0;
    for (; c + kBlock <= channels; c += kBlock) {
      gather_bin<T, kBlock>(image + c, s, ns, kBlock, count,
                            out_k + c * bins + bin, bins);
    }
    if (c < channels) {
      gather_bin<T, 0>(image + c, s, ns, channels - c, count,
                       out_k + c * bins + bin, bins);
    }
  }
}

DETS_CHANNEL_LOOPS void forward_roi_mv(const float* image,
                                       const Sample<float>* samples,
                                       const int64_t* bin_start, int64_t bins,
                                       int64_t channels, float count,
                                       float* out_k) {
  forward_roi(image, samples, bin_start, bins, channels, count, out_k);
}

DETS_CHANNEL_LOOPS void forward_roi_mv(const double* image,
                                       const Sample<double>* samples,
                                       const int64_t* bin_start, int64_t bins,
                                       int64_t channels, double count,
                                       double* out_k) {
  forward_roi(image, samples, bin_start, bins, channels, count, out_k);
}

// Adds one RoI's gradient (g_k [C, bins]) for channels [c_begin, c_end) to
// its taps in `image` (NHWC).
template <typename T>
DETS_INLINE void backward_roi(T* image, const Sample<T>* samples,
                              const int64_t* bin_start, int64_t bins,
                              int64_t c_begin, int64_t c_end, T count,
                              const T* g_k) {
  T g[kBlock];
  for (int64_t bin = 0; bin < bins; ++bin) {
    const Sample<T>* s = samples + bin_start[bin];
    const int64_t ns = bin_start[bin + 1] - bin_start[bin];
    if (ns == 0) continue;
    for (int64_t c = c_begin; c < c_end; c += kBlock) {
      const int64_t n = std::min(kBlock, c_end - c);
      for (int64_t j = 0; j < n; ++j) g[j] = g_k[(c + j) * bins + bin] / count;
      if (n == kBlock) {
        scatter_bin<T, kBlock>(image + c, s, ns, n, g);
      } else {
        scatter_bin<T, 0>(image + c, s, ns, n, g);
      }
    }
  }
}

DETS_CHANNEL_LOOPS void backward_roi_mv(float* image,
                                        const Sample<float>* samples,
                                        const int64_t* bin_start, int64_t bins,
                                        int64_t c_begin, int64_t c_end,
                                        float count, const float* g_k) {
  backward_roi(image, samples, bin_start, bins, c_begin, c_end, count, g_k);
}

DETS_CHANNEL_LOOPS void backward_roi_mv(double* image,
                                        const Sample<double>* samples,
                                        const int64_t* bin_start, int64_t bins,
                                        int64_t c_begin, int64_t c_end,
                                        double count, const double* g_k) {
  backward_roi(image, samples, bin_start, bins, c_begin, c_end, count, g_k);
}

template <typename T>
void forward_impl(const at::Tensor& nhwc, const at::Tensor& rois,
                  at::Tensor& out, double spatial_scale, int64_t pooled_h,
                  int64_t pooled_w, int64_t sampling_ratio, bool aligned) {
  const int64_t height = nhwc.size(1), width = nhwc.size(2),
                channels = nhwc.size(3);
  const int64_t bins = pooled_h * pooled_w;
  const int64_t image_size = height * width * channels;
  const T* feat = nhwc.data_ptr<T>();
  const T* roi_data = rois.data_ptr<T>();
  T* out_data = out.data_ptr<T>();
  at::parallel_for(0, rois.size(0), 1, [&](int64_t begin, int64_t end) {
    RoiSamples<T> rs;
    for (int64_t k = begin; k < end; ++k) {
      const T* roi = roi_data + k * 5;
      T* out_k = out_data + k * channels * bins;
      if (!rs.build(roi, spatial_scale, pooled_h, pooled_w, sampling_ratio,
                    aligned, height, width, channels)) {
        std::fill(out_k, out_k + channels * bins, T(0));
        continue;
      }
      const T* image = feat + static_cast<int64_t>(roi[0]) * image_size;
      forward_roi_mv(image, rs.samples.data(), rs.bin_start.data(), bins,
                     channels, rs.count, out_k);
    }
  });
}

template <typename T>
void backward_impl(const at::Tensor& grad, const at::Tensor& rois,
                   at::Tensor& grad_nhwc, double spatial_scale,
                   int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio,
                   bool aligned) {
  const int64_t height = grad_nhwc.size(1), width = grad_nhwc.size(2),
                channels = grad_nhwc.size(3);
  const int64_t bins = pooled_h * pooled_w;
  const int64_t image_size = height * width * channels;
  const int64_t num_rois = rois.size(0);
  const int64_t blocks = (channels + kBlock - 1) / kBlock;
  const T* g_data = grad.data_ptr<T>();
  const T* roi_data = rois.data_ptr<T>();
  T* out = grad_nhwc.data_ptr<T>();
  at::parallel_for(0, blocks, 1, [&](int64_t block_begin, int64_t block_end) {
    const int64_t c_begin = block_begin * kBlock;
    const int64_t c_end = std::min(block_end * kBlock, channels);
    RoiSamples<T> rs;
    for (int64_t k = 0; k < num_rois; ++k) {
      const T* roi = roi_data + k * 5;
      if (!rs.build(roi, spatial_scale, pooled_h, pooled_w, sampling_ratio,
                    aligned, height, width, channels)) {
        continue;
      }
      T* image = out + static_cast<int64_t>(roi[0]) * image_size;
      backward_roi_mv(image, rs.samples.data(), rs.bin_start.data(), bins,
                      c_begin, c_end, rs.count, g_data + k * channels * bins);
    }
  });
}

// dst[b] = src[b]^T for `batch` row-major [rows, cols] matrices. Tiles pass
// through a small padded buffer so every source and destination row segment
// is touched once, contiguously: the large power-of-two strides of feature
// maps would otherwise make the strided side thrash one cache set. (ATen's
// generic permuted copy is several times slower for NCHW <-> NHWC.)
template <typename T>
void batched_transpose(const T* src, T* dst, int64_t batch, int64_t rows,
                       int64_t cols) {
  constexpr int64_t kTile = 32;
  const int64_t col_tiles = (cols + kTile - 1) / kTile;
  at::parallel_for(0, batch * col_tiles, 1, [&](int64_t begin, int64_t end) {
    T tile[kTile][kTile + 1];
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / col_tiles;
      const int64_t j0 = (t % col_tiles) * kTile;
      const int64_t nj = std::min(kTile, cols - j0);
      const T* s = src + b * rows * cols + j0;
      T* d = dst + b * rows * cols + j0 * rows;
      for (int64_t i0 = 0; i0 < rows; i0 += kTile) {
        const int64_t ni = std::min(kTile, rows - i0);
        for (int64_t i = 0; i < ni; ++i) {
          for (int64_t j = 0; j < nj; ++j) tile[i][j] = s[(i0 + i) * cols + j];
        }
        for (int64_t j = 0; j < nj; ++j) {
          for (int64_t i = 0; i < ni; ++i) d[j * rows + i0 + i] = tile[i][j];
        }
      }
    }
  });
}

// input [N, C, H, W] as a contiguous [N, H, W, C] tensor (a view when the
// input is channels-last already).
at::Tensor to_nhwc(const at::Tensor& input) {
  const at::Tensor view = input.permute({0, 2, 3, 1});
  if (view.is_contiguous()) return view;
  if (!input.is_contiguous()) return view.contiguous();
  at::Tensor out = at::empty(view.sizes(), input.options());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_align_to_nhwc", [&] {
    batched_transpose(input.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                      input.size(0), input.size(1),
                      input.size(2) * input.size(3));
  });
  return out;
}

// nhwc [N, H, W, C] (contiguous) as a contiguous [N, C, H, W] tensor.
at::Tensor from_nhwc(const at::Tensor& nhwc) {
  at::Tensor out = at::empty(
      {nhwc.size(0), nhwc.size(3), nhwc.size(1), nhwc.size(2)}, nhwc.options());
  AT_DISPATCH_FLOATING_TYPES(nhwc.scalar_type(), "roi_align_from_nhwc", [&] {
    batched_transpose(nhwc.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                      nhwc.size(0), nhwc.size(1) * nhwc.size(2), nhwc.size(3));
  });
  return out;
}

// float16 and bfloat16 run through the float32 kernels and are rounded once
// at the end (torchvision's CPU kernels also take float16).
bool is_half(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}

at::Tensor roi_align_cpu(const at::Tensor& input, const at::Tensor& rois,
                         double spatial_scale, int64_t pooled_h,
                         int64_t pooled_w, int64_t sampling_ratio,
                         bool aligned) {
  roi_checks::check_roi_align_forward(input, rois, pooled_h, pooled_w);
  if (is_half(input)) {
    return roi_align_cpu(input.to(at::kFloat), rois.to(at::kFloat),
                         spatial_scale, pooled_h, pooled_w, sampling_ratio,
                         aligned)
        .to(input.scalar_type());
  }
  at::Tensor out = at::empty({rois.size(0), input.size(1), pooled_h, pooled_w},
                             input.options());
  if (out.numel() == 0) return out.zero_();
  const at::Tensor nhwc = to_nhwc(input);
  const at::Tensor r = rois.contiguous();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_align_cpu", [&] {
    forward_impl<scalar_t>(nhwc, r, out, spatial_scale, pooled_h, pooled_w,
                           sampling_ratio, aligned);
  });
  return out;
}

at::Tensor roi_align_backward_cpu(const at::Tensor& grad,
                                  const at::Tensor& rois, double spatial_scale,
                                  int64_t pooled_h, int64_t pooled_w,
                                  int64_t batch_size, int64_t channels,
                                  int64_t height, int64_t width,
                                  int64_t sampling_ratio, bool aligned) {
  roi_checks::check_roi_align_backward(grad, rois, pooled_h, pooled_w,
                                       batch_size, channels, height, width);
  if (is_half(grad)) {
    return roi_align_backward_cpu(grad.to(at::kFloat), rois.to(at::kFloat),
                                  spatial_scale, pooled_h, pooled_w, batch_size,
                                  channels, height, width, sampling_ratio,
                                  aligned)
        .to(grad.scalar_type());
  }
  at::Tensor grad_nhwc =
      at::zeros({batch_size, height, width, channels}, grad.options());
  if (grad.numel() > 0 && grad_nhwc.numel() > 0) {
    const at::Tensor g = grad.contiguous();
    const at::Tensor r = rois.contiguous();
    AT_DISPATCH_FLOATING_TYPES(
        grad.scalar_type(), "roi_align_backward_cpu", [&] {
          backward_impl<scalar_t>(g, r, grad_nhwc, spatial_scale, pooled_h,
                                  pooled_w, sampling_ratio, aligned);
        });
  }
  return from_nhwc(grad_nhwc);
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CPU, m) {
  m.impl("roi_align", roi_align_cpu);
  m.impl("_roi_align_backward", roi_align_backward_cpu);
}

}  // namespace dets
