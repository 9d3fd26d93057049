// fn.resize's default filter on one axis, with DALI's float arithmetic step for step so the weights are the
// same numbers: linear interpolation when enlarging (a triangle of radius 1), a triangle of radius in/out when
// shrinking (antialiasing). Shared by the fused operator's CPU passes and its CUDA kernel, so both compute
// every weight alike. No DALI headers (nvcc compiles this; see hide_and_seek_kernel.h).
//
// Products and sums go through Mul/Add: nvcc would otherwise contract a * b + c into one fused multiply-add,
// which rounds once instead of twice and makes the GPU's numbers differ from the CPU's (the CPU operators are
// built with -ffp-contract=off, plugin_build.CXX_FLAGS, so g++ fuses none on any host).
#ifndef DALI_HAS_CSRC_RESIZE_FILTER_H_
#define DALI_HAS_CSRC_RESIZE_FILTER_H_

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "hide_and_seek_kernel.h"  // DALI_HAS_HOST_DEV

namespace dali_has {

DALI_HAS_HOST_DEV inline float Mul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

DALI_HAS_HOST_DEV inline float Add(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

// The [0, 1, 0] table that DALI's triangle filter interpolates linearly (ResamplingFilter::operator()).
DALI_HAS_HOST_DEV inline float Triangle(float x) {
  if (!(x > -1.f) || x >= 3.f)
    return 0.f;
  int x0 = static_cast<int>(floorf(x)), x1 = x0 + 1;
  float d = x - x0;
  float f0 = x0 == 1 ? 1.f : 0.f;  // kCoeffs[x0] of {0, 1, 0}; 0 outside it
  float f1 = x1 == 1 ? 1.f : 0.f;
  return Add(f0, Mul(d, f1 - f0));
}

// One axis of one sample: output index x reads `taps` consecutive source indices from FirstTap(x) on.
struct AxisFilter {
  float scale;         // in / out
  float origin;        // the source coordinate of output 0's first tap, before rounding up
  float filter_scale;  // the triangle's argument per source pixel
  int32_t taps;
};

// InitializeResamplingFilter and ResamplingFilter::rescale / support for in_size -> out_size (host only: once
// per sample).
inline AxisFilter MakeAxisFilter(int in_size, int out_size) {
  const float in = in_size, out = out_size;
  const float radius = in > out ? in / out : 1.f;            // DefaultFilterRadius
  const float filter_scale = 2 / std::max(1.f, 2 * radius);  // ResamplingFilter::rescale
  const float anchor = 1.f * 1.f / filter_scale;             // anchor * old_scale / scale
  const int taps = std::ceil(2 / filter_scale);              // ResamplingFilter::support
  const float scale = in / out;
  return {scale, 0.5f * scale - 0.5f - anchor, filter_scale, taps};
}

// Output index x's first source index; *frac gets its distance to the exact source coordinate.
DALI_HAS_HOST_DEV inline int32_t FirstTap(const AxisFilter &f, int32_t x, float *frac) {
  float sx0f = Add(Mul(static_cast<float>(x), f.scale), f.origin);
  int32_t sx0 = static_cast<int32_t>(ceilf(sx0f));
  *frac = sx0 - sx0f;
  return sx0;
}

// Tap k's weight before normalization, for the `frac` FirstTap gave.
DALI_HAS_HOST_DEV inline float RawTap(const AxisFilter &f, float frac, int32_t k) {
  return Triangle(Mul(Add(frac, static_cast<float>(k)), f.filter_scale));
}

// The sum of all raw taps, in tap order: what each weight is divided by.
DALI_HAS_HOST_DEV inline float TapSum(const AxisFilter &f, float frac) {
  float sum = 0.f;
  for (int32_t k = 0; k < f.taps; k++)
    sum = Add(sum, RawTap(f, frac, k));
  return sum;
}

// Tap k's weight: the raw tap over their sum (weights that add up to 1), or 0 where all are 0.
DALI_HAS_HOST_DEV inline float Tap(const AxisFilter &f, float frac, int32_t k, float sum) {
  float w = RawTap(f, frac, k);
  return sum != 0.f ? w / sum : w;
}

}  // namespace dali_has

#endif  // DALI_HAS_CSRC_RESIZE_FILTER_H_
