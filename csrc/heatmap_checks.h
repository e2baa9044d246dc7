// Argument checks shared by the CPU and CUDA launchers of the heatmap
// decoders, so that both devices reject the same inputs with the same words.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace dets {

// `map`, a per-pixel regression map read at the heatmap's peaks, must be
// [B, channels, H, W] like `heatmap` and share its dtype (and, with
// `same_device`, its device: only the CUDA launchers can be handed a map on
// another device).
inline void check_decode_map(const char* op, const char* name,
                             const at::Tensor& map, const at::Tensor& heatmap,
                             int64_t channels, bool same_device) {
  TORCH_CHECK(map.dim() == 4 && map.size(0) == heatmap.size(0) &&
                  map.size(1) == channels && map.size(2) == heatmap.size(2) &&
                  map.size(3) == heatmap.size(3),
              op, ": ", name, " must be [B, ", channels,
              ", H, W] matching heatmap, got ", map.sizes());
  TORCH_CHECK(map.scalar_type() == heatmap.scalar_type() &&
                  (!same_device || map.device() == heatmap.device()),
              op, ": ", name, " and heatmap must share a dtype",
              same_device ? " and device" : "");
}

}  // namespace dets
