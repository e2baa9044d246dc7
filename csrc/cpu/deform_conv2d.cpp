// Deformable convolution (DCNv2) on the CPU, forward and backward.
//
// Layout: the input is copied once to NHWC with one extra all-zero pixel per
// image, so the four bilinear corners of a sample are contiguous runs of
// channels and a corner off the map simply points at the zero pixel (no
// branches in the channel loops, and no 0 * inf from pixels never read).
// The column matrix is built transposed, one row per output position and
// (group, tap, channel) along the row, so building it is a vectorised
// weighted sum of four channel runs per tap; each weight group is then one
// GEMM against the weight permuted to [C_out, kh, kw, C_in / groups].
//
// Threads: the forward splits (image, tile of output positions) tasks; each
// task builds its tile's columns in a buffer that stays in cache and runs its
// own single-threaded GEMM. The backward splits the images (each image's input
// gradient then has one owner: no atomics); every chunk of images sums its
// weight gradient into its own buffer and the chunks are added at the end, so
// the result depends on the thread count only through that last sum.
// The ATen calls work on internal tensors, so autograd is kept out of them. A
// worker thread of at::parallel_for does not inherit the caller's thread-local
// dispatch state: each task sets the caller's InferenceMode (ATen refuses to
// write an inference tensor outside it) and then keeps autograd out again,
// since InferenceMode(false) turns it back on.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "deform_conv2d_common.h"
#include "isa_clones.h"

namespace dets {
namespace {

using deform_conv2d_common::Sample;
using deform_conv2d_common::sample_at;
using deform_conv2d_common::sample_coord;
using deform_conv2d_common::Shape;

struct TaskModeGuard {
  explicit TaskModeGuard(bool inference) : inference_mode(inference) {}
  const c10::InferenceMode inference_mode;
  const at::AutoDispatchBelowADInplaceOrView no_autograd;
};

// Elements of the column buffer per tile: small enough to stay in L2 while
// its GEMM runs. The backward holds two such buffers (columns and their
// gradient) and amortises the weight-gradient accumulator over larger tiles.
constexpr int64_t kForwardTileElems = int64_t(1) << 18;
constexpr int64_t kBackwardTileElems = int64_t(1) << 19;

// One sample (position, offset group, tap): element offsets of its four
// corners in the padded NHWC image (channel 0), their weights with the mask
// folded in, and what the coordinate gradient needs.
template <typename T>
struct Tap {
  int64_t corner[4];
  T weight[4];  // mask * bilinear weight (0 off the map)
  T ly, lx, mask;
  T bilinear[4];  // without the mask, for the mask's gradient
};

// A run of channels [begin, end) in one weight group and one offset group.
struct Segment {
  int64_t begin, end, group, offset_group;
};

std::vector<Segment> channel_segments(const Shape& s) {
  const int64_t per_group = s.channels / s.groups;
  const int64_t per_offset_group = s.channels / s.offset_groups;
  std::vector<Segment> segments;
  for (int64_t c = 0; c < s.channels;) {
    const int64_t g = c / per_group, o = c / per_offset_group;
    const int64_t end =
        std::min((g + 1) * per_group, (o + 1) * per_offset_group);
    segments.push_back({c, end, g, o});
    c = end;
  }
  return segments;
}

// The samples of positions [p0, p1) of one image, [p - p0][offset group][tap].
template <typename T>
void plan_tile(const Shape& s, const T* offset_b, const T* mask_b, int64_t p0,
               int64_t p1, std::vector<Tap<T>>& taps) {
  const int64_t k_taps = s.taps(), plane = s.positions();
  const int64_t zero_pixel = s.height * s.width * s.channels;
  taps.resize((p1 - p0) * s.offset_groups * k_taps);
  Tap<T>* t = taps.data();
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t oy = p / s.out_w, ox = p % s.out_w;
    for (int64_t o = 0; o < s.offset_groups; ++o) {
      for (int64_t i = 0; i < s.kernel_h; ++i) {
        for (int64_t j = 0; j < s.kernel_w; ++j, ++t) {
          const int64_t k = i * s.kernel_w + j;
          const T* off = offset_b + (o * 2 * k_taps + 2 * k) * plane + p;
          const T y =
              sample_coord(oy, s.stride_h, s.pad_h, i, s.dilation_h, off[0]);
          const T x = sample_coord(ox, s.stride_w, s.pad_w, j, s.dilation_w,
                                   off[plane]);
          const Sample<T> sm = sample_at(y, x, s.height, s.width);
          const T m = s.use_mask ? mask_b[(o * k_taps + k) * plane + p] : T(1);
          const int64_t rows[4] = {sm.y_lo, sm.y_lo, sm.y_lo + 1, sm.y_lo + 1};
          const int64_t cols[4] = {sm.x_lo, sm.x_lo + 1, sm.x_lo, sm.x_lo + 1};
          for (int q = 0; q < 4; ++q) {
            t->corner[q] = sm.valid[q]
                               ? (rows[q] * s.width + cols[q]) * s.channels
                               : zero_pixel;
            t->bilinear[q] = sm.weight[q];
            t->weight[q] = m * sm.weight[q];
          }
          t->ly = sm.ly;
          t->lx = sm.lx;
          t->mask = m;
        }
      }
    }
  }
}

// dst[c] = sum of the tap's four weighted corner runs, for n channels.
template <typename T>
DETS_INLINE void gather_run(const T* image, const Tap<T>& t, int64_t n,
                            T* dst) {
  const T* p0 = image + t.corner[0];
  const T* p1 = image + t.corner[1];
  const T* p2 = image + t.corner[2];
  const T* p3 = image + t.corner[3];
  const T w0 = t.weight[0], w1 = t.weight[1], w2 = t.weight[2],
          w3 = t.weight[3];
#pragma omp simd
  for (int64_t c = 0; c < n; ++c) {
    dst[c] = w0 * p0[c] + w1 * p1[c] + w2 * p2[c] + w3 * p3[c];
  }
}

// Columns [p1 - p0, kh * kw * C] of a tile: row q, entry
// group * (kh * kw * C / groups) + tap * (C / groups) + channel in group.
template <typename T>
DETS_INLINE void build_columns(const Shape& s, const Segment* segments,
                               int64_t num_segments, const T* image,
                               const Tap<T>* taps, int64_t rows, T* cols) {
  const int64_t k_taps = s.taps();
  const int64_t per_group = s.channels / s.groups;
  const int64_t row_len = k_taps * s.channels;
  for (int64_t q = 0; q < rows; ++q) {
    T* row = cols + q * row_len;
    const Tap<T>* tq = taps + q * s.offset_groups * k_taps;
    for (int64_t n = 0; n < num_segments; ++n) {
      const Segment& seg = segments[n];
      const Tap<T>* to = tq + seg.offset_group * k_taps;
      T* dst = row + seg.group * k_taps * per_group + seg.begin -
               seg.group * per_group;
      for (int64_t k = 0; k < k_taps; ++k) {
        gather_run(image + seg.begin, to[k], seg.end - seg.begin,
                   dst + k * per_group);
      }
    }
  }
}

DETS_CHANNEL_LOOPS void build_columns_mv(
    const Shape& s, const Segment* segments, int64_t num_segments,
    const float* image, const Tap<float>* taps, int64_t rows, float* cols) {
  build_columns(s, segments, num_segments, image, taps, rows, cols);
}

DETS_CHANNEL_LOOPS void build_columns_mv(
    const Shape& s, const Segment* segments, int64_t num_segments,
    const double* image, const Tap<double>* taps, int64_t rows, double* cols) {
  build_columns(s, segments, num_segments, image, taps, rows, cols);
}

// For one tap and n channels: dots[q] += sum_c g[c] * corner_q[c], and the
// weighted gradient added to the four corners of grad_image. Corners off the
// map all point at the zero pixel, so the four updates stay separate loops
// (their targets may alias); the zero pixel of grad_image is discarded.
template <typename T>
DETS_INLINE void scatter_run(const T* image, T* grad_image, const Tap<T>& t,
                             const T* g, int64_t n, T dots[4]) {
  const T* p0 = image + t.corner[0];
  const T* p1 = image + t.corner[1];
  const T* p2 = image + t.corner[2];
  const T* p3 = image + t.corner[3];
  T d0 = 0, d1 = 0, d2 = 0, d3 = 0;
#pragma omp simd reduction(+ : d0, d1, d2, d3)
  for (int64_t c = 0; c < n; ++c) {
    d0 += g[c] * p0[c];
    d1 += g[c] * p1[c];
    d2 += g[c] * p2[c];
    d3 += g[c] * p3[c];
  }
  dots[0] += d0;
  dots[1] += d1;
  dots[2] += d2;
  dots[3] += d3;
  for (int q = 0; q < 4; ++q) {
    T* dst = grad_image + t.corner[q];
    const T w = t.weight[q];
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) dst[c] += w * g[c];
  }
}

// The input, offset and mask gradients of a tile from its column gradient
// (same layout as the columns).
template <typename T>
DETS_INLINE void scatter_columns(const Shape& s, const Segment* segments,
                                 const int64_t* first_segment, const T* image,
                                 T* grad_image, const Tap<T>* taps,
                                 const T* grad_cols, int64_t p0, int64_t rows,
                                 T* grad_offset_b, T* grad_mask_b) {
  const int64_t k_taps = s.taps(), plane = s.positions();
  const int64_t per_group = s.channels / s.groups;
  const int64_t row_len = k_taps * s.channels;
  for (int64_t q = 0; q < rows; ++q) {
    const T* grow = grad_cols + q * row_len;
    const int64_t p = p0 + q;
    for (int64_t o = 0; o < s.offset_groups; ++o) {
      const Tap<T>* to = taps + (q * s.offset_groups + o) * k_taps;
      for (int64_t k = 0; k < k_taps; ++k) {
        T dots[4] = {0, 0, 0, 0};
        for (int64_t n = first_segment[o]; n < first_segment[o + 1]; ++n) {
          const Segment& seg = segments[n];
          const T* g = grow + seg.group * k_taps * per_group + k * per_group +
                       seg.begin - seg.group * per_group;
          scatter_run(image + seg.begin, grad_image + seg.begin, to[k], g,
                      seg.end - seg.begin, dots);
        }
        const Tap<T>& t = to[k];
        Sample<T> sm;
        sm.ly = t.ly;
        sm.lx = t.lx;
        T* go = grad_offset_b + (o * 2 * k_taps + 2 * k) * plane + p;
        go[0] = t.mask * deform_conv2d_common::grad_y(sm, dots);
        go[plane] = t.mask * deform_conv2d_common::grad_x(sm, dots);
        if (s.use_mask) {
          grad_mask_b[(o * k_taps + k) * plane + p] =
              t.bilinear[0] * dots[0] + t.bilinear[1] * dots[1] +
              t.bilinear[2] * dots[2] + t.bilinear[3] * dots[3];
        }
      }
    }
  }
}

DETS_CHANNEL_LOOPS void scatter_columns_mv(
    const Shape& s, const Segment* segments, const int64_t* first_segment,
    const float* image, float* grad_image, const Tap<float>* taps,
    const float* grad_cols, int64_t p0, int64_t rows, float* grad_offset_b,
    float* grad_mask_b) {
  scatter_columns(s, segments, first_segment, image, grad_image, taps,
                  grad_cols, p0, rows, grad_offset_b, grad_mask_b);
}

DETS_CHANNEL_LOOPS void scatter_columns_mv(
    const Shape& s, const Segment* segments, const int64_t* first_segment,
    const double* image, double* grad_image, const Tap<double>* taps,
    const double* grad_cols, int64_t p0, int64_t rows, double* grad_offset_b,
    double* grad_mask_b) {
  scatter_columns(s, segments, first_segment, image, grad_image, taps,
                  grad_cols, p0, rows, grad_offset_b, grad_mask_b);
}

// input [B, C, H, W] as [B, H * W + 1, C] with a zero last pixel per image.
at::Tensor padded_nhwc(const at::Tensor& input) {
  const int64_t b = input.size(0), c = input.size(1);
  const int64_t pixels = input.size(2) * input.size(3);
  at::Tensor out = at::empty({b, pixels + 1, c}, input.options());
  out.narrow(1, 0, pixels)
      .view({b, input.size(2), input.size(3), c})
      .copy_(input.permute({0, 2, 3, 1}));
  out.select(1, pixels).zero_();
  return out;
}

// weight [C_out, C_in / groups, kh, kw] as [C_out, kh * kw * C_in / groups]
// (tap-major rows, matching the columns).
at::Tensor tap_major(const at::Tensor& weight) {
  return weight.permute({0, 2, 3, 1}).contiguous().view({weight.size(0), -1});
}

int64_t tile_rows(const Shape& s, int64_t budget) {
  const int64_t row_len = s.taps() * s.channels;
  return std::clamp<int64_t>(budget / row_len, 1, s.positions());
}

template <typename T>
void forward_impl(const Shape& s, const at::Tensor& nhwc,
                  const at::Tensor& offset, const at::Tensor& mask,
                  const at::Tensor& weight_rows, const at::Tensor& bias,
                  at::Tensor& out) {
  const std::vector<Segment> segments = channel_segments(s);
  const int64_t plane = s.positions(), k_taps = s.taps();
  const int64_t row_len = k_taps * s.channels;
  const int64_t per_group = s.channels / s.groups;
  const int64_t out_per_group = s.out_channels / s.groups;
  const int64_t rows = tile_rows(s, kForwardTileElems);
  const int64_t tiles = (plane + rows - 1) / rows;
  const T* feat = nhwc.data_ptr<T>();
  const T* off = offset.data_ptr<T>();
  const T* msk = s.use_mask ? mask.data_ptr<T>() : nullptr;
  const T* b_data = bias.data_ptr<T>();
  const int64_t image_size = nhwc.size(1) * s.channels;
  const int64_t offset_size = 2 * s.offset_groups * k_taps * plane;
  const int64_t mask_size = s.offset_groups * k_taps * plane;
  const bool inference = c10::InferenceMode::is_enabled();
  at::parallel_for(0, s.batch * tiles, 1, [&](int64_t begin, int64_t end) {
    const TaskModeGuard same_mode_as_caller(inference);
    std::vector<Tap<T>> taps;
    at::Tensor cols = at::empty({rows, row_len}, nhwc.options());
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / tiles;
      const int64_t p0 = (task % tiles) * rows;
      const int64_t n = std::min(rows, plane - p0);
      plan_tile(s, off + b * offset_size, msk ? msk + b * mask_size : nullptr,
                p0, p0 + n, taps);
      build_columns_mv(
          s, segments.data(), static_cast<int64_t>(segments.size()),
          feat + b * image_size, taps.data(), n, cols.data_ptr<T>());
      const at::Tensor tile_cols = cols.narrow(0, 0, n);
      const at::Tensor out_b = out.select(0, b).view({s.out_channels, plane});
      for (int64_t g = 0; g < s.groups; ++g) {
        at::Tensor dst =
            out_b.narrow(0, g * out_per_group, out_per_group).narrow(1, p0, n);
        at::mm_out(
            dst, weight_rows.narrow(0, g * out_per_group, out_per_group),
            tile_cols.narrow(1, g * k_taps * per_group, k_taps * per_group)
                .t());
      }
      T* o = out_b.data_ptr<T>();
      for (int64_t c = 0; c < s.out_channels; ++c) {
        T* row = o + c * plane + p0;
        const T bc = b_data[c];
        for (int64_t q = 0; q < n; ++q) row[q] += bc;
      }
    }
  });
}

template <typename T>
void backward_impl(const Shape& s, const at::Tensor& grad,
                   const at::Tensor& nhwc, const at::Tensor& offset,
                   const at::Tensor& mask, const at::Tensor& weight_rows,
                   at::Tensor& grad_nhwc, at::Tensor& grad_offset,
                   at::Tensor& grad_mask, at::Tensor& grad_weight_rows) {
  const std::vector<Segment> segments = channel_segments(s);
  std::vector<int64_t> first_segment(s.offset_groups + 1,
                                     static_cast<int64_t>(segments.size()));
  for (int64_t n = static_cast<int64_t>(segments.size()) - 1; n >= 0; --n) {
    first_segment[segments[n].offset_group] = n;
  }
  const int64_t plane = s.positions(), k_taps = s.taps();
  const int64_t row_len = k_taps * s.channels;
  const int64_t per_group = s.channels / s.groups;
  const int64_t out_per_group = s.out_channels / s.groups;
  const int64_t rows = tile_rows(s, kBackwardTileElems);
  const int64_t image_size = nhwc.size(1) * s.channels;
  const int64_t offset_size = 2 * s.offset_groups * k_taps * plane;
  const int64_t mask_size = s.offset_groups * k_taps * plane;
  const T* feat = nhwc.data_ptr<T>();
  const T* off = offset.data_ptr<T>();
  const T* msk = s.use_mask ? mask.data_ptr<T>() : nullptr;
  T* g_feat = grad_nhwc.data_ptr<T>();
  T* g_off = grad_offset.data_ptr<T>();
  T* g_msk = s.use_mask ? grad_mask.data_ptr<T>() : nullptr;
  const int64_t chunks = std::min<int64_t>(s.batch, at::get_num_threads());
  at::Tensor partial = at::zeros({chunks, s.out_channels, k_taps * per_group},
                                 weight_rows.options());
  const bool inference = c10::InferenceMode::is_enabled();
  at::parallel_for(0, chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    const TaskModeGuard same_mode_as_caller(inference);
    std::vector<Tap<T>> taps;
    at::Tensor cols = at::empty({rows, row_len}, nhwc.options());
    at::Tensor grad_cols = at::empty({rows, row_len}, nhwc.options());
    for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
      at::Tensor acc = partial.select(0, chunk);
      for (int64_t b = chunk * s.batch / chunks;
           b < (chunk + 1) * s.batch / chunks; ++b) {
        const at::Tensor grad_b =
            grad.select(0, b).view({s.out_channels, plane});
        for (int64_t p0 = 0; p0 < plane; p0 += rows) {
          const int64_t n = std::min(rows, plane - p0);
          plan_tile(s, off + b * offset_size,
                    msk ? msk + b * mask_size : nullptr, p0, p0 + n, taps);
          build_columns_mv(
              s, segments.data(), static_cast<int64_t>(segments.size()),
              feat + b * image_size, taps.data(), n, cols.data_ptr<T>());
          const at::Tensor tile_cols = cols.narrow(0, 0, n);
          at::Tensor tile_grad_cols = grad_cols.narrow(0, 0, n);
          for (int64_t g = 0; g < s.groups; ++g) {
            const at::Tensor grad_g =
                grad_b.narrow(0, g * out_per_group, out_per_group)
                    .narrow(1, p0, n);
            const int64_t c0 = g * k_taps * per_group;
            acc.narrow(0, g * out_per_group, out_per_group)
                .addmm_(grad_g, tile_cols.narrow(1, c0, k_taps * per_group));
            at::Tensor dst = tile_grad_cols.narrow(1, c0, k_taps * per_group);
            at::mm_out(dst, grad_g.t(),
                       weight_rows.narrow(0, g * out_per_group, out_per_group));
          }
          scatter_columns_mv(s, segments.data(), first_segment.data(),
                             feat + b * image_size, g_feat + b * image_size,
                             taps.data(), grad_cols.data_ptr<T>(), p0, n,
                             g_off + b * offset_size,
                             g_msk ? g_msk + b * mask_size : nullptr);
        }
      }
    }
  });
  grad_weight_rows.copy_(partial.sum(0));
}

at::Tensor deform_conv2d_cpu(const at::Tensor& input, const at::Tensor& weight,
                             const at::Tensor& offset, const at::Tensor& mask,
                             const at::Tensor& bias, int64_t stride_h,
                             int64_t stride_w, int64_t pad_h, int64_t pad_w,
                             int64_t dilation_h, int64_t dilation_w,
                             int64_t groups, int64_t offset_groups,
                             bool use_mask) {
  const at::AutoDispatchBelowADInplaceOrView no_autograd;
  const Shape s = deform_conv2d_common::check_forward(
      input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w,
      dilation_h, dilation_w, groups, offset_groups, use_mask);
  at::Tensor out =
      at::empty({s.batch, s.out_channels, s.out_h, s.out_w}, input.options());
  if (s.batch == 0) return out;
  const at::Tensor nhwc = padded_nhwc(input);
  const at::Tensor weight_rows = tap_major(weight);
  const at::Tensor off = offset.contiguous();
  const at::Tensor msk = use_mask ? mask.contiguous() : mask;
  const at::Tensor b = bias.contiguous();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "deform_conv2d_cpu", [&] {
    forward_impl<scalar_t>(s, nhwc, off, msk, weight_rows, b, out);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
deform_conv2d_backward_cpu(const at::Tensor& grad, const at::Tensor& input,
                           const at::Tensor& weight, const at::Tensor& offset,
                           const at::Tensor& mask, const at::Tensor& bias,
                           int64_t stride_h, int64_t stride_w, int64_t pad_h,
                           int64_t pad_w, int64_t dilation_h,
                           int64_t dilation_w, int64_t groups,
                           int64_t offset_groups, bool use_mask) {
  const at::AutoDispatchBelowADInplaceOrView no_autograd;
  const Shape s = deform_conv2d_common::check_backward(
      grad, input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w,
      dilation_h, dilation_w, groups, offset_groups, use_mask);
  at::Tensor grad_offset = at::zeros_like(offset, at::MemoryFormat::Contiguous);
  at::Tensor grad_mask = at::zeros_like(mask, at::MemoryFormat::Contiguous);
  at::Tensor grad_bias = grad.sum({0, 2, 3});
  if (s.batch == 0) {
    return {at::zeros_like(input), at::zeros_like(weight), grad_offset,
            grad_mask, grad_bias};
  }
  const at::Tensor nhwc = padded_nhwc(input);
  const at::Tensor weight_rows = tap_major(weight);
  at::Tensor grad_nhwc = at::zeros_like(nhwc);
  at::Tensor grad_weight_rows = at::empty_like(weight_rows);
  const at::Tensor g = grad.contiguous();
  const at::Tensor off = offset.contiguous();
  const at::Tensor msk = use_mask ? mask.contiguous() : mask;
  AT_DISPATCH_FLOATING_TYPES(
      input.scalar_type(), "deform_conv2d_backward_cpu", [&] {
        backward_impl<scalar_t>(s, g, nhwc, off, msk, weight_rows, grad_nhwc,
                                grad_offset, grad_mask, grad_weight_rows);
      });
  at::Tensor grad_input = grad_nhwc.narrow(1, 0, s.height * s.width)
                              .view({s.batch, s.height, s.width, s.channels})
                              .permute({0, 3, 1, 2})
                              .contiguous();
  at::Tensor grad_weight =
      grad_weight_rows
          .view({s.out_channels, s.kernel_h, s.kernel_w, weight.size(1)})
          .permute({0, 3, 1, 2})
          .contiguous();
  return {grad_input, grad_weight, grad_offset, grad_mask, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(dets, CPU, m) {
  m.impl("deform_conv2d", deform_conv2d_cpu);
  m.impl("_deform_conv2d_backward", deform_conv2d_backward_cpu);
}

}  // namespace dets
