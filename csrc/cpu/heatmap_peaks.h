// Peak finding and top-k over a [B, C, H, W] heatmap on the CPU, shared by the
// CenterNet and TTFNet decoders.
//
// The heatmap is read once. Each task scans a range of rows of one image in
// flat-index order and keeps its best peaks in a buffer of up to 2k entries;
// when it fills, nth_element cuts it back to k and the k-th score becomes a
// threshold. Later values must beat it strictly (an equal score with a larger
// index ranks lower), so most values cost one vectorised compare per 16 and
// only the survivors get the 3x3 peak test. The per-task buffers of an image
// are then merged.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <vector>

namespace dets {
namespace heatmap_peaks {

template <typename scalar_t>
struct Peak {
  scalar_t score;
  int64_t index;  // c * H * W + y * W + x within one image
};

// Higher score first; equal scores by lower flat index.
template <typename scalar_t>
inline bool ranks_before(const Peak<scalar_t>& a, const Peak<scalar_t>& b) {
  return a.score > b.score || (a.score == b.score && a.index < b.index);
}

// No in-map neighbour exceeds v (NaN neighbours compare false: ignored).
template <typename scalar_t>
inline bool is_peak(const scalar_t* row, int64_t x, int64_t width, bool has_up,
                    bool has_down, scalar_t v) {
  const int64_t x0 = x > 0 ? x - 1 : x;
  const int64_t x1 = x + 1 < width ? x + 1 : x;
  for (int64_t xx = x0; xx <= x1; ++xx) {
    if (row[xx] > v) return false;
    if (has_up && row[xx - width] > v) return false;
    if (has_down && row[xx + width] > v) return false;
  }
  return true;
}

template <typename scalar_t>
class TopPeaks {
 public:
  explicit TopPeaks(int64_t k, int64_t max_items) : k_(k) {
    capacity_ = std::max<int64_t>(2 * k, 64);
    buffer_.reserve(std::min(capacity_, max_items));
  }

  // Whether v can still enter; false for NaN.
  bool admits(scalar_t v) const { return full_ ? v > threshold_ : v == v; }
  bool full() const { return full_; }
  scalar_t threshold() const { return threshold_; }

  void push(scalar_t v, int64_t index) {
    buffer_.push_back({v, index});
    if (static_cast<int64_t>(buffer_.size()) == capacity_) {
      std::nth_element(buffer_.begin(), buffer_.begin() + (k_ - 1),
                       buffer_.end(), ranks_before<scalar_t>);
      buffer_.resize(k_);
      threshold_ = buffer_[k_ - 1].score;
      full_ = true;
    }
  }

  std::vector<Peak<scalar_t>>& items() { return buffer_; }

 private:
  int64_t k_;
  int64_t capacity_;
  std::vector<Peak<scalar_t>> buffer_;
  scalar_t threshold_ = 0;
  bool full_ = false;
};

// Scans rows [row_begin, row_end) of one image (row r is channel r / H, line
// r % H) into `top`, in increasing flat-index order.
template <typename scalar_t>
void scan_rows(const scalar_t* image, int64_t height, int64_t width,
               int64_t row_begin, int64_t row_end, TopPeaks<scalar_t>& top) {
  constexpr int64_t kBlock = 16;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int64_t y = r % height;
    const bool has_up = y > 0;
    const bool has_down = y + 1 < height;
    const scalar_t* row = image + r * width;
    const int64_t row_index = r * width;
    auto visit = [&](int64_t x) {
      const scalar_t v = row[x];
      if (top.admits(v) && is_peak(row, x, width, has_up, has_down, v)) {
        top.push(v, row_index + x);
      }
    };
    int64_t x = 0;
    while (x < width) {
      if (top.full() && x + kBlock <= width) {
        const scalar_t threshold = top.threshold();
        int64_t above = 0;
#pragma omp simd reduction(+ : above)
        for (int64_t j = 0; j < kBlock; ++j) above += row[x + j] > threshold;
        if (above != 0) {
          for (int64_t j = x; j < x + kBlock; ++j) visit(j);
        }
        x += kBlock;
      } else {
        visit(x);
        ++x;
      }
    }
  }
}

// The k best peaks of every image of a contiguous heatmap, best first, as flat
// per-image indices [batch * k]; -1 marks padding (fewer than k peaks).
template <typename scalar_t>
std::vector<int64_t> top_peaks(const scalar_t* heat, int64_t batch,
                               int64_t channels, int64_t height, int64_t width,
                               int64_t k) {
  const int64_t rows = channels * height;
  const int64_t per_image = rows * width;
  // Enough tasks to keep every thread busy, each large enough that filling
  // its 2k buffer before the threshold kicks in stays a small part of it.
  const int64_t min_rows = std::max<int64_t>(
      1, std::max<int64_t>(1 << 15, 8 * k) / std::max<int64_t>(width, 1));
  const int64_t wanted = (4 * at::get_num_threads() + batch - 1) / batch;
  const int64_t chunks =
      std::max<int64_t>(1, std::min<int64_t>(wanted, rows / min_rows));
  const int64_t chunk_rows = (rows + chunks - 1) / chunks;

  std::vector<std::vector<Peak<scalar_t>>> found(batch * chunks);
  at::parallel_for(0, batch * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / chunks;
      const int64_t row_begin = (task % chunks) * chunk_rows;
      const int64_t row_end = std::min(rows, row_begin + chunk_rows);
      if (row_begin >= row_end) continue;
      TopPeaks<scalar_t> top(k, (row_end - row_begin) * width);
      scan_rows(heat + b * per_image, height, width, row_begin, row_end, top);
      found[task] = std::move(top.items());
    }
  });

  std::vector<int64_t> index(batch * k, -1);
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      std::vector<Peak<scalar_t>> all;
      for (int64_t c = 0; c < chunks; ++c) {
        const auto& part = found[b * chunks + c];
        all.insert(all.end(), part.begin(), part.end());
      }
      const int64_t taken = std::min<int64_t>(k, all.size());
      std::partial_sort(all.begin(), all.begin() + taken, all.end(),
                        ranks_before<scalar_t>);
      for (int64_t j = 0; j < taken; ++j) index[b * k + j] = all[j].index;
    }
  });
  return index;
}

// The decoders' output loop over the [batch, k] slots of a contiguous heatmap:
// slot s of image b takes its s-th best peak. Padding gets a zero box, score 0
// and label -1; for a peak, `write_box(b, y, x, box)` fills the box from the
// op's own regression maps, which is all the decoders differ in.
template <typename scalar_t, typename BoxWriter>
void decode_boxes(const at::Tensor& heat, int64_t k, at::Tensor& boxes,
                  at::Tensor& scores, at::Tensor& labels,
                  const BoxWriter& write_box) {
  const int64_t batch = heat.size(0), channels = heat.size(1);
  const int64_t height = heat.size(2), width = heat.size(3);
  const scalar_t* h = heat.data_ptr<scalar_t>();
  scalar_t* out_box = boxes.data_ptr<scalar_t>();
  scalar_t* out_score = scores.data_ptr<scalar_t>();
  int64_t* out_label = labels.data_ptr<int64_t>();
  const int64_t plane = height * width;
  const std::vector<int64_t> index =
      top_peaks(h, batch, channels, height, width, k);
  at::parallel_for(0, batch * k, 256, [&](int64_t begin, int64_t end) {
    for (int64_t slot = begin; slot < end; ++slot) {
      const int64_t b = slot / k;
      const int64_t i = index[slot];
      scalar_t* box = out_box + 4 * slot;
      if (i < 0) {
        box[0] = box[1] = box[2] = box[3] = scalar_t(0);
        out_score[slot] = scalar_t(0);
        out_label[slot] = -1;
        continue;
      }
      const int64_t pos = i % plane;
      write_box(b, pos / width, pos % width, box);
      out_score[slot] = h[b * channels * plane + i];
      out_label[slot] = i / plane;
    }
  });
}

// The decoders' common launcher: boxes [B, k, 4], scores [B, k] and labels
// [B, k] of the k best peaks of every image of `heatmap` (zeros and -1 for an
// empty one). `launch(heat, boxes, scores, labels)` dispatches on the dtype
// and calls decode_boxes.
template <typename Launch>
std::tuple<at::Tensor, at::Tensor, at::Tensor> decode_peaks(
    const at::Tensor& heatmap, int64_t k, const Launch& launch) {
  const int64_t batch = heatmap.size(0);
  at::Tensor boxes = at::zeros({batch, k, 4}, heatmap.options());
  at::Tensor scores = at::zeros({batch, k}, heatmap.options());
  at::Tensor labels =
      at::full({batch, k}, -1, heatmap.options().dtype(at::kLong));
  if (heatmap.numel() > 0) {
    launch(heatmap.contiguous(), boxes, scores, labels);
  }
  return {boxes, scores, labels};
}

}  // namespace heatmap_peaks
}  // namespace dets
