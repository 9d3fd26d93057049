// The fused resize operator's CUDA kernel body (resize_mirror_normalize_hide_kernel.h: what each GPU thread
// runs for its output pixel) run on the host for every pixel of one sample, so that tests on a machine
// without a GPU can compare the kernel's arithmetic with the CPU operator. Built by the test that loads it.
#include <cstdint>

#include "resize_mirror_normalize_hide_kernel.h"

extern "C" void write_sample(const uint8_t *image, int64_t width, int32_t channels, int32_t win_y, int32_t win_x,
                             int32_t win_h, int32_t win_w, void *out, int32_t out_h, int32_t out_w, int32_t mirror,
                             uint32_t size, uint64_t key, uint64_t threshold, const void *table, const void *fill,
                             int32_t elem_size, int32_t chw) {
  using dali_has::WriteSamplePixel;
  const int64_t stride = width * channels;
  const dali_has::ResizeSample s = dali_has::MakeResizeSample(
      image + win_y * stride + int64_t{win_x} * channels, stride, win_h, win_w, channels, out, out_h, out_w,
      mirror != 0, size, key);
  for (uint32_t p = 0; p < static_cast<uint32_t>(out_h) * out_w; p++) {
    if (elem_size == 4) {
      auto *t = static_cast<const uint32_t *>(table), *f = static_cast<const uint32_t *>(fill);
      chw ? WriteSamplePixel<uint32_t, true>(s, p, t, f, threshold)
          : WriteSamplePixel<uint32_t, false>(s, p, t, f, threshold);
    } else {
      auto *t = static_cast<const uint16_t *>(table), *f = static_cast<const uint16_t *>(fill);
      chw ? WriteSamplePixel<uint16_t, true>(s, p, t, f, threshold)
          : WriteSamplePixel<uint16_t, false>(s, p, t, f, threshold);
    }
  }
}

extern "C" uint64_t hide_threshold(double p_hide) { return dali_has::HideThreshold(p_hide); }
