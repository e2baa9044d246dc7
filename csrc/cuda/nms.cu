// Greedy NMS on the GPU, all on the device:
//   1. stable sort by score and gather the boxes in visit order;
//   2. nms_mask_kernel: 64 x 64 tiles of the upper triangle only; bit j of
//      mask[i][w] says box 64 w + j has IoU > threshold with box i (j > i);
//   3. nms_unwrap_kernel: one block walks the 64-box blocks in order. Each
//      block is resolved from its diagonal tile held in one warp's registers
//      (a 64-step register loop, no memory round trip per box), then its kept
//      rows are OR-ed into the removed bitset (shared memory) by all warps,
//      coalesced along the mask rows: two barriers per 64 boxes.
// The only host sync is learning the output length (masked_select).
// The mask takes n * ceil(n / 64) * 8 bytes (20k boxes: 50 MB).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "cuda/helpers.cuh"

namespace dets {
namespace {

constexpr int kUnwrapThreads = 512;
constexpr int kUnwrapWarps = kUnwrapThreads / 32;

template <typename scalar_t>
__global__ void nms_mask_kernel(const scalar_t* __restrict__ boxes,
                                const int64_t* __restrict__ seg_end, int64_t n,
                                int64_t n_words,
                                at::opmath_type<scalar_t> threshold,
                                uint64_t* __restrict__ mask) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t rb = blockIdx.y;
  const int64_t cb = blockIdx.x;
  if (cb < rb) {
    return;
  }
  const int64_t row = rb * kNmsTile + threadIdx.x;
  const int64_t col0 = cb * kNmsTile;
  const int64_t last_row = std::min(n, (rb + 1) * kNmsTile) - 1;
  // Rows are ordered by category, so the last row's range ends last.
  const int64_t tile_end = seg_end == nullptr ? n : seg_end[last_row];
  if (col0 >= tile_end) {
    if (row < n) {
      mask[row * n_words + cb] = 0;
    }
    return;
  }
  __shared__ DevBox<acc_t> cols[kNmsTile];
  const int64_t col = col0 + threadIdx.x;
  if (col < n) {
    cols[threadIdx.x] = load_box<acc_t>(boxes + 4 * col);
  }
  __syncthreads();
  if (row >= n) {
    return;
  }
  const DevBox<acc_t> me = load_box<acc_t>(boxes + 4 * row);
  const int64_t end =
      std::min(seg_end == nullptr ? n : seg_end[row], col0 + kNmsTile);
  const int64_t start = std::max(row + 1, col0);
  uint64_t bits = 0;
  for (int64_t j = start; j < end; ++j) {
    if (box_iou(me, cols[j - col0]) > threshold) {
      bits |= 1ULL << (j - col0);
    }
  }
  mask[row * n_words + cb] = bits;
}

__global__ void nms_unwrap_kernel(const uint64_t* __restrict__ mask,
                                  const int64_t* __restrict__ seg_end,
                                  int64_t n, int64_t n_words,
                                  uint64_t* __restrict__ removed_global,
                                  bool use_shared, bool* __restrict__ keep) {
  extern __shared__ uint64_t removed_shared[];
  uint64_t* removed = use_shared ? removed_shared : removed_global;
  for (int64_t w = threadIdx.x; w < n_words; w += blockDim.x) {
    removed[w] = 0;
  }
  __shared__ uint64_t kept_bits;
  __syncthreads();
  const int lane = threadIdx.x & 31;
  for (int64_t rb = 0; rb < n_words; ++rb) {
    const int64_t base = rb * kNmsTile;
    if (threadIdx.x < 32) {
      const int64_t r0 = base + lane;
      const int64_t r1 = base + 32 + lane;
      const uint64_t d0 = r0 < n ? mask[r0 * n_words + rb] : 0;
      const uint64_t d1 = r1 < n ? mask[r1 * n_words + rb] : 0;
      uint64_t rem = removed[rb];
      uint64_t kept = 0;
#pragma unroll
      for (int i = 0; i < kNmsTile; ++i) {
        const uint64_t word = __shfl_sync(
            0xffffffffu, static_cast<unsigned long long>(i < 32 ? d0 : d1),
            i & 31);
        const bool alive = ((rem >> i) & 1ULL) == 0;
        rem |= alive ? word : 0ULL;
        kept |= alive ? (1ULL << i) : 0ULL;
      }
      const int64_t valid = std::min<int64_t>(kNmsTile, n - base);
      if (valid < kNmsTile) {
        kept &= (1ULL << valid) - 1;
      }
      if (r0 < n) {
        keep[r0] = (kept >> lane) & 1ULL;
      }
      if (r1 < n) {
        keep[r1] = (kept >> (32 + lane)) & 1ULL;
      }
      if (lane == 0) {
        kept_bits = kept;
      }
    }
    __syncthreads();
    // Lane l of warp v ORs rows v, v + 16, ... of the block into words l,
    // l + 32, ...: coalesced rows, four independent loads in flight per word.
    const uint64_t kept = kept_bits;
    const int warp = threadIdx.x >> 5;
    // Words past the block's last category range hold no bits.
    const int64_t last = std::min(n, base + kNmsTile) - 1;
    const int64_t end_word = seg_end == nullptr
                                 ? n_words
                                 : (seg_end[last] + kNmsTile - 1) / kNmsTile;
    for (int64_t w = rb + 1 + lane; w < end_word; w += 32) {
      uint64_t acc = 0;
#pragma unroll
      for (int k = 0; k < kNmsTile / kUnwrapWarps; ++k) {
        const int r = warp + k * kUnwrapWarps;
        if ((kept >> r) & 1ULL) {
          acc |= mask[(base + r) * n_words + w];
        }
      }
      if (acc != 0) {
        atomicOr(reinterpret_cast<unsigned long long*>(removed + w),
                 static_cast<unsigned long long>(acc));
      }
    }
    __syncthreads();
  }
}

}  // namespace

at::Tensor greedy_keep_cuda(const at::Tensor& sorted_boxes,
                            const at::Tensor& seg_end, double iou_threshold) {
  const int64_t n = sorted_boxes.size(0);
  const int64_t n_words = (n + kNmsTile - 1) / kNmsTile;
  TORCH_CHECK(n_words <= 65535, "nms: at most ", 65535 * kNmsTile,
              " boxes on CUDA, got ", n);
  const auto options = sorted_boxes.options();
  at::Tensor mask = at::empty({n, n_words}, options.dtype(at::kLong));
  at::Tensor keep = at::empty({n}, options.dtype(at::kBool));
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t* seg =
      seg_end.defined() ? seg_end.data_ptr<int64_t>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, sorted_boxes.scalar_type(), "nms_mask", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const dim3 grid(n_words, n_words);
        nms_mask_kernel<scalar_t><<<grid, kNmsTile, 0, stream>>>(
            sorted_boxes.data_ptr<scalar_t>(), seg, n, n_words,
            lower_threshold_host<acc_t>(iou_threshold),
            reinterpret_cast<uint64_t*>(mask.data_ptr<int64_t>()));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  // The removed bitset lives in shared memory when it fits (opting in to the
  // device's maximum), else in global memory.
  const size_t bitset_bytes = n_words * sizeof(uint64_t);
  const int device = sorted_boxes.get_device();
  int max_optin = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(
      &max_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  const bool use_shared = bitset_bytes + 64 <= static_cast<size_t>(max_optin);
  at::Tensor removed_global;
  size_t smem = 0;
  if (use_shared) {
    smem = bitset_bytes;
    if (smem > 48 * 1024) {
      C10_CUDA_CHECK(cudaFuncSetAttribute(
          nms_unwrap_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
          static_cast<int>(smem)));
    }
  } else {
    removed_global = at::empty({n_words}, options.dtype(at::kLong));
  }
  nms_unwrap_kernel<<<1, kUnwrapThreads, smem, stream>>>(
      reinterpret_cast<const uint64_t*>(mask.data_ptr<int64_t>()), seg, n,
      n_words,
      use_shared
          ? nullptr
          : reinterpret_cast<uint64_t*>(removed_global.data_ptr<int64_t>()),
      use_shared, keep.data_ptr<bool>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return keep;
}

namespace {

at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores,
                    double iou_threshold) {
  TORCH_CHECK(boxes.is_cuda() && scores.is_cuda(),
              "nms: boxes and scores must be CUDA tensors");
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4,
              "nms: boxes must have shape [N, 4], got ", boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0),
              "nms: scores must have shape [N] matching boxes, got ",
              scores.sizes());
  const c10::cuda::CUDAGuard guard(boxes.device());
  if (boxes.size(0) == 0) {
    return at::empty({0}, boxes.options().dtype(at::kLong));
  }
  const at::Tensor order =
      std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const at::Tensor sorted = boxes.index_select(0, order).contiguous();
  const at::Tensor keep = greedy_keep_cuda(sorted, at::Tensor(), iou_threshold);
  return order.masked_select(keep);
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CUDA, m) { m.impl("nms", nms_cuda); }

}  // namespace dets
