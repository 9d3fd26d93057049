// The dali_has.hide_and_seek operator: argument checks and per-sample random draws shared by the
// CPU and GPU backends; each backend only writes the pixels (RunImpl).
#ifndef DALI_HAS_CSRC_HIDE_AND_SEEK_H_
#define DALI_HAS_CSRC_HIDE_AND_SEEK_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "dali/core/float16.h"
#include "dali/operators/random/rng_base.h"
#include "dali/pipeline/operator/operator.h"
#include "hide_and_seek_kernel.h"

namespace dali_has {

// Errors for users: DALI_ENFORCE would prefix the C++ condition; DALI reports std::invalid_argument
// with the operator's name and the pipeline line that created it. Arguments are formatted only on failure.
template <typename... Args>
void Require(bool ok, const Args &...message) {
  if (!ok)
    throw std::invalid_argument(dali::make_string(message...));
}

// OperatorWithRng gives the op DALI's own seeding: the `seed` argument (filled from the pipeline seed
// when unset), one Philox stream per sample, a new position every iteration, checkpointing.
template <typename Backend>
class HideAndSeek : public dali::rng::OperatorWithRng<dali::Operator<Backend>> {
  using Base = dali::rng::OperatorWithRng<dali::Operator<Backend>>;

 public:
  explicit HideAndSeek(const dali::OpSpec &spec)
      : Base(spec),
        patch_sizes_(spec.template GetRepeatedArgument<int>("patch_sizes")),
        fill_(spec.template GetRepeatedArgument<float>("fill")) {
    float p_hide = spec.template GetArgument<float>("p_hide");
    Require(!patch_sizes_.empty(),
            "Argument `patch_sizes` is empty; give at least one size, e.g. [0, 16, 32, 44, 56].");
    for (int s : patch_sizes_)
      Require(s >= 0, "Argument `patch_sizes` contains ", s, "; sizes are pixels >= 0 (0: no hiding).");
    Require(p_hide >= 0.f && p_hide <= 1.f,  // false for NaN too
            "Argument `p_hide` = ", p_hide, " must be a probability in [0, 1].");
    Require(!fill_.empty(), "Argument `fill` is empty; give a number or one number per channel.");
    for (float f : fill_)
      Require(!std::isnan(f), "Argument `fill` contains NaN.");
    threshold_ = HideThreshold(p_hide);
  }

 protected:
  bool SetupImpl(std::vector<dali::OutputDesc> &output_desc, const dali::Workspace &ws) override {
    const auto &in = ws.Input<Backend>(0);
    const auto &layout = in.GetLayout();
    Require(layout == "HWC" || layout == "CHW", "Input layout is \"", layout, "\"; expected \"HWC\" or "
            "\"CHW\" (e.g. set `layout` in fn.external_source or the decoder).");
    auto type = in.type();
    Require(type == DALI_UINT8 || type == DALI_FLOAT16 || type == DALI_FLOAT,
            "Input type ", type, " is not supported; expected uint8, float16 or float32.");
    chw_ = layout == "CHW";
    output_desc.resize(1);
    output_desc[0] = {in.shape(), type};
    return true;
  }

  // Draws every sample's size and key from its Philox stream and describes the batch in `samples_`;
  // `fill_elems_` gets the fill converted to the element type (uint8: rounded half-to-even and
  // clamped, as reference.apply_mask does).
  void Prepare(const dali::Workspace &ws) {
    const auto &in = ws.Input<Backend>(0);
    auto &out = ws.Output<Backend>(0);
    out.SetLayout(in.GetLayout());
    const auto &shape = in.shape();
    int n = shape.num_samples();
    elem_size_ = dali::TypeTable::GetTypeInfo(in.type()).size();
    samples_.resize(n);
    max_pixels_ = 0;
    uint32_t max_channels = 0;
    for (int i = 0; i < n; i++) {
      auto sh = shape.tensor_shape_span(i);
      int64_t c = chw_ ? sh[0] : sh[2], h = chw_ ? sh[1] : sh[0], w = chw_ ? sh[2] : sh[1];
      // 2^31 pixels: 32-bit pixel indices in the CUDA kernel never wrap, even one grid stride past.
      Require(h * w < (int64_t{1} << 31) && c < (int64_t{1} << 31),
              "Sample ", i, " is too large (", h, "x", w, "x", c, ").");
      Require(fill_.size() == 1 || static_cast<int64_t>(fill_.size()) == c, "Argument `fill` has ",
              fill_.size(), " values but sample ", i, " has ", c,
              " channels; give a scalar or one value per channel.");
      auto rng = this->GetSampleRNG(i);
      // Lemire's multiply-shift: bias <= n / 2^32, far below anything a test or training could see.
      uint32_t size = patch_sizes_[(uint64_t{rng.next()} * patch_sizes_.size()) >> 32];
      uint64_t key = uint64_t{rng.next()} << 32;  // two statements: the draws' order is defined
      key |= rng.next();
      samples_[i] = {in.raw_tensor(i), out.raw_mutable_tensor(i), static_cast<uint32_t>(h),
                     static_cast<uint32_t>(w), static_cast<uint32_t>(c), size,
                     size ? static_cast<uint32_t>((w + size - 1) / size) : 0u, key};
      max_pixels_ = std::max<uint64_t>(max_pixels_, h * w);
      max_channels = std::max<uint32_t>(max_channels, c);
    }
    // 32-bit words keep the fill 4-byte aligned for the kernel's typed loads, whatever the type.
    fill_elems_.assign((max_channels * elem_size_ + 3) / 4, 0);
    auto *bytes = reinterpret_cast<uint8_t *>(fill_elems_.data());
    for (uint32_t c = 0; c < max_channels; c++) {
      float f = fill_.size() == 1 ? fill_[0] : fill_[c];
      switch (in.type()) {
        case DALI_UINT8:
          bytes[c] = static_cast<uint8_t>(std::clamp(std::nearbyint(f), 0.f, 255.f));
          break;
        case DALI_FLOAT16: {
          dali::float16 v(f);
          std::memcpy(bytes + 2 * c, &v, 2);
          break;
        }
        default:
          std::memcpy(bytes + 4 * c, &f, 4);
      }
    }
  }

  std::vector<int> patch_sizes_;
  std::vector<float> fill_;
  uint64_t threshold_ = 0;
  bool chw_ = false;
  int elem_size_ = 1;
  uint64_t max_pixels_ = 0;
  std::vector<SampleDesc> samples_;
  std::vector<uint32_t> fill_elems_;
};

}  // namespace dali_has

#endif  // DALI_HAS_CSRC_HIDE_AND_SEEK_H_
