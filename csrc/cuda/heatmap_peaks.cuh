// Peak finding and top-k over a [B, C, H, W] heatmap on the GPU, shared by the
// CenterNet and TTFNet decoders. No host synchronisation.
//
//   1. peak_histogram: the 3x3 peak test on every value; a per-image histogram
//      of the top 12 bits of the peaks' order-preserving score bits.
//   2. pick_bin: per image, the highest bin T with at least k peaks in bins
//      >= T (0 when the image has fewer than k peaks).
//   3. compact: a second pass keeps only peaks in bins >= T (usually a few
//      hundred per image): their flat indices, appended with warp-aggregated
//      atomics. The bin test comes first, so most values skip the 3x3 test.
//   4. select: one block per image radix-selects the k-th best of the
//      survivors on 64-bit keys (score bits, then 0xFFFFFFFF - index, so equal
//      scores rank by lower index) and writes the k best, unordered.
//   5. at::sort of the [B, k] keys (unique) orders them.
//
// Keys handed back are signed int64: ((score bits) << 32 | (0xFFFFFFFF -
// index)) with the top bit flipped, kPadKey (INT64_MIN) on padding; the same
// keys as kernels/_peaks.py.
//
// The candidate buffer is sized for the worst case (every value a peak, e.g.
// a constant heatmap): B * C * H * W int32 of workspace.
#pragma once

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <cooperative_groups.h>

#include <climits>
#include <cstdint>
#include <cub/block/block_scan.cuh>
#include <tuple>

namespace dets {
namespace heatmap_peaks_cuda {

constexpr int kBinBits = 12;
constexpr int kBins = 1 << kBinBits;
constexpr int kThreads = 256;
constexpr int kSelectThreads = 1024;
constexpr int64_t kPadKey = INT64_MIN;

// Larger float -> larger uint32; -0.0 and 0.0 share one value.
__device__ __forceinline__ uint32_t score_bits(float v) {
  const uint32_t u = __float_as_uint(v == 0.f ? 0.f : v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ uint64_t unsigned_key(float v, int64_t index) {
  return (static_cast<uint64_t>(score_bits(v)) << 32) |
         (0xFFFFFFFFull - static_cast<uint64_t>(index));
}

// No in-map 3x3 neighbour exceeds v, and v is not NaN.
template <typename scalar_t>
__device__ __forceinline__ bool is_peak(const scalar_t* __restrict__ plane,
                                        int y, int x, int height, int width,
                                        float v) {
  if (!(v == v)) return false;
  for (int yy = y > 0 ? y - 1 : y; yy <= y + 1 && yy < height; ++yy) {
    const scalar_t* row = plane + yy * width;
    for (int xx = x > 0 ? x - 1 : x; xx <= x + 1 && xx < width; ++xx) {
      if (static_cast<float>(row[xx]) > v) return false;
    }
  }
  return true;
}

struct MapShape {
  int64_t per_image;
  uint32_t plane, height, width;
};

// Whether value i (flat, within one image) of `image` is a peak. Within-image
// indices fit in 31 bits (the wrapper checks C*H*W), and 32-bit division is
// far cheaper than 64-bit division on the GPU.
template <typename scalar_t>
__device__ __forceinline__ bool peak_at(const scalar_t* __restrict__ image,
                                        int64_t i, const MapShape& s, float v) {
  const uint32_t j = static_cast<uint32_t>(i);
  const uint32_t c = j / s.plane;
  const uint32_t pos = j - c * s.plane;
  const uint32_t y = pos / s.width;
  return is_peak(image + static_cast<int64_t>(c) * s.plane, y,
                 pos - y * s.width, s.height, s.width, v);
}

template <typename scalar_t>
__global__ void peak_histogram_kernel(const scalar_t* __restrict__ heat,
                                      MapShape s, int64_t blocks_per_image,
                                      int* __restrict__ hist) {
  __shared__ int local[kBins];
  for (int i = threadIdx.x; i < kBins; i += blockDim.x) local[i] = 0;
  __syncthreads();
  const int64_t b = blockIdx.x / blocks_per_image;
  const int64_t first =
      (blockIdx.x % blocks_per_image) * blockDim.x + threadIdx.x;
  const int64_t step = blocks_per_image * blockDim.x;
  const scalar_t* image = heat + b * s.per_image;
  for (int64_t i = first; i < s.per_image; i += step) {
    const float v = static_cast<float>(image[i]);
    if (peak_at(image, i, s, v)) {
      atomicAdd(&local[score_bits(v) >> (32 - kBinBits)], 1);
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kBins; i += blockDim.x) {
    if (local[i] != 0) atomicAdd(&hist[b * kBins + i], local[i]);
  }
}

// One block of kSelectThreads per image; thread t owns kBins / kSelectThreads
// bins counted from the top, so an exclusive scan gives the peaks above them.
// static: this header is compiled into each decoder's translation unit.
static __global__ void pick_bin_kernel(const int* __restrict__ hist, int64_t k,
                                       int* __restrict__ bin) {
  constexpr int kPer = kBins / kSelectThreads;
  using Scan = cub::BlockScan<int, kSelectThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  const int* h = hist + blockIdx.x * kBins;
  const int top = kBins - 1 - threadIdx.x * kPer;
  int mine = 0;
  for (int j = 0; j < kPer; ++j) mine += h[top - j];
  int above = 0;
  Scan(scan_storage).ExclusiveSum(mine, above);
  if (threadIdx.x == 0) bin[blockIdx.x] = 0;
  __syncthreads();
  // Exactly one bin (if any) is where the running count reaches k.
  for (int j = 0; j < kPer; ++j) {
    const int count = h[top - j];
    if (above < k && above + count >= k) bin[blockIdx.x] = top - j;
    above += count;
  }
}

template <typename scalar_t>
__global__ void compact_kernel(const scalar_t* __restrict__ heat, MapShape s,
                               int64_t blocks_per_image,
                               const int* __restrict__ bin,
                               int* __restrict__ count,
                               int* __restrict__ candidates) {
  namespace cg = cooperative_groups;
  const int64_t b = blockIdx.x / blocks_per_image;
  const int64_t first =
      (blockIdx.x % blocks_per_image) * blockDim.x + threadIdx.x;
  const int64_t step = blocks_per_image * blockDim.x;
  const scalar_t* image = heat + b * s.per_image;
  const uint32_t lowest = static_cast<uint32_t>(bin[b]);
  for (int64_t i = first; i < s.per_image; i += step) {
    const float v = static_cast<float>(image[i]);
    if ((score_bits(v) >> (32 - kBinBits)) < lowest) continue;
    if (!peak_at(image, i, s, v)) continue;
    cg::coalesced_group group = cg::coalesced_threads();
    int base = 0;
    if (group.thread_rank() == 0) base = atomicAdd(&count[b], group.size());
    base = group.shfl(base, 0);
    candidates[b * s.per_image + base + group.thread_rank()] =
        static_cast<int>(i);
  }
}

template <typename scalar_t>
__global__ void select_kernel(const scalar_t* __restrict__ heat, MapShape s,
                              int64_t k, const int* __restrict__ count,
                              const int* __restrict__ candidates,
                              int64_t* __restrict__ keys) {
  __shared__ int digits[256];
  __shared__ uint64_t prefix, prefix_mask;
  __shared__ int64_t wanted;
  __shared__ int written;
  const int64_t b = blockIdx.x;
  const int64_t n = count[b];
  const scalar_t* image = heat + b * s.per_image;
  const int* cand = candidates + b * s.per_image;
  int64_t* out = keys + b * k;
  auto key_of = [&](int64_t i) {
    const int64_t index = cand[i];
    return unsigned_key(static_cast<float>(image[index]), index);
  };
  if (threadIdx.x == 0) {
    prefix = 0;
    prefix_mask = 0;
    wanted = k;
    written = 0;
  }
  __syncthreads();
  // Radix select of the k-th largest key, 8 bits at a time from the top.
  if (n > k) {
    for (int shift = 56; shift >= 0; shift -= 8) {
      for (int d = threadIdx.x; d < 256; d += blockDim.x) digits[d] = 0;
      __syncthreads();
      const uint64_t p = prefix, m = prefix_mask;
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const uint64_t u = key_of(i);
        if ((u & m) == p) atomicAdd(&digits[(u >> shift) & 0xFF], 1);
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        int64_t above = 0;
        int d = 255;
        while (above + digits[d] < wanted) above += digits[d--];
        wanted -= above;
        prefix |= static_cast<uint64_t>(d) << shift;
        prefix_mask |= 0xFFull << shift;
      }
      __syncthreads();
    }
  }
  // With n > k, prefix is now the k-th largest key: exactly k keys >= it.
  const uint64_t lowest = n > k ? prefix : 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const uint64_t u = key_of(i);
    if (u >= lowest) {
      out[atomicAdd(&written, 1)] =
          static_cast<int64_t>(u ^ 0x8000000000000000ull);
    }
  }
  for (int64_t i = n + threadIdx.x; i < k; i += blockDim.x) out[i] = kPadKey;
}

// Sorted keys [B, k] of the k best peaks of each image of a contiguous
// heatmap, best first, kPadKey padded.
inline at::Tensor top_peak_keys(const at::Tensor& heat, int64_t k) {
  // Keys hold float32 scores: float64 ties would be resolved wrongly.
  TORCH_CHECK(heat.scalar_type() != at::kDouble,
              "heatmap decode on CUDA: float64 is not supported");
  const int64_t batch = heat.size(0), height = heat.size(2);
  const int64_t width = heat.size(3);
  const MapShape s{heat.size(1) * height * width,
                   static_cast<uint32_t>(height * width),
                   static_cast<uint32_t>(height), static_cast<uint32_t>(width)};
  const auto ints = heat.options().dtype(at::kInt);
  at::Tensor hist = at::zeros({batch, kBins}, ints);
  at::Tensor count = at::zeros({batch}, ints);
  at::Tensor bin = at::empty({batch}, ints);
  at::Tensor candidates = at::empty({batch, s.per_image}, ints);
  at::Tensor keys = at::empty({batch, k}, heat.options().dtype(at::kLong));
  // About 8 blocks per SM in all (enough loads in flight to stream the map):
  // each flushes a kBins histogram, so more blocks only add flush traffic.
  const int64_t sms =
      at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t blocks_per_image = std::max<int64_t>(
      1, std::min<int64_t>((s.per_image + kThreads - 1) / kThreads,
                           (8 * sms + batch - 1) / batch));
  const int64_t blocks = batch * blocks_per_image;
  TORCH_CHECK(blocks <= INT_MAX && batch <= INT_MAX,
              "heatmap decode: batch too large");
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, heat.scalar_type(), "top_peak_keys", [&] {
        const scalar_t* h = heat.const_data_ptr<scalar_t>();
        peak_histogram_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
            h, s, blocks_per_image, hist.data_ptr<int>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        pick_bin_kernel<<<batch, kSelectThreads, 0, stream>>>(
            hist.const_data_ptr<int>(), k, bin.data_ptr<int>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        compact_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
            h, s, blocks_per_image, bin.const_data_ptr<int>(),
            count.data_ptr<int>(), candidates.data_ptr<int>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        select_kernel<scalar_t><<<batch, kSelectThreads, 0, stream>>>(
            h, s, k, count.const_data_ptr<int>(),
            candidates.const_data_ptr<int>(), keys.data_ptr<int64_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return std::get<0>(keys.sort(/*dim=*/1, /*descending=*/true));
}

// Flat index c*H*W + y*W + x of a key from top_peak_keys (not kPadKey).
__device__ __forceinline__ int64_t key_index(int64_t key) {
  return 0xFFFFFFFFll - (key & 0xFFFFFFFFll);
}

// Strides of a [B, C, H, W] regression map that a decoder reads at the peaks.
struct MapStrides {
  int64_t b, c, y, x;
};

inline MapStrides map_strides(const at::Tensor& map) {
  return {map.stride(0), map.stride(1), map.stride(2), map.stride(3)};
}

// Writes a BoxWriter's box, computed in acc_t, in the output type.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void store_box(scalar_t* box, acc_t x1, acc_t y1,
                                          acc_t x2, acc_t y2) {
  box[0] = static_cast<scalar_t>(x1);
  box[1] = static_cast<scalar_t>(y1);
  box[2] = static_cast<scalar_t>(x2);
  box[3] = static_cast<scalar_t>(y2);
}

// One thread per [batch, k] output slot of the decoders. Padding gets a zero
// box, score 0 and label -1; a peak's score and class come from its key, and
// `write_box(b, y, x, box)` fills its box from the op's own regression maps,
// which is all the decoders differ in.
template <typename scalar_t, typename BoxWriter>
__global__ void decode_boxes_kernel(
    const int64_t* __restrict__ keys, const scalar_t* __restrict__ heat,
    int64_t total, int64_t k, int64_t per_image, int64_t plane, int64_t width,
    BoxWriter write_box, scalar_t* __restrict__ boxes,
    scalar_t* __restrict__ scores, int64_t* __restrict__ labels) {
  const int64_t slot =
      blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (slot >= total) return;
  const int64_t key = keys[slot];
  scalar_t* box = boxes + 4 * slot;
  if (key == kPadKey) {
    box[0] = box[1] = box[2] = box[3] = scalar_t(0);
    scores[slot] = scalar_t(0);
    labels[slot] = -1;
    return;
  }
  const int64_t b = slot / k;
  const int64_t index = key_index(key);
  const int64_t pos = index % plane;
  write_box(b, pos / width, pos % width, box);
  scores[slot] = heat[b * per_image + index];
  labels[slot] = index / plane;
}

// Fills the decoder outputs from the keys of top_peak_keys(heat, k); called by
// the decoders inside their dtype dispatch, with their own BoxWriter.
template <typename scalar_t, typename BoxWriter>
void launch_decode_boxes(const at::Tensor& heat, const at::Tensor& keys,
                         int64_t k, const BoxWriter& write_box,
                         at::Tensor& boxes, at::Tensor& scores,
                         at::Tensor& labels) {
  constexpr int kDecodeThreads = 256;
  const int64_t plane = heat.size(2) * heat.size(3);
  const int64_t total = heat.size(0) * k;
  const int64_t blocks = (total + kDecodeThreads - 1) / kDecodeThreads;
  decode_boxes_kernel<scalar_t>
      <<<blocks, kDecodeThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
          keys.const_data_ptr<int64_t>(), heat.const_data_ptr<scalar_t>(),
          total, k, heat.size(1) * plane, plane, heat.size(3), write_box,
          boxes.data_ptr<scalar_t>(), scores.data_ptr<scalar_t>(),
          labels.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// The decoders' common launcher: boxes [B, k, 4], scores [B, k] and labels
// [B, k] of the k best peaks of every image of `heatmap` (zeros and -1 for an
// empty one). `launch(heat, keys, boxes, scores, labels)` dispatches on the
// dtype and calls launch_decode_boxes.
template <typename Launch>
std::tuple<at::Tensor, at::Tensor, at::Tensor> decode_peaks(
    const at::Tensor& heatmap, int64_t k, const Launch& launch) {
  c10::cuda::CUDAGuard guard(heatmap.device());
  const int64_t batch = heatmap.size(0);
  if (heatmap.numel() == 0) {
    return {at::zeros({batch, k, 4}, heatmap.options()),
            at::zeros({batch, k}, heatmap.options()),
            at::full({batch, k}, -1, heatmap.options().dtype(at::kLong))};
  }
  // Every slot is written by the kernel (padding included).
  at::Tensor boxes = at::empty({batch, k, 4}, heatmap.options());
  at::Tensor scores = at::empty({batch, k}, heatmap.options());
  at::Tensor labels = at::empty({batch, k}, heatmap.options().dtype(at::kLong));
  const at::Tensor heat = heatmap.contiguous();
  const at::Tensor keys = top_peak_keys(heat, k);
  launch(heat, keys, boxes, scores, labels);
  return {boxes, scores, labels};
}

}  // namespace heatmap_peaks_cuda
}  // namespace dets
