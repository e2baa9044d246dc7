// RoIPool on the CPU.
//
// Forward: the feature map is read channels-last (one copy when it is not
// already), so the max over a bin's pixels runs as a vectorised compare-select
// across channels; threads take RoIs. Ties keep the first pixel in row-major
// order (strict '>'), NaN pixels never win and the running maximum starts at
// -FLT_MAX, exactly as torchvision's loop.
//
// Backward: deterministic. Threads own disjoint (image, channel block) slices
// of the gradient, and each slice visits its RoIs in increasing index, bins in
// row-major order: every input gradient is the same ordered sum torchvision's
// sequential scatter computes, bit for bit, whatever the thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <vector>

#include "huge_pages.h"
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
RoIBins<T> roi_bins(const T* roi, T scale, int64_t pooled_h,
                    int64_t pooled_w) {
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

void check_batch_indices(const at::Tensor& rois, int64_t batch_size) {
  AT_DISPATCH_FLOATING_TYPES(rois.scalar_type(), "roi_pool_check_rois", [&] {
    const scalar_t* r = rois.data_ptr<scalar_t>();
    for (int64_t k = 0; k < rois.size(0); ++k) {
      const scalar_t b = r[5 * k];
      TORCH_CHECK(b >= 0 && b < batch_size && b == std::floor(b),
                  "roi_pool: rois[", k, ", 0] = ", b,
                  " is not a batch index in [0, ", batch_size, ")");
    }
  });
}

// Channels pooled together (128 bytes): their running maxima stay in vector
// registers while the bin's pixels stream by.
template <typename T>
constexpr int64_t kChunk = 128 / sizeof(T);

// Max over pixels [h0, h1) x [w0, w1) of `count` <= kChunk<T> channels
// starting at x_c (channels-last, `channels` apart per pixel).
template <typename T>
void bin_max(const T* x_c, int64_t width, int64_t channels, int64_t h0,
             int64_t h1, int64_t w0, int64_t w1, int64_t count, T* best,
             int32_t* where) {
  for (int64_t j = 0; j < count; ++j) {
    best[j] = static_cast<T>(-FLT_MAX);
    where[j] = -1;
  }
  for (int64_t h = h0; h < h1; ++h) {
    for (int64_t w = w0; w < w1; ++w) {
      const T* px = x_c + (h * width + w) * channels;
      const int32_t offset = static_cast<int32_t>(h * width + w);
      for (int64_t j = 0; j < count; ++j) {
        if (px[j] > best[j]) {
          best[j] = px[j];
          where[j] = offset;
        }
      }
    }
  }
}

#if defined(__GNUC__)
// The same for exactly kChunk<T> channels, in 16-byte vectors (SSE2, NEON)
// with an integer lane type of the element's width for the compare masks.
template <typename T>
struct Lanes;
template <>
struct Lanes<float> {
  typedef int32_t I;
  typedef float V __attribute__((vector_size(16)));
  typedef int32_t M __attribute__((vector_size(16)));
};
template <>
struct Lanes<double> {
  typedef int64_t I;
  typedef double V __attribute__((vector_size(16)));
  typedef int64_t M __attribute__((vector_size(16)));
};

template <typename T>
void bin_max_chunk(const T* x_c, int64_t width, int64_t channels, int64_t h0,
                   int64_t h1, int64_t w0, int64_t w1, T* best_out,
                   int32_t* where_out) {
  using V = typename Lanes<T>::V;
  using M = typename Lanes<T>::M;
  using I = typename Lanes<T>::I;
  constexpr int kLanes = 16 / sizeof(T);
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
        best[j] = (V)(((M)v & greater) | ((M)best[j] & ~greater));
        where[j] = (offset & greater) | (where[j] & ~greater);
      }
    }
  }
  for (int j = 0; j < kVectors; ++j) {
    for (int l = 0; l < kLanes; ++l) {
      best_out[j * kLanes + l] = best[j][l];
      where_out[j * kLanes + l] = static_cast<int32_t>(where[j][l]);
    }
  }
}
#endif

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
  constexpr int64_t chunk = kChunk<T>;

  parallel_blocks(rois.size(0), 4, [&](int64_t begin, int64_t end) {
    // Bin after bin, every channel chunk of the bin's pixels: each pixel's
    // channel row is then read front to back (prefetcher-friendly), and the
    // [PH * PW, C] results are transposed into output's [C, PH * PW] per RoI.
    std::vector<int64_t> hs(2 * pooled_h), ws(2 * pooled_w);
    std::vector<T> tile_v(bins * channels);
    std::vector<int32_t> tile_a(bins * channels);
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
      const T* x_n = x + roi.batch * height * width * channels;
      for (int64_t ph = 0; ph < pooled_h; ++ph) {
        const int64_t h0 = hs[2 * ph], h1 = hs[2 * ph + 1];
        for (int64_t pw = 0; pw < pooled_w; ++pw) {
          const int64_t w0 = ws[2 * pw], w1 = ws[2 * pw + 1];
          T* tv = tile_v.data() + (ph * pooled_w + pw) * channels;
          int32_t* ta = tile_a.data() + (ph * pooled_w + pw) * channels;
          if (h1 <= h0 || w1 <= w0) {
            std::fill(tv, tv + channels, T(0));
            std::fill(ta, ta + channels, -1);
            continue;
          }
          int64_t c0 = 0;
#if defined(__GNUC__)
          for (; c0 + chunk <= channels; c0 += chunk) {
            bin_max_chunk<T>(x_n + c0, width, channels, h0, h1, w0, w1,
                             tv + c0, ta + c0);
          }
#endif
          for (; c0 < channels; c0 += chunk) {
            bin_max<T>(x_n + c0, width, channels, h0, h1, w0, w1,
                       std::min(chunk, channels - c0), tv + c0, ta + c0);
          }
        }
      }
      // Blocks of 16 channels: contiguous tile reads, 16 output rows written.
      for (int64_t c0 = 0; c0 < channels; c0 += 16) {
        const int64_t c1 = std::min(channels, c0 + 16);
        for (int64_t p = 0; p < bins; ++p) {
          for (int64_t c = c0; c < c1; ++c) {
            out_k[c * bins + p] = tile_v[p * channels + c];
          }
        }
        for (int64_t p = 0; arg_k != nullptr && p < bins; ++p) {
          for (int64_t c = c0; c < c1; ++c) {
            arg_k[c * bins + p] = tile_a[p * channels + c];
          }
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> roi_pool_cpu(
    const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
    int64_t pooled_height, int64_t pooled_width, bool with_argmax) {
  roi_checks::check_roi_pool_forward(input, rois, pooled_height, pooled_width);
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
  check_batch_indices(rois_c, input.size(0));
  const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
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
  parallel_blocks(batch_size * blocks_per_image, 1, [&](int64_t begin,
                                                      int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / blocks_per_image;
      const int64_t c0 = (t % blocks_per_image) * block;
      const int64_t c1 = std::min(channels, c0 + block);
      // The owner zeroes its planes: first touch by the thread that sums
      // into them, while they are about to be in its cache anyway.
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
  roi_checks::check_roi_pool_backward(grad, rois, argmax, channels);
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
  check_batch_indices(rois_c, batch_size);
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
