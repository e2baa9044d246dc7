// RoIPool on the CPU.
//
// Forward: the feature map is read channels-last (one copy when it is not
// already), so the max over a bin's pixels runs as a vectorised compare-select
// across channels (cloned per instruction set, isa_clones.h); threads take
// RoIs, and each RoI's [bins, C] results are transposed into the output in
// register blocks. Ties keep the first pixel in row-major order (strict '>'),
// NaN pixels never win and the running maximum starts at -FLT_MAX, exactly as
// torchvision's loop.
//
// Backward: deterministic. Threads own disjoint (image, channel block) slices
// of the gradient, zero them and visit their RoIs in increasing index, bins in
// row-major order: every input gradient is the same ordered sum torchvision's
// sequential scatter computes, bit for bit, whatever the thread count.
//
// The large fresh buffers (output, argmax, input gradient, channels-last copy)
// are advised onto huge pages (page_advice.h): at these sizes the page faults
// of first writes otherwise cost as much as the pooling.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <utility>
#include <vector>

#include "isa_clones.h"
#include "page_advice.h"
#include "roi_checks.h"

namespace dets {
namespace {

// Scaled corners are clamped to +-2^40 so the integer bin arithmetic cannot
// overflow; any real feature map is far smaller.
constexpr double kCoordLimit = 1099511627776.0;

template <typename T>
struct RoIBins {
  int64_t batch;
  bool valid;  // every scaled corner finite; otherwise the RoI pools nothing
  int64_t start_h, start_w;
  T bin_h, bin_w;
};

template <typename T>
RoIBins<T> roi_bins(const T* roi, T scale, int64_t pooled_h, int64_t pooled_w) {
  RoIBins<T> r;
  r.batch = static_cast<int64_t>(roi[0]);
  r.valid = true;
  int64_t corner[4];
  for (int i = 0; i < 4; ++i) {
    const T v = roi[i + 1] * scale;
    if (!std::isfinite(v)) {
      r.valid = false;
      corner[i] = 0;
      continue;
    }
    // std::round rounds halves away from zero, like torchvision's round().
    const double rounded = std::round(v);
    corner[i] = static_cast<int64_t>(
        std::min(std::max(rounded, -kCoordLimit), kCoordLimit));
  }
  // Legacy Caffe "+1" size, with malformed RoIs forced to 1 x 1.
  const int64_t roi_w = std::max<int64_t>(corner[2] - corner[0] + 1, 1);
  const int64_t roi_h = std::max<int64_t>(corner[3] - corner[1] + 1, 1);
  r.start_w = corner[0];
  r.start_h = corner[1];
  r.bin_h = static_cast<T>(roi_h) / static_cast<T>(pooled_h);
  r.bin_w = static_cast<T>(roi_w) / static_cast<T>(pooled_w);
  return r;
}

// [lo, hi) of bin p along one axis, clipped to [0, size).
template <typename T>
inline void bin_range(int64_t p, T bin, int64_t start, int64_t size,
                      int64_t* lo, int64_t* hi) {
  const int64_t a =
      static_cast<int64_t>(std::floor(static_cast<T>(p) * bin)) + start;
  const int64_t b =
      static_cast<int64_t>(std::ceil(static_cast<T>(p + 1) * bin)) + start;
  *lo = std::min(std::max<int64_t>(a, 0), size);
  *hi = std::min(std::max<int64_t>(b, 0), size);
}

// Runs f(begin, end) over [0, n) in blocks that the pool's threads take from a
// shared counter, so a thread the OS deschedules on a busy machine delays only
// the block it holds rather than a fixed half of the work. Each block is
// computed the same way whichever thread takes it: results do not depend on
// the schedule.
template <typename F>
void parallel_blocks(int64_t n, int64_t block, const F& f) {
  const int64_t blocks = (n + block - 1) / block;
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), blocks);
  if (threads <= 1 || at::in_parallel_region()) {
    f(0, n);
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    for (int64_t b = next.fetch_add(1); b < blocks; b = next.fetch_add(1)) {
      f(b * block, std::min(n, (b + 1) * block));
    }
  });
}

// Bytes per vector of the channel loops: one AVX register (two SSE2 ones in
// the baseline clone, where GCC splits the generic vectors).
constexpr int64_t kVectorBytes = 32;

// Channels pooled together (128 bytes): their running maxima (and argmax
// offsets) stay in vector registers while the bin's pixels stream by.
template <typename T>
constexpr int64_t kChunk = 128 / sizeof(T);

// Max over pixels [h0, h1) x [w0, w1) of `count` <= kChunk<T> channels
// starting at x_c (channels-last, `channels` apart per pixel); `where` (only
// with kArgmax) gets the taken pixel's plane offset or -1.
template <typename T, bool kArgmax>
DETS_INLINE void bin_max(const T* x_c, int64_t width, int64_t channels,
                         int64_t h0, int64_t h1, int64_t w0, int64_t w1,
                         int64_t count, T* best, int32_t* where) {
  for (int64_t j = 0; j < count; ++j) {
    best[j] = static_cast<T>(-FLT_MAX);
    if constexpr (kArgmax) {
      where[j] = -1;
    }
  }
  for (int64_t h = h0; h < h1; ++h) {
    for (int64_t w = w0; w < w1; ++w) {
      const T* px = x_c + (h * width + w) * channels;
      const int32_t offset = static_cast<int32_t>(h * width + w);
      for (int64_t j = 0; j < count; ++j) {
        if (px[j] > best[j]) {
          best[j] = px[j];
          if constexpr (kArgmax) {
            where[j] = offset;
          }
        }
      }
    }
  }
}

#if defined(__GNUC__)
// Generic vectors of kVectorBytes, and for T an integer lane type of its
// width for the compare masks.
template <typename E>
struct Vec {
  typedef E V __attribute__((vector_size(kVectorBytes)));
};
template <typename T>
struct Mask;
template <>
struct Mask<float> {
  typedef int32_t I;
};
template <>
struct Mask<double> {
  typedef int64_t I;
};

// bin_max for exactly kChunk<T> channels, as vector compare-selects.
template <typename T, bool kArgmax>
DETS_INLINE void bin_max_chunk(const T* x_c, int64_t width, int64_t channels,
                               int64_t h0, int64_t h1, int64_t w0, int64_t w1,
                               T* best_out, int32_t* where_out) {
  using I = typename Mask<T>::I;
  using V = typename Vec<T>::V;
  using M = typename Vec<I>::V;
  constexpr int kLanes = kVectorBytes / sizeof(T);
  constexpr int kVectors = kChunk<T> / kLanes;
  V best[kVectors];
  M where[kVectors];
  for (int j = 0; j < kVectors; ++j) {
    best[j] = V{} - static_cast<T>(FLT_MAX);
    where[j] = M{} - I{1};
  }
  for (int64_t h = h0; h < h1; ++h) {
    for (int64_t w = w0; w < w1; ++w) {
      const T* px = x_c + (h * width + w) * channels;
      const M offset = M{} + static_cast<I>(h * width + w);
      for (int j = 0; j < kVectors; ++j) {
        V v;
        __builtin_memcpy(&v, px + j * kLanes, sizeof(V));
        const M greater = v > best[j];  // all-ones lanes where strictly greater
        best[j] = greater ? v : best[j];
        if constexpr (kArgmax) {
          where[j] = greater ? offset : where[j];
        }
      }
    }
  }
  __builtin_memcpy(best_out, best, sizeof(best));
  if constexpr (kArgmax) {
    typedef int32_t W __attribute__((vector_size(kLanes * sizeof(int32_t))));
    for (int j = 0; j < kVectors; ++j) {
      const W narrow = __builtin_convertvector(where[j], W);
      __builtin_memcpy(where_out + j * kLanes, &narrow, sizeof(W));
    }
  }
}

// One step of an in-register transpose of kLanes rows: swaps bit B of the
// row index with bit B of the column index between rows a and b (= a + B).
template <typename E, int B, size_t... J>
DETS_INLINE void swap_index_bit(typename Vec<E>::V& a, typename Vec<E>::V& b,
                                std::index_sequence<J...>) {
  constexpr int64_t kLanes = sizeof...(J);
  const typename Vec<E>::V lo =
      __builtin_shufflevector(a, b, ((J & B) ? kLanes + J - B : J)...);
  const typename Vec<E>::V hi =
      __builtin_shufflevector(a, b, ((J & B) ? kLanes + J : J + B)...);
  a = lo;
  b = hi;
}

template <typename E, int B>
DETS_INLINE void swap_index_bits(typename Vec<E>::V* rows) {
  constexpr int64_t kLanes = kVectorBytes / sizeof(E);
  if constexpr (B < kLanes) {
#pragma GCC unroll 8
    for (int64_t i = 0; i < kLanes; ++i) {
      if ((i & B) == 0) {
        swap_index_bit<E, B>(rows[i], rows[i + B],
                             std::make_index_sequence<kLanes>());
      }
    }
    swap_index_bits<E, 2 * B>(rows);
  }
}

// dst[c * dst_stride + r] = src[r * src_stride + c] for a square block of
// kLanes x kLanes elements.
template <typename E>
DETS_INLINE void transpose_block(const E* src, int64_t src_stride, E* dst,
                                 int64_t dst_stride) {
  constexpr int64_t kLanes = kVectorBytes / sizeof(E);
  typename Vec<E>::V rows[kLanes];
#pragma GCC unroll 8
  for (int64_t i = 0; i < kLanes; ++i) {
    __builtin_memcpy(&rows[i], src + i * src_stride, kVectorBytes);
  }
  swap_index_bits<E, 1>(rows);
#pragma GCC unroll 8
  for (int64_t i = 0; i < kLanes; ++i) {
    __builtin_memcpy(dst + i * dst_stride, &rows[i], kVectorBytes);
  }
}
#endif

// dst[c * dst_stride + r] = src[r * src_stride + c] for r < rows, c < cols,
// in register-sized square blocks where they fit.
template <typename E>
DETS_INLINE void transpose(const E* src, int64_t rows, int64_t cols,
                           int64_t src_stride, E* dst, int64_t dst_stride) {
  int64_t c0 = 0;
#if defined(__GNUC__)
  constexpr int64_t kLanes = kVectorBytes / sizeof(E);
  const int64_t block_rows = rows / kLanes * kLanes;
  for (; c0 + kLanes <= cols; c0 += kLanes) {
    for (int64_t r0 = 0; r0 < block_rows; r0 += kLanes) {
      transpose_block(src + r0 * src_stride + c0, src_stride,
                      dst + c0 * dst_stride + r0, dst_stride);
    }
    for (int64_t r = block_rows; r < rows; ++r) {
      for (int64_t c = c0; c < c0 + kLanes; ++c) {
        dst[c * dst_stride + r] = src[r * src_stride + c];
      }
    }
  }
#endif
  for (; c0 < cols; ++c0) {
    for (int64_t r = 0; r < rows; ++r) {
      dst[c0 * dst_stride + r] = src[r * src_stride + c0];
    }
  }
}

DETS_CHANNEL_LOOPS void transpose_mv(const float* src, int64_t rows,
                                     int64_t cols, int64_t src_stride,
                                     float* dst, int64_t dst_stride) {
  transpose(src, rows, cols, src_stride, dst, dst_stride);
}

DETS_CHANNEL_LOOPS void transpose_mv(const double* src, int64_t rows,
                                     int64_t cols, int64_t src_stride,
                                     double* dst, int64_t dst_stride) {
  transpose(src, rows, cols, src_stride, dst, dst_stride);
}

// Pixels per task of the channels-last copy: 64 KB of float32 at 256 channels.
constexpr int64_t kPixelsPerTask = 64;

// nhwc = input for a contiguous NCHW input: each image's [C, H * W] matrix
// transposed in register blocks, threads taking pixel ranges (torch's
// generic strided copy moves this permutation element by element).
template <typename T>
void to_channels_last(const at::Tensor& input, at::Tensor& nhwc) {
  const int64_t channels = input.size(1);
  const int64_t pixels = input.size(2) * input.size(3);
  const int64_t tasks = (pixels + kPixelsPerTask - 1) / kPixelsPerTask;
  const T* src = input.data_ptr<T>();
  T* dst = nhwc.data_ptr<T>();
  at::parallel_for(
      0, input.size(0) * tasks, 1, [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
          const int64_t n = t / tasks;
          const int64_t p0 = (t % tasks) * kPixelsPerTask;
          const int64_t p1 = std::min(pixels, p0 + kPixelsPerTask);
          transpose_mv(src + n * channels * pixels + p0, channels, p1 - p0,
                       pixels, dst + (n * pixels + p0) * channels, channels);
        }
      });
}

// One RoI's pooling geometry: its bins' clipped [lo, hi) pixel ranges.
struct RoIWindows {
  const int64_t* hs;  // 2 * pooled_h
  const int64_t* ws;  // 2 * pooled_w
  int64_t pooled_h, pooled_w;
};

// Pools one valid RoI of image x_n ([H, W, C] channels-last) into out_k
// ([C, PH, PW]) and, with kArgmax, arg_k; tile_v/tile_a are [PH * PW, C]
// scratch. Bin after bin, every channel chunk of the bin's pixels: each
// pixel's channel row is then read front to back (prefetcher-friendly), and
// the tile is transposed into the output at the end.
template <typename T, bool kArgmax>
DETS_INLINE void pool_roi(const T* x_n, int64_t width, int64_t channels,
                          const RoIWindows& roi, T* tile_v, int32_t* tile_a,
                          T* out_k, int32_t* arg_k) {
  constexpr int64_t chunk = kChunk<T>;
  for (int64_t ph = 0; ph < roi.pooled_h; ++ph) {
    const int64_t h0 = roi.hs[2 * ph], h1 = roi.hs[2 * ph + 1];
    for (int64_t pw = 0; pw < roi.pooled_w; ++pw) {
      const int64_t w0 = roi.ws[2 * pw], w1 = roi.ws[2 * pw + 1];
      const int64_t bin = ph * roi.pooled_w + pw;
      T* tv = tile_v + bin * channels;
      int32_t* ta = kArgmax ? tile_a + bin * channels : nullptr;
      if (h1 <= h0 || w1 <= w0) {
        std::fill(tv, tv + channels, T(0));
        if constexpr (kArgmax) {
          std::fill(ta, ta + channels, -1);
        }
        continue;
      }
      int64_t c0 = 0;
#if defined(__GNUC__)
      for (; c0 + chunk <= channels; c0 += chunk) {
        bin_max_chunk<T, kArgmax>(x_n + c0, width, channels, h0, h1, w0, w1,
                                  tv + c0, kArgmax ? ta + c0 : nullptr);
      }
#endif
      for (; c0 < channels; c0 += chunk) {
        bin_max<T, kArgmax>(x_n + c0, width, channels, h0, h1, w0, w1,
                            std::min(chunk, channels - c0), tv + c0,
                            kArgmax ? ta + c0 : nullptr);
      }
    }
  }
  const int64_t bins = roi.pooled_h * roi.pooled_w;
  transpose(tile_v, bins, channels, channels, out_k, bins);
  if constexpr (kArgmax) {
    transpose(tile_a, bins, channels, channels, arg_k, bins);
  }
}

// pool_roi with or without the argmax, as arg_k asks; each clone below gets
// both variants inlined.
template <typename T>
DETS_INLINE void pool_roi_any(const T* x_n, int64_t width, int64_t channels,
                              const RoIWindows& roi, T* tile_v, int32_t* tile_a,
                              T* out_k, int32_t* arg_k) {
  if (arg_k != nullptr) {
    pool_roi<T, true>(x_n, width, channels, roi, tile_v, tile_a, out_k, arg_k);
  } else {
    pool_roi<T, false>(x_n, width, channels, roi, tile_v, tile_a, out_k, arg_k);
  }
}

DETS_CHANNEL_LOOPS void pool_roi_mv(const float* x_n, int64_t width,
                                    int64_t channels, const RoIWindows& roi,
                                    float* tile_v, int32_t* tile_a,
                                    float* out_k, int32_t* arg_k) {
  pool_roi_any(x_n, width, channels, roi, tile_v, tile_a, out_k, arg_k);
}

DETS_CHANNEL_LOOPS void pool_roi_mv(const double* x_n, int64_t width,
                                    int64_t channels, const RoIWindows& roi,
                                    double* tile_v, int32_t* tile_a,
                                    double* out_k, int32_t* arg_k) {
  pool_roi_any(x_n, width, channels, roi, tile_v, tile_a, out_k, arg_k);
}

template <typename T>
void forward_impl(const at::Tensor& input, const at::Tensor& rois, T scale,
                  int64_t pooled_h, int64_t pooled_w, at::Tensor& output,
                  at::Tensor& argmax) {
  const int64_t channels = input.size(1);
  const int64_t height = input.size(2);
  const int64_t width = input.size(3);
  const int64_t bins = pooled_h * pooled_w;
  const T* x = input.data_ptr<T>();  // channels-last: [N, H, W, C]
  const T* r = rois.data_ptr<T>();
  T* out = output.data_ptr<T>();
  int32_t* arg = argmax.numel() > 0 ? argmax.data_ptr<int32_t>() : nullptr;

  parallel_blocks(rois.size(0), 4, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> hs(2 * pooled_h), ws(2 * pooled_w);
    std::vector<T> tile_v(bins * channels);
    std::vector<int32_t> tile_a(arg != nullptr ? bins * channels : 0);
    const RoIWindows windows{hs.data(), ws.data(), pooled_h, pooled_w};
    for (int64_t k = begin; k < end; ++k) {
      const RoIBins<T> roi = roi_bins(r + 5 * k, scale, pooled_h, pooled_w);
      T* out_k = out + k * channels * bins;
      int32_t* arg_k = arg != nullptr ? arg + k * channels * bins : nullptr;
      if (!roi.valid) {
        std::fill(out_k, out_k + channels * bins, T(0));
        if (arg_k != nullptr) {
          std::fill(arg_k, arg_k + channels * bins, -1);
        }
        continue;
      }
      for (int64_t ph = 0; ph < pooled_h; ++ph) {
        bin_range(ph, roi.bin_h, roi.start_h, height, &hs[2 * ph],
                  &hs[2 * ph + 1]);
      }
      for (int64_t pw = 0; pw < pooled_w; ++pw) {
        bin_range(pw, roi.bin_w, roi.start_w, width, &ws[2 * pw],
                  &ws[2 * pw + 1]);
      }
      pool_roi_mv(x + roi.batch * height * width * channels, width, channels,
                  windows, tile_v.data(), tile_a.data(), out_k, arg_k);
    }
  });
}

// float16 and bfloat16 run through the float32 kernels (torchvision's CPU
// kernels also take float16).
bool is_half(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}

std::tuple<at::Tensor, at::Tensor> roi_pool_cpu(
    const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
    int64_t pooled_height, int64_t pooled_width, bool with_argmax) {
  roi_checks::check_roi_pool_forward(input, rois, pooled_height, pooled_width);
  if (is_half(input)) {
    // Max pooling is exact in float32: only the output is rounded back.
    auto [output, argmax] =
        roi_pool_cpu(input.to(at::kFloat), rois.to(at::kFloat), spatial_scale,
                     pooled_height, pooled_width, with_argmax);
    return {output.to(input.scalar_type()), argmax};
  }
  const int64_t num_rois = rois.size(0);
  const int64_t channels = input.size(1);
  at::Tensor output = at::empty(
      {num_rois, channels, pooled_height, pooled_width}, input.options());
  at::Tensor argmax =
      with_argmax ? at::empty_like(output, output.options().dtype(at::kInt))
                  : at::empty({0}, output.options().dtype(at::kInt));
  advise_huge_pages(output);
  advise_huge_pages(argmax);
  if (output.numel() == 0) {
    return {output, argmax};
  }
  const at::Tensor rois_c = rois.contiguous();
  at::Tensor x = input;
  if (!input.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    x = at::empty(input.sizes(), input.options().memory_format(
                                     at::MemoryFormat::ChannelsLast));
    advise_huge_pages(x);
    if (input.is_contiguous()) {
      AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_pool_nhwc",
                                 [&] { to_channels_last<scalar_t>(input, x); });
    } else {
      x.copy_(input);
    }
  }
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_pool_cpu", [&] {
    forward_impl<scalar_t>(x, rois_c, static_cast<scalar_t>(spatial_scale),
                           pooled_height, pooled_width, output, argmax);
  });
  return {output, argmax};
}

template <typename T>
void backward_impl(const at::Tensor& grad, const at::Tensor& rois,
                   const at::Tensor& argmax, at::Tensor& grad_input) {
  const int64_t num_rois = grad.size(0);
  const int64_t channels = grad.size(1);
  const int64_t pooled_h = grad.size(2);
  const int64_t pooled_w = grad.size(3);
  const int64_t bins = pooled_h * pooled_w;
  const int64_t batch_size = grad_input.size(0);
  const int64_t plane = grad_input.size(2) * grad_input.size(3);
  const int64_t gs0 = grad.stride(0), gs1 = grad.stride(1),
                gs2 = grad.stride(2), gs3 = grad.stride(3);
  const T* g = grad.data_ptr<T>();
  const T* r = rois.data_ptr<T>();
  const int32_t* arg = argmax.data_ptr<int32_t>();
  T* gin = grad_input.data_ptr<T>();

  // RoIs grouped by image, increasing index within each image (counting sort).
  std::vector<int64_t> first(batch_size + 1, 0);
  for (int64_t k = 0; k < num_rois; ++k) {
    ++first[static_cast<int64_t>(r[5 * k]) + 1];
  }
  for (int64_t n = 0; n < batch_size; ++n) {
    first[n + 1] += first[n];
  }
  std::vector<int64_t> order(num_rois);
  {
    std::vector<int64_t> fill(first.begin(), first.end() - 1);
    for (int64_t k = 0; k < num_rois; ++k) {
      order[fill[static_cast<int64_t>(r[5 * k])]++] = k;
    }
  }

  // A block of channel planes small enough to stay in L2 while every RoI of
  // the image scatters into it.
  const int64_t block = std::max<int64_t>(
      1, std::min<int64_t>(channels, (int64_t{128} << 10) / sizeof(T) / plane));
  const int64_t blocks_per_image = (channels + block - 1) / block;
  parallel_blocks(batch_size * blocks_per_image, 1,
                  [&](int64_t begin, int64_t end) {
                    for (int64_t t = begin; t < end; ++t) {
                      const int64_t n = t / blocks_per_image;
                      const int64_t c0 = (t % blocks_per_image) * block;
                      const int64_t c1 = std::min(channels, c0 + block);
                      // The owner zeroes its planes: first touch by the thread
                      // that sums into them, while they are about to be in its
                      // cache anyway.
                      T* gin_block = gin + (n * channels + c0) * plane;
                      std::fill(gin_block, gin_block + (c1 - c0) * plane, T(0));
                      for (int64_t i = first[n]; i < first[n + 1]; ++i) {
                        const int64_t k = order[i];
                        for (int64_t c = c0; c < c1; ++c) {
                          const int32_t* a = arg + (k * channels + c) * bins;
                          const T* g_kc = g + k * gs0 + c * gs1;
                          T* gin_nc = gin + (n * channels + c) * plane;
                          for (int64_t ph = 0; ph < pooled_h; ++ph) {
                            for (int64_t pw = 0; pw < pooled_w; ++pw) {
                              const int32_t offset = a[ph * pooled_w + pw];
                              if (offset >= 0) {
                                gin_nc[offset] += g_kc[ph * gs2 + pw * gs3];
                              }
                            }
                          }
                        }
                      }
                    }
                  });
}

at::Tensor roi_pool_backward_cpu(const at::Tensor& grad, const at::Tensor& rois,
                                 const at::Tensor& argmax, int64_t batch_size,
                                 int64_t channels, int64_t height,
                                 int64_t width) {
  roi_checks::check_roi_pool_backward(grad, rois, argmax, batch_size, channels,
                                      height, width);
  if (is_half(grad)) {
    return roi_pool_backward_cpu(grad.to(at::kFloat), rois.to(at::kFloat),
                                 argmax, batch_size, channels, height, width)
        .to(grad.scalar_type());
  }
  if (grad.numel() == 0) {
    return at::zeros({batch_size, channels, height, width}, grad.options());
  }
  // Not zeroed here: backward_impl zeroes each block of planes in parallel.
  at::Tensor grad_input =
      at::empty({batch_size, channels, height, width}, grad.options());
  if (grad_input.numel() == 0) {
    return grad_input;
  }
  advise_huge_pages(grad_input);
  const at::Tensor rois_c = rois.contiguous();
  const at::Tensor argmax_c = argmax.contiguous();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "roi_pool_backward_cpu", [&] {
    backward_impl<scalar_t>(grad, rois_c, argmax_c, grad_input);
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CPU, m) {
  m.impl("roi_pool", roi_pool_cpu);
  m.impl("_roi_pool_backward", roi_pool_backward_cpu);
}

}  // namespace dets
