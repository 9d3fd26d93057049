// dali_has.resize_mirror_normalize_hide, CPU backend: from a decoded crop window to the network input in
// one pass over the output. Replaces fn.resize -> fn.crop_mirror_normalize -> dali_has.hide_and_seek.
// (The GPU backend, _gpu.cc / _gpu.cu, computes the same numbers one output pixel per CUDA thread.)
//
// Per output row: a vertical pass of the input rows into one float row (contiguous, vectorized), then a
// horizontal pass that writes the output pixels directly: rounded to uint8 as fn.resize's output is, then
// normalized with crop_mirror_normalize's arithmetic, (level - mean) * (1 / std) (float16 through a
// 256-entry table of those values). The flip is a reversed horizontal tap table; Hide-and-Seek cells, drawn
// like dali_has.hide_and_seek's on the output grid, are written as the fill and neither pass computes them.
//
// Vertical first because then the gather-heavy horizontal pass runs on output rows only and the float
// scratch is a single input row per thread that stays in L1. Float rather than fixed point because then the
// weights are DALI's own numbers and a pixel differs from the composed path only where the two summation
// orders round a value to neighbouring uint8 levels. The 4-float vectors are GCC/Clang vector extensions,
// SSE2 on baseline x86-64 (DALI's own CPU kernels assume no more); other targets are untested.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "resize_filter.h"
#include "resize_mirror_normalize_hide.h"

namespace dali_has {
namespace {

typedef float Float4 __attribute__((vector_size(16)));
typedef int32_t Int4 __attribute__((vector_size(16)));

// The taps of one axis: output index i reads `taps` consecutive source indices from first[i] on, with
// weights weight[i * taps + k]. Source indices outside the input are the edge (DALI clamps them); the
// passes below get that by padding their source with copies of the edge instead of clamping per tap.
struct AxisTaps {
  int taps = 0;
  int lo = 0, hi = 0;  // the source indices any output reads: [lo, hi), may exceed the input
  std::vector<int32_t> first;
  std::vector<float> weight;
};

// The taps of `f` for an axis resized to out_size (resize_filter.h). `reversed`: output index i takes the taps
// of out_size - 1 - i.
void ComputeTaps(const AxisFilter &f, int out_size, bool reversed, AxisTaps &t) {
  t.taps = f.taps;
  t.first.resize(out_size);
  t.weight.resize(static_cast<size_t>(out_size) * f.taps);
  for (int x = 0; x < out_size; x++) {
    float frac;
    int i = reversed ? out_size - 1 - x : x;
    t.first[i] = FirstTap(f, x, &frac);
    float *w = &t.weight[static_cast<size_t>(i) * f.taps];
    const float sum = TapSum(f, frac);
    for (int k = 0; k < f.taps; k++)
      w[k] = Tap(f, frac, k, sum);
  }
  auto [lo, hi] = std::minmax_element(t.first.begin(), t.first.end());
  t.lo = *lo;
  t.hi = *hi + f.taps;
}

// Values [begin, end) of one vertically resampled row: the weighted sum of T input rows, summed in
// DALI's order. T > 0 is the tap count known at compile time (unrolled), 0 = `taps` at run time.
template <int T>
void VerticalPass(const uint8_t *const *rows, const float *weights, int taps, int begin, int end,
                  float *__restrict out) {
  if constexpr (T > 0) {
    const uint8_t *r[T];
    float w[T];
    for (int k = 0; k < T; k++) {
      r[k] = rows[k];
      w[k] = weights[k];
    }
    for (int i = begin; i < end; i++) {
      float acc = r[0][i] * w[0];
      for (int k = 1; k < T; k++)
        acc += r[k][i] * w[k];
      out[i] = acc;
    }
  } else {
    for (int i = begin; i < end; i++)
      out[i] = rows[0][i] * weights[0];
    for (int k = 1; k < taps; k++) {
      const uint8_t *r = rows[k];
      const float w = weights[k];
      for (int i = begin; i < end; i++)
        out[i] += r[i] * w;
    }
  }
}

// What the per-pixel code needs to turn a uint8 level into the output value, as crop_mirror_normalize
// computes it: ConvertSat<Out>((level - mean) * inv_std). float16 reads it from a table; float computes
// it, four channels at a time, with the same two operations (so the same numbers).
template <typename Out>
struct OutputFormat {
  const Out *table;  // [kMaxChannels][256]: the normalized value of each uint8 level, per channel
  const Out *fill;   // [kMaxChannels]
  Float4 mean, inv_std;
  bool chw;
};

// The weighted sum of one output pixel's taps, all channels at once (C > 1; for C < 4 the spare lanes
// carry the next source pixel, unused). `src`: its first source value; `w`: its weights, broadcast.
template <int C, int T>
inline Float4 PixelSum(const float *src, const Float4 *w, int taps) {
  Float4 px, acc;
  std::memcpy(&px, src, sizeof(px));
  acc = px * w[0];
  for (int k = 1; k < (T > 0 ? T : taps); k++) {
    std::memcpy(&px, src + k * C, sizeof(px));
    acc += px * w[k];
  }
  return acc;
}

// Sums of non-negative weights that add up to 1 (within a few ulp) times values <= 255: the rounded
// uint8 level is within 0..255 without clamping. Rounds half up (values are >= 0).
inline Int4 Level(Float4 value) { return __builtin_convertvector(value + 0.5f, Int4); }

// Output pixels [x0, x1) of one row from the vertically resampled, edge-padded row: `row` points at its
// source pixel 0, `offsets[x]` is output x's first source value. `weights4`: the column weights, each
// broadcast to a 4-float vector. T as in VerticalPass.
template <int C, bool CHW, int T, typename Out>
void HorizontalPass(const float *row, const int64_t *offsets, const AxisTaps &cols, const Float4 *weights4,
                    int x0, int x1, const OutputFormat<Out> &fmt, Out *out, ptrdiff_t plane) {
  const int taps = T > 0 ? T : cols.taps;
  int x = x0;
  if constexpr (CHW && C > 1 && std::is_same_v<Out, float>) {
    // Four pixels at a time, transposed to one vector per channel: each plane gets 4-wide stores.
    Float4 mean[C], inv_std[C];
    for (int c = 0; c < C; c++) {
      mean[c] = Float4{} + fmt.mean[c];
      inv_std[c] = Float4{} + fmt.inv_std[c];
    }
    for (; x + 4 <= x1; x += 4) {
      Float4 p[4];
      for (int j = 0; j < 4; j++)
        p[j] = PixelSum<C, T>(row + offsets[x + j], &weights4[static_cast<size_t>(x + j) * taps], taps);
      for (int c = 0; c < C; c++) {
        Float4 level = __builtin_convertvector(Level(Float4{p[0][c], p[1][c], p[2][c], p[3][c]}), Float4);
        Float4 v = (level - mean[c]) * inv_std[c];
        std::memcpy(out + c * plane + x, &v, sizeof(v));
      }
    }
  }
  for (; x < x1; x++) {
    const float *src = row + offsets[x];
    Int4 level;
    if constexpr (C == 1) {
      const float *w = &cols.weight[static_cast<size_t>(x) * taps];
      float acc = src[0] * w[0];
      for (int k = 1; k < taps; k++)
        acc += src[k] * w[k];
      level[0] = static_cast<int32_t>(acc + 0.5f);
    } else {
      level = Level(PixelSum<C, T>(src, &weights4[static_cast<size_t>(x) * taps], taps));
    }
    if constexpr (std::is_same_v<Out, float>) {
      Float4 v = (__builtin_convertvector(level, Float4) - fmt.mean) * fmt.inv_std;
      if constexpr (!CHW && C > 1) {
        if (C == 4 || x + 1 < x1) {  // the spare lanes land on the next pixel, written next
          std::memcpy(out + x * C, &v, sizeof(v));
          continue;
        }
      }
      for (int c = 0; c < C; c++)
        (CHW ? out[c * plane + x] : out[x * C + c]) = v[c];
    } else {
      for (int c = 0; c < C; c++)
        (CHW ? out[c * plane + x] : out[x * C + c]) = fmt.table[c * 256 + level[c]];
    }
  }
}

// Calls f(std::integral_constant<int, T>) with T = taps for the counts fn.resize's filter has from 4x
// enlargement to 2.5x reduction, else T = 0 (run-time count).
template <typename F>
void WithTaps(int taps, F &&f) {
  switch (taps) {
    case 2: f(std::integral_constant<int, 2>()); break;
    case 3: f(std::integral_constant<int, 3>()); break;
    case 4: f(std::integral_constant<int, 4>()); break;
    case 5: f(std::integral_constant<int, 5>()); break;
    default: f(std::integral_constant<int, 0>()); break;
  }
}

// Per-thread buffers, reused across samples and iterations.
struct Scratch {
  AxisTaps rows, cols;
  std::vector<Float4> weights4;         // cols.weight broadcast
  std::vector<int64_t> offsets;         // per output column: its first source value in the row
  std::vector<float> row;               // one vertically resampled row, edge-padded (see ProcessSample)
  std::vector<const uint8_t *> taps;    // the input rows of one output row
  std::vector<CellRun> runs;
  std::vector<uint8_t> fill_row;        // a fully hidden HWC output row, as Out elements
};

template <int C, bool CHW, typename Out>
void ProcessSample(const ResizeSample &s, const OutputFormat<Out> &fmt, uint64_t threshold, Scratch &t) {
  const int H = s.out_h, W = s.out_w;
  ComputeTaps(s.rows, H, false, t.rows);
  ComputeTaps(s.cols, W, s.mirror != 0, t.cols);
  t.weights4.resize(t.cols.weight.size());
  for (size_t i = 0; i < t.cols.weight.size(); i++)
    t.weights4[i] = Float4{} + t.cols.weight[i];
  t.offsets.resize(W);
  for (int x = 0; x < W; x++)
    t.offsets[x] = int64_t{t.cols.first[x]} * C;
  // The row holds source columns [cols.lo, cols.hi) plus one pixel of slack for 4-wide loads; columns
  // outside the input are copies of its edge pixels.
  const int pad_left = std::max(0, -t.cols.lo);
  t.row.resize(static_cast<size_t>(t.cols.hi + pad_left + 1) * C);
  float *row = t.row.data() + pad_left * C;  // source column 0
  const ptrdiff_t plane = static_cast<ptrdiff_t>(H) * W;
  const ptrdiff_t stride = s.stride;
  const int ty = t.rows.taps, tx = t.cols.taps;
  t.taps.resize(ty);
  const bool hiding = s.size > 0 && threshold > 0;
  const uint32_t grid_w = hiding ? s.grid_w : 0;
  if (!hiding)
    t.runs.assign(1, CellRun{0, static_cast<uint32_t>(W), false});
  t.fill_row.resize(hiding && !CHW ? static_cast<size_t>(W) * C * sizeof(Out) : 0);
  Out *fill_row = reinterpret_cast<Out *>(t.fill_row.data());  // hidden HWC runs are copied from it
  for (int x = 0; x < (hiding && !CHW ? W : 0); x++)
    for (int c = 0; c < C; c++)
      fill_row[x * C + c] = fmt.fill[c];

  for (int y = 0; y < H; y++) {
    if (hiding && y % s.size == 0)
      CellRuns(s.key, y / s.size, grid_w, s.size, W, threshold, t.runs);
    for (int k = 0; k < ty; k++)
      t.taps[k] = s.in + std::clamp(t.rows.first[y] + k, 0, s.in_h - 1) * stride;
    const float *row_weights = &t.rows.weight[static_cast<size_t>(y) * ty];
    Out *out = static_cast<Out *>(s.out) + (CHW ? static_cast<ptrdiff_t>(y) * W
                                                : static_cast<ptrdiff_t>(y) * W * C);
    for (const CellRun &r : t.runs) {
      if (r.hidden) {
        if constexpr (CHW) {
          for (int c = 0; c < C; c++)
            std::fill(out + c * plane + r.x0, out + c * plane + r.x1, fmt.fill[c]);
        } else {
          std::copy(fill_row + r.x0 * C, fill_row + r.x1 * C, out + r.x0 * C);
        }
        continue;
      }
      // The source columns this run reads: `first` is monotonic in x (decreasing when mirrored).
      int a = t.cols.first[r.x0], b = t.cols.first[r.x1 - 1];
      int lo = std::min(a, b), hi = std::max(a, b) + tx;
      int in_lo = std::max(lo, 0), in_hi = std::min(hi, s.in_w);
      WithTaps(ty, [&](auto taps) {
        VerticalPass<decltype(taps)::value>(t.taps.data(), row_weights, ty, in_lo * C, in_hi * C, row);
      });
      for (int j = lo; j < 0; j++)
        std::memcpy(row + j * C, row, C * sizeof(float));
      for (int j = s.in_w; j < hi; j++)
        std::memcpy(row + j * C, row + (s.in_w - 1) * C, C * sizeof(float));
      WithTaps(tx, [&](auto taps) {
        HorizontalPass<C, CHW, decltype(taps)::value>(row, t.offsets.data(), t.cols, t.weights4.data(), r.x0,
                                                      r.x1, fmt, out, plane);
      });
    }
  }
}

template <typename Out>
void DispatchSample(const ResizeSample &s, const OutputFormat<Out> &fmt, uint64_t threshold, Scratch &t) {
  auto run = [&](auto channels) {
    constexpr int C = decltype(channels)::value;
    if (fmt.chw)
      ProcessSample<C, true>(s, fmt, threshold, t);
    else
      ProcessSample<C, false>(s, fmt, threshold, t);
  };
  switch (s.channels) {
    case 1: run(std::integral_constant<int, 1>()); break;
    case 2: run(std::integral_constant<int, 2>()); break;
    case 3: run(std::integral_constant<int, 3>()); break;
    default: run(std::integral_constant<int, 4>()); break;
  }
}

}  // namespace

class ResizeMirrorNormalizeHideCPU : public ResizeMirrorNormalizeHide<dali::CPUBackend> {
 public:
  explicit ResizeMirrorNormalizeHideCPU(const dali::OpSpec &spec)
      : ResizeMirrorNormalizeHide<dali::CPUBackend>(spec), scratch_(num_threads_) {
    for (int c = 0; c < kMaxChannels; c++) {
      mean_v_[c] = mean4_[c];
      inv_std_v_[c] = inv_std4_[c];
    }
  }

 protected:
  using dali::Operator<dali::CPUBackend>::RunImpl;

  void RunImpl(dali::Workspace &ws) override {
    PrepareSamples(ws);
    auto &pool = ws.GetThreadPool();
    const uint64_t threshold = has_.threshold();
    const bool chw = layout_ == "CHW";
    for (const ResizeSample &s : samples_) {
      pool.AddWork([&, s](int tid) {
        if (dtype_ == DALI_FLOAT)
          DispatchSample(s, OutputFormat<float>{nullptr, fill_f32_.data(), mean_v_, inv_std_v_, chw},
                         threshold, scratch_[tid]);
        else
          DispatchSample(s, OutputFormat<dali::float16>{table_f16_.data(), fill_f16_.data(), mean_v_,
                                                        inv_std_v_, chw}, threshold, scratch_[tid]);
      }, int64_t{s.in_h} * s.in_w);  // biggest input first
    }
    pool.RunAll();
  }

 private:
  Float4 mean_v_, inv_std_v_;
  std::vector<Scratch> scratch_;
};

}  // namespace dali_has

DALI_REGISTER_OPERATOR(dali_has__ResizeMirrorNormalizeHide, ::dali_has::ResizeMirrorNormalizeHideCPU,
                       ::dali::CPU);

DALI_SCHEMA(dali_has__ResizeMirrorNormalizeHide)
    .DocStr(R"(From a decoded crop window to the network input in one pass (CPU and GPU).

Resizes each uint8 HWC image to `size` like fn.resize's default (linear interpolation, antialiased
when shrinking), rounds to uint8 as fn.resize does, flips horizontally where `mirror` is non-zero,
normalizes as (x - mean) / std to `dtype` in `output_layout` like fn.crop_mirror_normalize, and applies
Hide-and-Seek on the output grid like dali_has.hide_and_seek (same draws for the same seed; `fill` is in
normalized units; patch_sizes=[0] or p_hide=0 hides nothing). Hidden cells are written as the fill,
never computed.)")
    .NumInput(1)
    .NumOutput(1)
    .AddArg("size", "Output (height, width) in pixels.", DALI_INT_VEC)
    .AddOptionalArg("mirror", "Per sample: non-zero flips the image horizontally.", 0, true)
    .AddOptionalArg<std::vector<int>>("crop_anchor", "Per sample: (y, x) of the window of the input to resize "
                                      "(with `crop_shape`); the whole image when not given.", nullptr, true)
    .AddOptionalArg<std::vector<int>>("crop_shape", "Per sample: (height, width) of that window, e.g. from "
                                      "fn.random_crop_generator.", nullptr, true)
    .AddOptionalArg("mean", "Subtracted per channel (one value or one per channel), on the 0..255 scale.",
                    std::vector<float>{0.f})
    .AddOptionalArg("std", "Divides per channel after the mean (one value or one per channel).",
                    std::vector<float>{1.f})
    .AddOptionalTypeArg("dtype", "Output type: float (float32) or float16.", DALI_FLOAT)
    .AddOptionalArg("output_layout", "\"CHW\" or \"HWC\".", dali::TensorLayout("CHW"))
    .AddParent(::dali_has::kHideAndSeekArgs)
    .AddRandomSeedArg();
