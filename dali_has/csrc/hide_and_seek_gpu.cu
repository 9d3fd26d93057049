// The Hide-and-Seek CUDA kernel: one pass over the batch, one thread per pixel.
//
// Cell decisions are recomputed per pixel from the sample's key (a splitmix64 hash, ~20 integer
// instructions) instead of being drawn on the host into a mask buffer: the host then only draws a
// size and a key per sample, the upload stays a few bytes per sample whatever the grid (S = 1 on a
// large image would need a mask as large as the image), and the kernel has no shared-memory staging
// or barriers. The extra arithmetic hides behind the memory traffic, which is what the kernel costs.
#include <cstdint>

#include "hide_and_seek_kernel.h"

namespace dali_has {
namespace {

// T is only a container of the element's bytes (uint8 / float16 / float32 are copied, never
// computed on), so three instantiations cover all dtypes.
template <typename T, bool kCHW>
__global__ void HideAndSeekKernel(const SampleDesc *samples, const T *__restrict__ fill,
                                  uint64_t threshold) {
  const SampleDesc s = samples[blockIdx.y];
  const T *__restrict__ in = static_cast<const T *>(s.in);
  T *__restrict__ out = static_cast<T *>(s.out);
  const uint32_t npix = s.height * s.width;
  for (uint32_t p = blockIdx.x * blockDim.x + threadIdx.x; p < npix; p += gridDim.x * blockDim.x) {
    bool hidden = false;
    if (s.size) {  // uniform per sample: no divergence within a warp
      uint32_t y = p / s.width, x = p - y * s.width;
      hidden = CellHidden(s.key, (y / s.size) * s.grid_w + x / s.size, threshold);
    }
    // Neighbouring threads touch neighbouring pixels: coalesced per plane (CHW), or one contiguous
    // span of C elements per thread that the warp covers without gaps (HWC).
    for (uint32_t c = 0; c < s.channels; c++) {
      size_t i = kCHW ? size_t{c} * npix + p : size_t{p} * s.channels + c;
      out[i] = hidden ? fill[c] : in[i];
    }
  }
}

template <typename T>
cudaError_t Launch(const SampleDesc *samples, int n, uint64_t max_pixels, const void *fill,
                   bool chw, uint64_t threshold, cudaStream_t stream) {
  constexpr unsigned kThreads = 256;
  // Enough blocks per sample to fill the GPU for small batches, few enough that each thread
  // loops over several pixels for large ones (the grid-stride loop covers the rest).
  uint64_t per_sample = (max_pixels + kThreads - 1) / kThreads;
  uint64_t cap = n >= 1024 ? 1 : 1024 / n;
  dim3 grid(static_cast<unsigned>(per_sample < cap ? per_sample : cap), n);
  const T *f = static_cast<const T *>(fill);
  if (chw)
    HideAndSeekKernel<T, true><<<grid, kThreads, 0, stream>>>(samples, f, threshold);
  else
    HideAndSeekKernel<T, false><<<grid, kThreads, 0, stream>>>(samples, f, threshold);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchHideAndSeek(const SampleDesc *samples, int num_samples, uint64_t max_pixels,
                              const void *fill, int elem_size, bool chw, uint64_t threshold,
                              cudaStream_t stream) {
  switch (elem_size) {
    case 1: return Launch<uint8_t>(samples, num_samples, max_pixels, fill, chw, threshold, stream);
    case 2: return Launch<uint16_t>(samples, num_samples, max_pixels, fill, chw, threshold, stream);
    case 4: return Launch<uint32_t>(samples, num_samples, max_pixels, fill, chw, threshold, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace dali_has
