// Hide-and-Seek pieces shared by the CPU operator and the CUDA kernel.
// No DALI headers here: nvcc (CUDA 13) compiles the kernel without DALI's headers, which target the
// CUDA 12 toolkit the DALI wheel was built with; only this plain-C++ interface crosses that boundary.
#ifndef DALI_HAS_CSRC_HIDE_AND_SEEK_KERNEL_H_
#define DALI_HAS_CSRC_HIDE_AND_SEEK_KERNEL_H_

#include <cuda_runtime_api.h>
#include <cstdint>

#ifdef __CUDACC__
#define DALI_HAS_HOST_DEV __host__ __device__
#else
#define DALI_HAS_HOST_DEV
#endif

namespace dali_has {

// What the kernels need to know about one sample; its randomness is already drawn (size, key).
struct SampleDesc {
  const void *in;
  void *out;
  uint32_t height, width, channels;
  uint32_t size;    // grid cell size in pixels, 0 = hide nothing
  uint32_t grid_w;  // cells per grid row: ceil(width / size)
  uint64_t key;     // per-sample random key, drawn from DALI's per-sample Philox stream
};

// Cell `cell` of a sample is hidden iff u < p_hide with u = (hash >> 11) * 2^-53 in [0, 1).
// The hash is the splitmix64 output at position `cell` of the stream keyed by the sample's key:
// counter-based, so the CPU loop and the CUDA kernel (which recomputes it per pixel) agree bit for bit.
DALI_HAS_HOST_DEV inline bool CellHidden(uint64_t key, uint64_t cell, uint64_t threshold) {
  uint64_t z = key + (cell + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (z >> 11) < threshold;
}

// Integer form of "u < p" for the 53-bit u above: u < p  <=>  (hash >> 11) < ceil(p * 2^53).
// p = 0 gives 0 (never hidden), p = 1 gives 2^53 (always hidden).
inline uint64_t HideThreshold(double p_hide) {
  double t = p_hide * 9007199254740992.0;  // exact: scaling by a power of two
  uint64_t ti = static_cast<uint64_t>(t);
  return ti + (static_cast<double>(ti) < t ? 1 : 0);
}

// Writes every sample's output in one pass. `fill` holds the fill value per channel in the element
// type (`elem_size` bytes each, 4-byte aligned); `samples` and `fill` are in device memory.
cudaError_t LaunchHideAndSeek(const SampleDesc *samples, int num_samples, uint64_t max_pixels,
                              const void *fill, int elem_size, bool chw, uint64_t threshold,
                              cudaStream_t stream);

}  // namespace dali_has

#endif  // DALI_HAS_CSRC_HIDE_AND_SEEK_KERNEL_H_
