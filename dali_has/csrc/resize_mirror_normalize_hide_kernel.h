// The fused resize + flip + normalize + Hide-and-Seek operator's CUDA kernel: its plain-C++ interface (no DALI
// headers, as in hide_and_seek_kernel.h) and the per-pixel arithmetic, which is host-and-device code so that a
// test can run it on a machine without a GPU and compare it with the CPU operator.
#ifndef DALI_HAS_CSRC_RESIZE_MIRROR_NORMALIZE_HIDE_KERNEL_H_
#define DALI_HAS_CSRC_RESIZE_MIRROR_NORMALIZE_HIDE_KERNEL_H_

#include <cuda_runtime_api.h>
#include <cstdint>

#include "hide_and_seek_kernel.h"
#include "resize_filter.h"

namespace dali_has {

constexpr int kLevels = 256;  // uint8 levels: the rows of the output value table

// One sample, as both backends read it: its window of a uint8 HWC image, where the output goes, the two axes'
// filters and the Hide-and-Seek draw (the cell grid is on the output, after the flip).
struct ResizeSample {
  const uint8_t *in;  // the window's first pixel
  int64_t stride;     // between input rows, in elements (the whole image's row when reading a window of it)
  int32_t in_h, in_w, channels;
  int32_t out_h, out_w;
  uint32_t mirror;    // non-zero: flipped horizontally
  AxisFilter rows, cols;
  uint32_t size;      // grid cell size in pixels, 0 = hide nothing
  uint32_t grid_w;    // cells per grid row: ceil(out_w / size)
  uint64_t key;       // the draw's key (hide_and_seek_rule.h)
  void *out;
};

DALI_HAS_HOST_DEV inline int32_t ClampIndex(int32_t i, int32_t n) { return i < 0 ? 0 : i >= n ? n - 1 : i; }

// The uint8 levels of output pixel (x, y) of `s`, channels [0, C): the resized value summed as the CPU
// operator sums it (per source column the vertical taps in order, then the horizontal taps in order; source
// indices outside the window are its edge), rounded half up.
template <int C>
DALI_HAS_HOST_DEV inline void ResizedLevels(const ResizeSample &s, int32_t x, int32_t y, int32_t *level) {
  float fy, fx;
  const int32_t y0 = FirstTap(s.rows, y, &fy);
  const int32_t x0 = FirstTap(s.cols, s.mirror ? s.out_w - 1 - x : x, &fx);
  const float sum_y = TapSum(s.rows, fy), sum_x = TapSum(s.cols, fx);
  float acc[C] = {};  // set by the first tap (taps >= 2); zeroed only to keep compilers from warning
  for (int32_t kx = 0; kx < s.cols.taps; kx++) {
    const uint8_t *column = s.in + static_cast<int64_t>(ClampIndex(x0 + kx, s.in_w)) * C;
    float v[C] = {};
    for (int32_t ky = 0; ky < s.rows.taps; ky++) {
      const uint8_t *px = column + ClampIndex(y0 + ky, s.in_h) * s.stride;
      const float w = Tap(s.rows, fy, ky, sum_y);
      for (int c = 0; c < C; c++)
        v[c] = ky == 0 ? Mul(px[c], w) : Add(v[c], Mul(px[c], w));
    }
    const float w = Tap(s.cols, fx, kx, sum_x);
    for (int c = 0; c < C; c++)
      acc[c] = kx == 0 ? Mul(v[c], w) : Add(acc[c], Mul(v[c], w));
  }
  for (int c = 0; c < C; c++)
    level[c] = static_cast<int32_t>(Add(acc[c], 0.5f));
}

// Writes output pixel p (row-major index) of `s`, all C channels: the fill where its Hide-and-Seek cell is
// hidden (nothing is read then), else each channel's level looked up in `table` ([4][kLevels], one row per
// channel). T is only a container of the output element's bytes (the table holds float32 or float16 values).
template <typename T, int C, bool kCHW>
DALI_HAS_HOST_DEV inline void WritePixel(const ResizeSample &s, uint32_t p, const T *__restrict__ table,
                                         const T *__restrict__ fill, uint64_t threshold) {
  T *__restrict__ out = static_cast<T *>(s.out);
  const uint32_t w = s.out_w, npix = static_cast<uint32_t>(s.out_h) * w;
  const uint32_t y = p / w, x = p - y * w;
  if (s.size > 0 && threshold > 0 && CellHidden(s.key, (y / s.size) * s.grid_w + x / s.size, threshold)) {
    for (int c = 0; c < C; c++)
      out[kCHW ? static_cast<size_t>(c) * npix + p : static_cast<size_t>(p) * C + c] = fill[c];
    return;
  }
  int32_t level[C];
  ResizedLevels<C>(s, x, y, level);
  for (int c = 0; c < C; c++) {
    const int32_t l = level[c] < 0 ? 0 : level[c] > kLevels - 1 ? kLevels - 1 : level[c];  // never: a guard
    out[kCHW ? static_cast<size_t>(c) * npix + p : static_cast<size_t>(p) * C + c] = table[c * kLevels + l];
  }
}

// WritePixel for the sample's channel count (1 to 4, checked on the host).
template <typename T, bool kCHW>
DALI_HAS_HOST_DEV inline void WriteSamplePixel(const ResizeSample &s, uint32_t p, const T *__restrict__ table,
                                               const T *__restrict__ fill, uint64_t threshold) {
  switch (s.channels) {
    case 1: WritePixel<T, 1, kCHW>(s, p, table, fill, threshold); break;
    case 2: WritePixel<T, 2, kCHW>(s, p, table, fill, threshold); break;
    case 3: WritePixel<T, 3, kCHW>(s, p, table, fill, threshold); break;
    default: WritePixel<T, 4, kCHW>(s, p, table, fill, threshold); break;
  }
}

// A sample's description from its window (first pixel, row stride in elements, size, channels), its output,
// flip and Hide-and-Seek draw (host only).
inline ResizeSample MakeResizeSample(const uint8_t *in, int64_t stride, int32_t in_h, int32_t in_w, int32_t channels,
                                     void *out, int32_t out_h, int32_t out_w, bool mirror, uint32_t size,
                                     uint64_t key) {
  return {in, stride, in_h, in_w, channels, out_h, out_w, mirror ? 1u : 0u, MakeAxisFilter(in_h, out_h),
          MakeAxisFilter(in_w, out_w), size, size ? (out_w + size - 1) / size : 0u, key, out};
}

// Writes every sample's output in one pass, one thread per output pixel. `table` holds, per channel, the
// output value of each uint8 level ([4][256] elements of `elem_size` bytes: 4 = float32, 2 = float16), `fill`
// the hidden cells' value per channel; `samples`, `table` and `fill` are in device memory. `max_pixels`: the
// largest output's pixel count.
cudaError_t LaunchResizeMirrorNormalizeHide(const ResizeSample *samples, int num_samples, int64_t max_pixels,
                                            const void *table, const void *fill, int elem_size, bool chw,
                                            uint64_t threshold, cudaStream_t stream);

}  // namespace dali_has

#endif  // DALI_HAS_CSRC_RESIZE_MIRROR_NORMALIZE_HIDE_KERNEL_H_
