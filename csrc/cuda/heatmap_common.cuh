// Pieces shared by the CUDA heatmap-target kernels (ttf_targets,
// centernet_targets): two launches, no atomics, no host sync, deterministic.
//   1. the op's box kernel, one thread per box slot (box_slot), works out the
//      box's geometry (heatmap_targets.h, the same code as the CPU) and stores
//      its Params: a WindowRecord plus the op's own Gaussian coefficients;
//   2. the op's draw kernel, one kTileW x kTileH block per (image, pixel tile),
//      calls draw_heat: each thread owns one pixel, zeroes it in every class
//      plane (the heatmap is written once, coalesced along rows, instead of a
//      separate memset), then walks the image's Params staged in shared memory
//      in slot order; windows that miss the tile are skipped by the whole
//      block (a uniform branch), the rest max-merge their Gaussian into the
//      pixel's class plane.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "heatmap_targets.h"

namespace dets {
namespace heatmap_cuda {

constexpr int kTileW = 32;
constexpr int kTileH = 8;
constexpr int kStage = kTileW * kTileH;  // Params staged per round
constexpr int kBoxThreads = 128;

// A box's Gaussian window cut to the map (empty: x0 > x1), its centre and
// class. The window lies inside the map, so int32 holds it; centres are
// within +-2^30 (heatmap::kCoordLimit).
struct WindowRecord {
  int32_t x0, x1, y0, y1, cx, cy;
  int32_t label;
};

constexpr WindowRecord kEmptyWindow{1, 0, 1, 0, 0, 0, 0};

inline __device__ WindowRecord make_window(int64_t cx, int64_t cy, int64_t rw,
                                           int64_t rh, int64_t label,
                                           int64_t height, int64_t width) {
  const heatmap::Window w = heatmap::clip_window(cx, cy, rw, rh, height, width);
  return {static_cast<int32_t>(w.x0), static_cast<int32_t>(w.x1),
          static_cast<int32_t>(w.y0), static_cast<int32_t>(w.y1),
          static_cast<int32_t>(cx),   static_cast<int32_t>(cy),
          static_cast<int32_t>(label)};
}

// a with exp(-d^2 / (2 sigma^2)) = exp(-d^2 a) for sigma = (2r+1)/6, i.e.
// a = 18 / (2r+1)^2.
inline __device__ float gaussian_coef(int64_t r) {
  const float d = static_cast<float>(2 * r + 1);
  return 18.f / (d * d);
}

// The box kernels' thread: its slot, or -1 past the last of `total`.
inline __device__ int64_t box_slot(int64_t total) {
  const int64_t s = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  return s < total ? s : -1;
}

inline int64_t box_blocks(int64_t total) {
  return (total + kBoxThreads - 1) / kBoxThreads;
}

inline dim3 draw_grid(int64_t batch, int64_t out_h, int64_t out_w) {
  return dim3((out_w + kTileW - 1) / kTileW, (out_h + kTileH - 1) / kTileH,
              batch);
}

// Device scratch for `count` Params (at least one), kept alive by `storage`.
template <typename Params>
Params* params_buffer(int64_t count, const at::TensorOptions& opts,
                      at::Tensor& storage) {
  storage = at::empty(
      {std::max<int64_t>(count, 1) * static_cast<int64_t>(sizeof(Params))},
      opts.dtype(at::kByte));
  return reinterpret_cast<Params*>(storage.data_ptr<uint8_t>());
}

// The pixel a draw-kernel thread owns.
struct Pixel {
  int32_t x, y;
  bool inside;    // within the map
  int64_t index;  // y * W + x
};

inline __device__ Pixel tile_pixel(int64_t height, int64_t width) {
  const int32_t x = blockIdx.x * kTileW + threadIdx.x;
  const int32_t y = blockIdx.y * kTileH + threadIdx.y;
  return {x, y, x < width && y < height, static_cast<int64_t>(y) * width + x};
}

// Pass 2 for image blockIdx.z: max-merges p.gaussian(dx, dy) (a float) of
// every Params p of `params_b` [slots] whose window holds the pixel into the
// pixel's plane of `heat_b` [C, H, W], and calls visit(p, slot, g) after each.
// Params has a WindowRecord `win`.
template <typename Params, typename scalar_t, typename Visit>
__device__ void draw_heat(const Params* __restrict__ params_b, int64_t slots,
                          int64_t num_classes, int64_t height, int64_t width,
                          const Pixel& px, scalar_t* __restrict__ heat_b,
                          Visit& visit) {
  __shared__ Params stage[kStage];
  const int32_t tx0 = blockIdx.x * kTileW, ty0 = blockIdx.y * kTileH;
  const int tid = threadIdx.y * kTileW + threadIdx.x;
  const int64_t plane = height * width;
  if (px.inside) {
    for (int64_t c = 0; c < num_classes; ++c) {
      heat_b[c * plane + px.index] = scalar_t(0);
    }
  }
  for (int64_t base = 0; base < slots; base += kStage) {
    const int64_t count = slots - base < kStage ? slots - base : kStage;
    __syncthreads();
    if (tid < count) {
      stage[tid] = params_b[base + tid];
    }
    __syncthreads();
    for (int64_t k = 0; k < count; ++k) {
      const Params& p = stage[k];
      const WindowRecord& w = p.win;
      if (w.x0 > w.x1 || w.y0 > w.y1 || w.x1 < tx0 || w.x0 >= tx0 + kTileW ||
          w.y1 < ty0 || w.y0 >= ty0 + kTileH) {
        continue;  // uniform across the block
      }
      if (!px.inside || px.x < w.x0 || px.x > w.x1 || px.y < w.y0 ||
          px.y > w.y1) {
        continue;
      }
      const float g = p.gaussian(static_cast<float>(px.x - w.cx),
                                 static_cast<float>(px.y - w.cy));
      scalar_t* h = heat_b + w.label * plane + px.index;
      const scalar_t gv = static_cast<scalar_t>(g);
      if (gv > *h) {
        *h = gv;
      }
      visit(p, base + k, g);
    }
  }
}

}  // namespace heatmap_cuda
}  // namespace dets
