// Soft-NMS on the CPU. Sequential by nature: each step selects the remaining
// box of highest current score, then decays the others. Per step, one
// vectorised pass computes the IoUs with the selected box and one scalar pass
// decays, drops and finds the next selection; the columns (index order) are
// compacted when half of them are dead.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cstring>

#include "cpu/box_iou.h"

namespace dets {
namespace {

// Integer key ordering scores as the selection does: NaN above everything,
// -0 equal to +0.
template <typename T>
using KeyT = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;

template <typename T>
inline KeyT<T> score_key(T v) {
  using K = KeyT<T>;
  if (v != v) {
    return std::numeric_limits<K>::max();
  }
  if (v == T(0)) {
    return 0;
  }
  K bits;
  std::memcpy(&bits, &v, sizeof(T));
  return bits >= 0 ? bits : bits ^ std::numeric_limits<K>::max();
}

template <typename T>
__attribute__((always_inline)) inline void ious_body(const BoxColumns<T>& cols,
                                                     int64_t m, int64_t sel,
                                                     T* __restrict out) {
  const T ax1 = cols.x1[sel], ay1 = cols.y1[sel], ax2 = cols.x2[sel],
          ay2 = cols.y2[sel], aarea = cols.area[sel];
  const T* __restrict x1 = cols.x1.data();
  const T* __restrict y1 = cols.y1.data();
  const T* __restrict x2 = cols.x2.data();
  const T* __restrict y2 = cols.y2.data();
  const T* __restrict area = cols.area.data();
#pragma omp simd
  for (int64_t r = 0; r < m; ++r) {
    out[r] =
        box_iou(ax1, ay1, ax2, ay2, aarea, x1[r], y1[r], x2[r], y2[r], area[r]);
  }
}

DETS_SIMD_CLONES void ious(const BoxColumns<float>& cols, int64_t m,
                           int64_t sel, float* out) {
  ious_body(cols, m, sel, out);
}

DETS_SIMD_CLONES void ious(const BoxColumns<double>& cols, int64_t m,
                           int64_t sel, double* out) {
  ious_body(cols, m, sel, out);
}

template <typename T>
std::tuple<at::Tensor, at::Tensor> soft_nms_cpu_impl(
    const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold,
    double sigma, double score_threshold, int64_t method) {
  const int64_t n = boxes.size(0);
  const T* b = boxes.data_ptr<T>();
  const T* sc = scores.data_ptr<T>();
  const T thr = lower_threshold<T>(iou_threshold);
  const T sigma_t = static_cast<T>(sigma);
  // s < score_threshold with s in T and the threshold in double.
  auto below = [&](T s) { return static_cast<double>(s) < score_threshold; };

  BoxColumns<T> cols(n);
  std::vector<T> s(n), iou(n);
  std::vector<int64_t> pos(n);
  std::vector<uint8_t> alive(n, 1);
  int64_t m = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (below(sc[i])) {
      continue;
    }
    cols.set(m, b + 4 * i);
    s[m] = sc[i];
    pos[m] = i;
    ++m;
  }
  std::vector<int64_t> keep;
  std::vector<T> kept_scores;
  int64_t sel = -1;
  KeyT<T> sel_key = 0;
  for (int64_t r = 0; r < m; ++r) {
    const KeyT<T> key = score_key(s[r]);
    if (sel < 0 || key > sel_key) {
      sel = r;
      sel_key = key;
    }
  }
  int64_t dead = 0;
  while (sel >= 0) {
    keep.push_back(pos[sel]);
    kept_scores.push_back(s[sel]);
    alive[sel] = 0;
    ++dead;
    // IoUs with every column (dead ones too): a branch-free vectorised pass.
    ious(cols, m, sel, iou.data());
    int64_t next = -1;
    KeyT<T> next_key = 0;
    for (int64_t r = 0; r < m; ++r) {
      if (!alive[r]) {
        continue;
      }
      const T u = iou[r];
      T v = s[r];
      bool drop = false;
      // A NaN IoU leaves the box as it is; exp(-0) = 1, so a zero IoU can
      // skip the exponential exactly.
      if (u == u) {
        if (method == 0) {
          drop = u > thr;
        } else if (method == 1) {
          if (u > thr) {
            v = v * (T(1) - u);
          }
        } else if (u != T(0)) {
          v = v * std::exp(-(u * u) / sigma_t);
        }
      }
      if (drop || below(v)) {
        alive[r] = 0;
        ++dead;
        continue;
      }
      s[r] = v;
      const KeyT<T> key = score_key(v);
      if (next < 0 || key > next_key) {
        next = r;
        next_key = key;
      }
    }
    // Compact once half the columns are dead, keeping index order.
    if (2 * dead > m) {
      int64_t w = 0;
      for (int64_t r = 0; r < m; ++r) {
        if (!alive[r]) {
          continue;
        }
        if (r == next) {
          next = w;
        }
        cols.x1[w] = cols.x1[r];
        cols.y1[w] = cols.y1[r];
        cols.x2[w] = cols.x2[r];
        cols.y2[w] = cols.y2[r];
        cols.area[w] = cols.area[r];
        s[w] = s[r];
        pos[w] = pos[r];
        alive[w] = 1;
        ++w;
      }
      m = w;
      dead = 0;
    }
    sel = next;
  }
  const int64_t k = static_cast<int64_t>(keep.size());
  at::Tensor keep_t = at::empty({k}, boxes.options().dtype(at::kLong));
  at::Tensor scores_t = at::empty({k}, scores.options());
  std::copy(keep.begin(), keep.end(), keep_t.data_ptr<int64_t>());
  std::copy(kept_scores.begin(), kept_scores.end(), scores_t.data_ptr<T>());
  return {keep_t, scores_t};
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cpu(
    const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold,
    double sigma, double score_threshold, int64_t method) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4,
              "soft_nms: boxes must have shape [N, 4], got ", boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0),
              "soft_nms: scores must have shape [N] matching boxes, got ",
              scores.sizes());
  TORCH_CHECK(boxes.scalar_type() == scores.scalar_type(),
              "soft_nms: boxes and scores must share a dtype");
  TORCH_CHECK(method >= 0 && method <= 2,
              "soft_nms: method must be 0 (hard), 1 (linear) or 2 (gaussian)");
  TORCH_CHECK(sigma > 0, "soft_nms: sigma must be positive, got ", sigma);
  std::tuple<at::Tensor, at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "soft_nms_cpu", [&] {
    out = soft_nms_cpu_impl<scalar_t>(boxes.contiguous(), scores.contiguous(),
                                      iou_threshold, sigma, score_threshold,
                                      method);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CPU, m) { m.impl("soft_nms", soft_nms_cpu); }

}  // namespace dets
