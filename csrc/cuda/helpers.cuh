// Device helpers shared by the CUDA kernels.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace dets {

constexpr int kNmsTile = 64;  // boxes per tile side = bits per mask word

// Correctly rounded arithmetic that nvcc may not contract into FMAs, so the
// IoU equals the CPU kernels' (and torchvision's) bit for bit.
__device__ __forceinline__ float add_rn(float a, float b) {
  return __fadd_rn(a, b);
}
__device__ __forceinline__ float sub_rn(float a, float b) {
  return __fsub_rn(a, b);
}
__device__ __forceinline__ float mul_rn(float a, float b) {
  return __fmul_rn(a, b);
}
__device__ __forceinline__ float div_rn(float a, float b) {
  return __fdiv_rn(a, b);
}
__device__ __forceinline__ double add_rn(double a, double b) {
  return __dadd_rn(a, b);
}
__device__ __forceinline__ double sub_rn(double a, double b) {
  return __dsub_rn(a, b);
}
__device__ __forceinline__ double mul_rn(double a, double b) {
  return __dmul_rn(a, b);
}
__device__ __forceinline__ double div_rn(double a, double b) {
  return __ddiv_rn(a, b);
}

// A box in the accumulation type with its area, (x2 - x1) * (y2 - y1).
template <typename T>
struct DevBox {
  T x1, y1, x2, y2, area;
};

template <typename T, typename scalar_t>
__device__ __forceinline__ DevBox<T> load_box(const scalar_t* p) {
  DevBox<T> b;
  b.x1 = static_cast<T>(p[0]);
  b.y1 = static_cast<T>(p[1]);
  b.x2 = static_cast<T>(p[2]);
  b.y2 = static_cast<T>(p[3]);
  b.area = mul_rn(sub_rn(b.x2, b.x1), sub_rn(b.y2, b.y1));
  return b;
}

// IoU in torchvision's order of operations; NaN for a NaN coordinate or an
// empty union. `a` plays the part of the kept (earlier) box.
template <typename T>
__device__ __forceinline__ T box_iou(const DevBox<T>& a, const DevBox<T>& b) {
  const T w = fmax(T(0), sub_rn(fmin(a.x2, b.x2), fmax(a.x1, b.x1)));
  const T h = fmax(T(0), sub_rn(fmin(a.y2, b.y2), fmax(a.y1, b.y1)));
  const T inter = mul_rn(w, h);
  return div_rn(inter, sub_rn(add_rn(a.area, b.area), inter));
}

// The largest T not above `threshold` ((v > result) == (double(v) >
// threshold) for every T value v), and the smallest T not below it.
template <typename T>
T lower_threshold_host(double threshold) {
  T t = static_cast<T>(threshold);
  if (!std::is_same_v<T, double> && static_cast<double>(t) > threshold) {
    t = std::nextafter(t, -std::numeric_limits<T>::infinity());
  }
  return t;
}

template <typename T>
T upper_threshold_host(double threshold) {
  T t = static_cast<T>(threshold);
  if (!std::is_same_v<T, double> && static_cast<double>(t) < threshold) {
    t = std::nextafter(t, std::numeric_limits<T>::infinity());
  }
  return t;
}

// Greedy NMS over `sorted_boxes` [n, 4] (visit order, contiguous) on the
// device: a box suppresses only later boxes before its `seg_end` (int64 [n];
// undefined: n). Returns bool [n], kept per visit position. Defined in
// nms.cu.
at::Tensor greedy_keep_cuda(const at::Tensor& sorted_boxes,
                            const at::Tensor& seg_end, double iou_threshold);

}  // namespace dets
