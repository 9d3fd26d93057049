// The dali_has.resize_mirror_normalize_hide operator: argument and input checks, the per-channel output
// values of each uint8 level, the windows and the batch's random draws, shared by the CPU backend (per-row
// passes, resize_mirror_normalize_hide_cpu.cc) and the GPU backend (one CUDA kernel, _gpu.cc / _gpu.cu); each
// backend only writes the pixels (RunImpl).
#ifndef DALI_HAS_CSRC_RESIZE_MIRROR_NORMALIZE_HIDE_H_
#define DALI_HAS_CSRC_RESIZE_MIRROR_NORMALIZE_HIDE_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "dali/core/convert.h"
#include "dali/core/float16.h"
#include "dali/operators/random/rng_base.h"
#include "dali/pipeline/operator/operator.h"
#include "hide_and_seek_rule.h"
#include "resize_mirror_normalize_hide_kernel.h"

namespace dali_has {

constexpr int kMaxChannels = 4;  // one pixel is one 4-float vector in the CPU's horizontal pass

// OperatorWithRng gives the op DALI's own seeding, as for dali_has.hide_and_seek (hide_and_seek.h).
template <typename Backend>
class ResizeMirrorNormalizeHide : public dali::rng::OperatorWithRng<dali::Operator<Backend>> {
  using Base = dali::rng::OperatorWithRng<dali::Operator<Backend>>;

 public:
  explicit ResizeMirrorNormalizeHide(const dali::OpSpec &spec)
      : Base(spec),
        has_(spec),
        size_(spec.GetRepeatedArgument<int>("size")),
        mean_(spec.GetRepeatedArgument<float>("mean")),
        std_(spec.GetRepeatedArgument<float>("std")),
        dtype_(spec.GetArgument<dali::DALIDataType>("dtype")),
        layout_(spec.GetArgument<dali::TensorLayout>("output_layout")) {
    Require(size_.size() == 2, "Argument `size` has ", size_.size(),
            " values; give the output (height, width), e.g. [224, 224].");
    Require(size_[0] > 0 && size_[1] > 0 && int64_t{size_[0]} * size_[1] < (int64_t{1} << 31),
            "Argument `size` = [", size_[0], ", ", size_[1], "]; height and width must be > 0 (and their "
            "product < 2^31).");
    CheckPerChannel("mean", mean_);
    CheckPerChannel("std", std_);
    for (float s : std_)
      Require(s > 0 && std::isfinite(s), "Argument `std` contains ", s, "; standard deviations must be > 0.");
    for (float m : mean_)
      Require(std::isfinite(m), "Argument `mean` contains ", m, "; it must be finite.");
    Require(dtype_ == DALI_FLOAT || dtype_ == DALI_FLOAT16, "Argument `dtype` = ", dtype_,
            " is not supported; expected float (float32) or float16.");
    Require(layout_ == "CHW" || layout_ == "HWC", "Argument `output_layout` = \"", layout_,
            "\"; expected \"CHW\" or \"HWC\".");
    for (int c = 0; c < kMaxChannels; c++) {  // channels a sample lacks are never read
      mean4_[c] = mean_[std::min<size_t>(c, mean_.size() - 1)];
      inv_std4_[c] = 1.f / std_[std::min<size_t>(c, std_.size() - 1)];
    }
    // crop_mirror_normalize's arithmetic, ConvertSat<Out>((level - mean) * inv_std), once per level.
    table_f32_.resize(kMaxChannels * kLevels);
    table_f16_.resize(kMaxChannels * kLevels);
    for (int c = 0; c < kMaxChannels; c++)
      for (int level = 0; level < kLevels; level++) {
        float v = (static_cast<float>(level) - mean4_[c]) * inv_std4_[c];
        table_f32_[c * kLevels + level] = v;
        table_f16_[c * kLevels + level] = dali::ConvertSat<dali::float16>(v);
      }
    if (dtype_ == DALI_FLOAT16)  // only the output type's: a float32 fill beyond float16 was refused
      BuildFill(DALI_FLOAT16, fill_f16_);
    else
      BuildFill(DALI_FLOAT, fill_f32_);
  }

 protected:
  bool SetupImpl(std::vector<dali::OutputDesc> &output_desc, const dali::Workspace &ws) override {
    const auto &in = ws.Input<Backend>(0);
    Require(in.GetLayout() == "HWC", "Input layout is \"", in.GetLayout(), "\"; expected \"HWC\" (decoded "
            "images; set `layout` in fn.external_source).");
    Require(in.type() == DALI_UINT8, "Input type ", in.type(), " is not supported; expected uint8 "
            "(decoded images).");
    const auto &shape = in.shape();
    int n = shape.num_samples();
    ReadWindows(ws, shape);
    dali::TensorListShape<3> out_shape(n);
    for (int i = 0; i < n; i++) {
      auto sh = shape.tensor_shape_span(i);
      int64_t h = sh[0], w = sh[1], c = sh[2];
      Require(h > 0 && w > 0, "Sample ", i, " is empty (", h, "x", w, "x", c, "); nothing to resize.");
      if (!windows_.empty()) {
        const Window &win = windows_[i];
        Require(win.y >= 0 && win.x >= 0 && win.h > 0 && win.w > 0 && int64_t{win.y} + win.h <= h &&
                int64_t{win.x} + win.w <= w, "Sample ", i, ": the window at (y, x) = (", win.y, ", ", win.x,
                ") of (height, width) = (", win.h, ", ", win.w, ") is not inside the ", h, "x", w,
                " image (`crop_anchor`, `crop_shape`).");
      }
      Require(h < (int64_t{1} << 31) / std::max<int64_t>(w * c, 1), "Sample ", i, " is too large (", h,
              "x", w, "x", c, ").");
      Require(c >= 1 && c <= kMaxChannels, "Sample ", i, " has ", c, " channels; 1 to ", kMaxChannels,
              " are supported.");
      Require(mean_.size() == 1 || static_cast<int64_t>(mean_.size()) == c, "Argument `mean` has ",
              mean_.size(), " values but sample ", i, " has ", c, " channels.");
      Require(std_.size() == 1 || static_cast<int64_t>(std_.size()) == c, "Argument `std` has ",
              std_.size(), " values but sample ", i, " has ", c, " channels.");
      has_.CheckChannels(i, c);
      if (layout_ == "CHW")
        out_shape.set_tensor_shape(i, dali::TensorShape<3>(c, size_[0], size_[1]));
      else
        out_shape.set_tensor_shape(i, dali::TensorShape<3>(size_[0], size_[1], c));
    }
    output_desc.resize(1);
    output_desc[0] = {out_shape, dtype_};
    return true;
  }

  // Describes every sample's work in `samples_` (for both backends: the CPU passes and the CUDA kernel read the
  // same description), drawing its Hide-and-Seek cells from its Philox stream.
  void PrepareSamples(const dali::Workspace &ws) {
    const auto &in = ws.Input<Backend>(0);
    auto &out = ws.Output<Backend>(0);
    out.SetLayout(layout_);
    const auto &shape = in.shape();
    int n = shape.num_samples();
    samples_.resize(n);
    if (n == 0)
      return;
    this->GetPerSampleArgument(mirror_, "mirror", ws, n);
    for (int i = 0; i < n; i++) {
      auto sh = shape.tensor_shape_span(i);
      auto rng = this->GetSampleRNG(i);
      Window win = windows_.empty() ? Window{0, 0, static_cast<int>(sh[0]), static_cast<int>(sh[1])} : windows_[i];
      const ptrdiff_t stride = sh[1] * sh[2];
      const uint8_t *first = static_cast<const uint8_t *>(in.raw_tensor(i)) + win.y * stride + win.x * sh[2];
      const CellDraw draw = has_.Draw(rng);
      samples_[i] = MakeResizeSample(first, stride, win.h, win.w, static_cast<int32_t>(sh[2]),
                                     out.raw_mutable_tensor(i), size_[0], size_[1], mirror_[i] != 0, draw.size,
                                     draw.key);
    }
  }

  HideAndSeekArgs has_;
  std::vector<int> size_;
  std::vector<float> mean_, std_;
  dali::DALIDataType dtype_;
  dali::TensorLayout layout_;
  float mean4_[kMaxChannels], inv_std4_[kMaxChannels];
  // [kMaxChannels][kLevels]: the output value of each uint8 level, per channel; fills per channel
  std::vector<float> table_f32_, fill_f32_;
  std::vector<dali::float16> table_f16_, fill_f16_;
  std::vector<ResizeSample> samples_;

 private:
  struct Window {
    int y, x, h, w;
  };

  // The per-sample windows of `crop_anchor` and `crop_shape` ((y, x) and (height, width), e.g. the outputs
  // of fn.random_crop_generator), or none: the whole image. Both or neither must be given.
  void ReadWindows(const dali::Workspace &ws, const dali::TensorListShape<> &shape) {
    windows_.clear();
    const auto &spec = this->spec_;
    const bool anchor = spec.HasTensorArgument("crop_anchor"), extent = spec.HasTensorArgument("crop_shape");
    Require(anchor == extent, "Give both `crop_anchor` and `crop_shape` (a window), or neither (the whole "
            "image).");
    if (!anchor)
      return;
    const auto &anchors = ws.ArgumentInput("crop_anchor");
    const auto &extents = ws.ArgumentInput("crop_shape");
    int n = shape.num_samples();
    windows_.resize(n);
    for (int i = 0; i < n; i++) {
      for (const auto *arg : {&anchors, &extents}) {
        Require(arg->type() == DALI_INT32 && arg->tensor_shape(i).num_elements() == 2,
                "`crop_anchor` and `crop_shape` take two int32 values per sample, (y, x) and (height, width), "
                "as fn.random_crop_generator gives them for HWC images.");
      }
      const int *a = anchors.template tensor<int>(i), *e = extents.template tensor<int>(i);
      windows_[i] = {a[0], a[1], e[0], e[1]};
    }
  }

  static void CheckPerChannel(const char *name, const std::vector<float> &values) {
    Require(!values.empty() && values.size() <= kMaxChannels, "Argument `", name, "` has ", values.size(),
            " values; give a number or one per channel (at most ", kMaxChannels, ").");
  }

  // The fill as `type` elements, converted as dali.hide_and_seek converts it, for every channel count a
  // sample may validly have.
  template <typename Out>
  void BuildFill(dali::DALIDataType type, std::vector<Out> &fill) const {
    size_t channels = has_.fill_values() == 1 ? kMaxChannels : has_.fill_values();
    fill.resize(std::max<size_t>(channels, kMaxChannels));
    has_.FillElements(type, channels, fill.data());
  }

  std::vector<int> mirror_;
  std::vector<Window> windows_;  // empty: whole images
};

}  // namespace dali_has

#endif  // DALI_HAS_CSRC_RESIZE_MIRROR_NORMALIZE_HIDE_H_
