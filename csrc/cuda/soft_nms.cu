// Soft-NMS on the GPU. The selection loop is sequential, so one block of
// kSoftNmsThreads runs all of it: per step, every thread decays and drops its
// share of the boxes and proposes its best remaining box, and a block
// reduction over packed (score key, index) words picks the next selection.
// Two barriers per selected box; the only host sync is reading the count.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "cuda/helpers.cuh"

namespace dets {
namespace {

constexpr int kSoftNmsThreads = 1024;

// Orders scores as the selection does (NaN highest, -0 == +0) in the high
// word and prefers lower indices in the low word; 0 means "no box".
__device__ __forceinline__ uint64_t selection_key(float s, int64_t i) {
  uint32_t key;
  if (s != s) {
    key = 0xffffffffu;
  } else {
    const uint32_t bits = __float_as_uint(s == 0.0f ? 0.0f : s);
    key = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  }
  return (static_cast<uint64_t>(key) << 32) |
         (0xffffffffu - static_cast<uint32_t>(i));
}

__device__ __forceinline__ uint64_t warp_max(uint64_t v) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const uint64_t other = __shfl_xor_sync(
        0xffffffffu, static_cast<unsigned long long>(v), offset);
    v = other > v ? other : v;
  }
  return v;
}

__device__ uint64_t block_max(uint64_t v, uint64_t* warp_best,
                              uint64_t* result) {
  v = warp_max(v);
  const int warp = threadIdx.x >> 5;
  if ((threadIdx.x & 31) == 0) {
    warp_best[warp] = v;
  }
  __syncthreads();
  if (warp == 0) {
    v = warp_max(threadIdx.x < (blockDim.x >> 5) ? warp_best[threadIdx.x] : 0);
    if (threadIdx.x == 0) {
      *result = v;
    }
  }
  __syncthreads();
  return *result;
}

template <typename scalar_t>
__global__ void soft_nms_kernel(
    const scalar_t* __restrict__ boxes, const scalar_t* __restrict__ scores,
    int64_t n, float iou_threshold, float sigma, float score_threshold,
    int method, float* __restrict__ work, uint8_t* __restrict__ alive,
    int64_t* __restrict__ keep, float* __restrict__ kept_scores,
    int64_t* __restrict__ count) {
  __shared__ uint64_t warp_best[32];
  __shared__ uint64_t result;
  uint64_t best = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float s = static_cast<float>(scores[i]);
    const bool a = !(s < score_threshold);
    work[i] = s;
    alive[i] = a;
    if (a) {
      best = std::max(best, selection_key(s, i));
    }
  }
  best = block_max(best, warp_best, &result);
  int64_t step = 0;
  while (best != 0) {
    const int64_t sel = 0xffffffffu - static_cast<uint32_t>(best);
    const DevBox<float> chosen = load_box<float>(boxes + 4 * sel);
    if (threadIdx.x == 0) {
      keep[step] = sel;
      kept_scores[step] = work[sel];
      alive[sel] = 0;
    }
    ++step;
    best = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      if (i == sel || !alive[i]) {
        continue;
      }
      float s = work[i];
      const float iou = box_iou(chosen, load_box<float>(boxes + 4 * i));
      bool drop = false;
      if (iou == iou) {
        if (method == 0) {
          drop = iou > iou_threshold;
        } else if (method == 1) {
          if (iou > iou_threshold) {
            s = mul_rn(s, sub_rn(1.0f, iou));
          }
        } else {
          s = mul_rn(s, expf(div_rn(-mul_rn(iou, iou), sigma)));
        }
      }
      if (drop || s < score_threshold) {
        alive[i] = 0;
        continue;
      }
      work[i] = s;
      best = std::max(best, selection_key(s, i));
    }
    best = block_max(best, warp_best, &result);
  }
  if (threadIdx.x == 0) {
    *count = step;
  }
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cuda(
    const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold,
    double sigma, double score_threshold, int64_t method) {
  TORCH_CHECK(boxes.is_cuda() && scores.is_cuda(),
              "soft_nms: boxes and scores must be CUDA tensors");
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4,
              "soft_nms: boxes must have shape [N, 4], got ", boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0),
              "soft_nms: scores must have shape [N] matching boxes, got ",
              scores.sizes());
  TORCH_CHECK(method >= 0 && method <= 2,
              "soft_nms: method must be 0 (hard), 1 (linear) or 2 (gaussian)");
  TORCH_CHECK(sigma > 0, "soft_nms: sigma must be positive, got ", sigma);
  TORCH_CHECK(boxes.size(0) < (int64_t{1} << 31),
              "soft_nms: at most 2^31 - 1 boxes on CUDA");
  const c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t n = boxes.size(0);
  const auto options = boxes.options();
  const at::Tensor b = boxes.contiguous();
  const at::Tensor s = scores.contiguous();
  at::Tensor work = at::empty({n}, options.dtype(at::kFloat));
  at::Tensor alive = at::empty({n}, options.dtype(at::kByte));
  at::Tensor keep = at::empty({n}, options.dtype(at::kLong));
  at::Tensor kept_scores = at::empty({n}, options.dtype(at::kFloat));
  at::Tensor count = at::zeros({1}, options.dtype(at::kLong));
  if (n > 0) {
    cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, b.scalar_type(), "soft_nms_cuda", [&] {
          soft_nms_kernel<scalar_t><<<1, kSoftNmsThreads, 0, stream>>>(
              b.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), n,
              lower_threshold_host<float>(iou_threshold),
              static_cast<float>(sigma),
              upper_threshold_host<float>(score_threshold),
              static_cast<int>(method), work.data_ptr<float>(),
              alive.data_ptr<uint8_t>(), keep.data_ptr<int64_t>(),
              kept_scores.data_ptr<float>(), count.data_ptr<int64_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
  }
  const int64_t k = count.item<int64_t>();
  return {keep.slice(0, 0, k),
          kept_scores.slice(0, 0, k).to(scores.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CUDA, m) { m.impl("soft_nms", soft_nms_cuda); }

}  // namespace dets
