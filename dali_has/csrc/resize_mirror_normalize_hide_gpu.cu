// The fused resize + flip + normalize + Hide-and-Seek CUDA kernel: one thread per output pixel, all channels.
//
// Each thread computes its taps' weights itself (resize_filter.h: a few multiplies and one division per tap)
// instead of reading tables drawn on the host, so the host describes a sample in a few dozen bytes whatever
// its size, and one launch covers the batch. A hidden cell's pixels read nothing: they are written as the fill.
#include <cstdint>

#include "resize_mirror_normalize_hide_kernel.h"

namespace dali_has {
namespace {

// One block row per sample (blockIdx.y), a grid-stride loop over its output pixels. Neighbouring threads write
// neighbouring pixels: coalesced per plane (CHW), or one contiguous span of C elements per thread that the
// warp covers without gaps (HWC). Whether a sample hides anything and its channel count are uniform per block.
template <typename T, bool kCHW>
__global__ void ResizeMirrorNormalizeHideKernel(const ResizeSample *samples, const T *__restrict__ table,
                                                const T *__restrict__ fill, uint64_t threshold) {
  const ResizeSample s = samples[blockIdx.y];
  const uint32_t npix = static_cast<uint32_t>(s.out_h) * s.out_w;
  for (uint32_t p = blockIdx.x * blockDim.x + threadIdx.x; p < npix; p += gridDim.x * blockDim.x)
    WriteSamplePixel<T, kCHW>(s, p, table, fill, threshold);
}

template <typename T>
cudaError_t Launch(const ResizeSample *samples, int n, int64_t max_pixels, const void *table, const void *fill,
                   bool chw, uint64_t threshold, cudaStream_t stream) {
  constexpr unsigned kThreads = 256;
  // As in the Hide-and-Seek kernel: enough blocks per sample to fill the GPU for small batches, and a
  // grid-stride loop over the rest for large ones.
  int64_t per_sample = (max_pixels + kThreads - 1) / kThreads;
  int64_t cap = n >= 1024 ? 1 : 1024 / n;
  dim3 grid(static_cast<unsigned>(per_sample < cap ? per_sample : cap), n);
  const T *t = static_cast<const T *>(table), *f = static_cast<const T *>(fill);
  if (chw)
    ResizeMirrorNormalizeHideKernel<T, true><<<grid, kThreads, 0, stream>>>(samples, t, f, threshold);
  else
    ResizeMirrorNormalizeHideKernel<T, false><<<grid, kThreads, 0, stream>>>(samples, t, f, threshold);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchResizeMirrorNormalizeHide(const ResizeSample *samples, int num_samples, int64_t max_pixels,
                                            const void *table, const void *fill, int elem_size, bool chw,
                                            uint64_t threshold, cudaStream_t stream) {
  switch (elem_size) {
    case 2: return Launch<uint16_t>(samples, num_samples, max_pixels, table, fill, chw, threshold, stream);
    case 4: return Launch<uint32_t>(samples, num_samples, max_pixels, table, fill, chw, threshold, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace dali_has
