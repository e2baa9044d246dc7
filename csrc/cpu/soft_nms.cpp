// Soft-NMS on the CPU. Sequential by nature: each step selects the remaining
// box of highest current score, then decays the others. The remaining boxes
// live in compacted columns (index order), and one fused pass per step
// decays, drops and finds the next selection.
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
  std::vector<T> s(n);
  std::vector<int64_t> pos(n);
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
  auto argmax = [&](int64_t count) {
    int64_t best = 0;
    KeyT<T> best_key = score_key(s[0]);
    for (int64_t r = 1; r < count; ++r) {
      const KeyT<T> k = score_key(s[r]);
      if (k > best_key) {
        best_key = k;
        best = r;
      }
    }
    return best;
  };
  int64_t sel = m > 0 ? argmax(m) : 0;
  while (m > 0) {
    keep.push_back(pos[sel]);
    kept_scores.push_back(s[sel]);
    const T ax1 = cols.x1[sel], ay1 = cols.y1[sel], ax2 = cols.x2[sel],
            ay2 = cols.y2[sel], aarea = cols.area[sel];
    int64_t w = 0;
    int64_t next = -1;
    KeyT<T> next_key = std::numeric_limits<KeyT<T>>::min();
    for (int64_t r = 0; r < m; ++r) {
      if (r == sel) {
        continue;
      }
      const T iou = box_iou(ax1, ay1, ax2, ay2, aarea, cols.x1[r], cols.y1[r],
                            cols.x2[r], cols.y2[r], cols.area[r]);
      T v = s[r];
      bool drop = false;
      if (iou == iou) {
        if (method == 0) {
          drop = iou > thr;
        } else if (method == 1) {
          if (iou > thr) {
            v = v * (T(1) - iou);
          }
        } else {
          v = v * std::exp(-(iou * iou) / sigma_t);
        }
      }
      if (drop || below(v)) {
        continue;
      }
      const KeyT<T> k = score_key(v);
      if (next < 0 || k > next_key) {
        next_key = k;
        next = w;
      }
      cols.x1[w] = cols.x1[r];
      cols.y1[w] = cols.y1[r];
      cols.x2[w] = cols.x2[r];
      cols.y2[w] = cols.y2[r];
      cols.area[w] = cols.area[r];
      s[w] = v;
      pos[w] = pos[r];
      ++w;
    }
    m = w;
    sel = next;
  }
  const int64_t k = static_cast<int64_t>(keep.size());
  at::Tensor keep_t = at::empty({k}, boxes.options().dtype(at::kLong));
  at::Tensor scores_t = at::empty({k}, scores.options());
  std::copy(keep.begin(), keep.end(), keep_t.data_ptr<int64_t>());
  std::copy(kept_scores.begin(), kept_scores.end(), scores_t.data_ptr<T>());
  return {keep_t, scores_t};
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cpu(const at::Tensor& boxes,
                                                const at::Tensor& scores,
                                                double iou_threshold,
                                                double sigma,
                                                double score_threshold,
                                                int64_t method) {
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
