// The Hide-and-Seek rule on the host, shared by every operator that hides grid cells: its arguments
// (checked once), the per-sample random draws, the fill in the element type, and the runs of equal
// cells along one grid row. Operators that use it add the schema kHideAndSeekArgs as a parent.
#ifndef DALI_HAS_CSRC_HIDE_AND_SEEK_RULE_H_
#define DALI_HAS_CSRC_HIDE_AND_SEEK_RULE_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "dali/core/float16.h"
#include "dali/pipeline/operator/operator.h"
#include "hide_and_seek_kernel.h"
#include "require.h"

namespace dali_has {

// Schema holding `patch_sizes`, `p_hide` and `fill` (registered in hide_and_seek_rule.cc).
inline constexpr char kHideAndSeekArgs[] = "DaliHasHideAndSeekArgs";
// The largest finite float16; a larger fill would be written as inf.
inline constexpr float kFloat16Max = 65504.f;

// One sample's draw: its grid cell size (0 = hide nothing) and the key its cell decisions hash.
struct CellDraw {
  uint32_t size;
  uint64_t key;
};

// One run of equal cells along a grid row: pixels [x0, x1) are hidden or kept.
struct CellRun {
  uint32_t x0, x1;
  bool hidden;
};

class HideAndSeekArgs {
 public:
  explicit HideAndSeekArgs(const dali::OpSpec &spec)
      : patch_sizes_(spec.GetRepeatedArgument<int>("patch_sizes")),
        fill_(spec.GetRepeatedArgument<float>("fill")) {
    float p_hide = spec.GetArgument<float>("p_hide");
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

  uint64_t threshold() const { return threshold_; }

  // 1 for a scalar fill (it fits any channel count), else the channel count it is for.
  size_t fill_values() const { return fill_.size(); }

  void CheckChannels(int sample, int64_t channels) const {
    Require(fill_.size() == 1 || static_cast<int64_t>(fill_.size()) == channels, "Argument `fill` has ",
            fill_.size(), " values but sample ", sample, " has ", channels,
            " channels; give a scalar or one value per channel.");
  }

  // Draws one sample's size and key from its Philox stream. Every operator draws in this order, so
  // operators with the same seed hide the same cells of same-sized outputs.
  template <typename RNG>
  CellDraw Draw(RNG &rng) const {
    // Lemire's multiply-shift: bias <= n / 2^32, far below anything a test or training could see.
    uint32_t size = patch_sizes_[(uint64_t{rng.next()} * patch_sizes_.size()) >> 32];
    uint64_t key = uint64_t{rng.next()} << 32;  // two statements: the draws' order is defined
    key |= rng.next();
    return {size, key};
  }

  // Writes the fill of `channels` channels as `type` elements to `out` (uint8: rounded half-to-even and
  // clamped, as reference.apply_mask does; float16: refused beyond its range, where it would be written as inf).
  void FillElements(dali::DALIDataType type, uint32_t channels, void *out) const {
    auto *bytes = static_cast<uint8_t *>(out);
    for (uint32_t c = 0; c < channels; c++) {
      float f = fill_.size() == 1 ? fill_[0] : fill_[c];
      switch (type) {
        case DALI_UINT8:
          bytes[c] = static_cast<uint8_t>(std::clamp(std::nearbyint(f), 0.f, 255.f));
          break;
        case DALI_FLOAT16: {
          Require(std::abs(f) <= kFloat16Max, "Argument `fill` = ", f, " does not fit float16 (largest ", kFloat16Max,
                  "), the type of the images; give a fill within its range.");
          dali::float16 v(f);
          std::memcpy(bytes + 2 * c, &v, 2);
          break;
        }
        case DALI_FLOAT:
          std::memcpy(bytes + 4 * c, &f, 4);
          break;
        default:
          throw std::logic_error("HideAndSeekArgs::FillElements: unsupported type");
      }
    }
  }

 private:
  std::vector<int> patch_sizes_;
  std::vector<float> fill_;
  uint64_t threshold_ = 0;
};

// The runs of hidden and kept cells along grid row `cell_row` of a `size`-pixel grid `grid_w` cells wide
// on an image `width` pixels wide; neighbouring cells with the same decision merge into one run.
inline void CellRuns(uint64_t key, uint32_t cell_row, uint32_t grid_w, uint32_t size, uint32_t width,
                     uint64_t threshold, std::vector<CellRun> &runs) {
  runs.clear();
  for (uint32_t cx = 0; cx < grid_w; cx++) {
    bool hidden = CellHidden(key, uint64_t{cell_row} * grid_w + cx, threshold);
    uint32_t x1 = std::min<uint32_t>((cx + 1) * size, width);
    if (!runs.empty() && runs.back().hidden == hidden)
      runs.back().x1 = x1;
    else
      runs.push_back({cx * size, x1, hidden});
  }
}

}  // namespace dali_has

#endif  // DALI_HAS_CSRC_HIDE_AND_SEEK_RULE_H_
