// The dali_has.hide_and_seek operator: input checks and the batch's random draws (hide_and_seek_rule.h)
// shared by the CPU and GPU backends; each backend only writes the pixels (RunImpl).
#ifndef DALI_HAS_CSRC_HIDE_AND_SEEK_H_
#define DALI_HAS_CSRC_HIDE_AND_SEEK_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "dali/operators/random/rng_base.h"
#include "dali/pipeline/operator/operator.h"
#include "hide_and_seek_rule.h"

namespace dali_has {

// OperatorWithRng gives the op DALI's own seeding: the `seed` argument (filled from the pipeline seed
// when unset), one Philox stream per sample, a new position every iteration, checkpointing.
template <typename Backend>
class HideAndSeek : public dali::rng::OperatorWithRng<dali::Operator<Backend>> {
  using Base = dali::rng::OperatorWithRng<dali::Operator<Backend>>;

 public:
  explicit HideAndSeek(const dali::OpSpec &spec)
      : Base(spec), has_(spec), threshold_(has_.threshold()) {}

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
      has_.CheckChannels(i, c);
      auto rng = this->GetSampleRNG(i);
      CellDraw draw = has_.Draw(rng);
      samples_[i] = {in.raw_tensor(i), out.raw_mutable_tensor(i), static_cast<uint32_t>(h),
                     static_cast<uint32_t>(w), static_cast<uint32_t>(c), draw.size,
                     draw.size ? static_cast<uint32_t>((w + draw.size - 1) / draw.size) : 0u, draw.key};
      max_pixels_ = std::max<uint64_t>(max_pixels_, h * w);
      max_channels = std::max<uint32_t>(max_channels, c);
    }
    // 32-bit words keep the fill 4-byte aligned for the kernel's typed loads, whatever the type.
    fill_elems_.assign((max_channels * elem_size_ + 3) / 4, 0);
    has_.FillElements(in.type(), max_channels, fill_elems_.data());
  }

  HideAndSeekArgs has_;
  uint64_t threshold_ = 0;
  bool chw_ = false;
  int elem_size_ = 1;
  uint64_t max_pixels_ = 0;
  std::vector<SampleDesc> samples_;
  std::vector<uint32_t> fill_elems_;
};

}  // namespace dali_has

#endif  // DALI_HAS_CSRC_HIDE_AND_SEEK_H_
