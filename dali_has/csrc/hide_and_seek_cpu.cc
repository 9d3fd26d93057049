// CPU backend and the operator's schema.
#include <cstring>
#include <vector>

#include "hide_and_seek.h"

namespace dali_has {
namespace {

// Copies one sample in a single pass: kept runs are memcpy'd from the input, hidden runs from a
// prebuilt row of fill values, so the cost is that of one memcpy of the sample.
// `fill_row` holds, per layout, what a fully hidden image row looks like: W pixels of the per-channel
// fill interleaved (HWC), or one row of W fills per channel plane (CHW); W * C elements either way.
void HideSample(const SampleDesc &s, const uint8_t *fill, size_t elem, bool chw, uint64_t threshold,
                std::vector<uint8_t> &fill_row, std::vector<CellRun> &runs) {
  const auto *in = static_cast<const uint8_t *>(s.in);
  auto *out = static_cast<uint8_t *>(s.out);
  const size_t h = s.height, w = s.width, c = s.channels;
  const size_t pixel = chw ? elem : c * elem;  // bytes per pixel within one row of one plane
  const size_t plane = chw ? h * w * elem : 0;
  const size_t planes = chw ? c : 1;
  if (s.size == 0 || threshold == 0) {
    std::memcpy(out, in, h * w * c * elem);
    return;
  }
  fill_row.resize(w * c * elem);
  for (size_t x = 0; x < w; x++)
    for (size_t ch = 0; ch < c; ch++)
      std::memcpy(&fill_row[(chw ? ch * w + x : x * c + ch) * elem], fill + ch * elem, elem);

  for (size_t y0 = 0, cy = 0; y0 < h; y0 += s.size, cy++) {
    const size_t y1 = std::min<size_t>(y0 + s.size, h);
    CellRuns(s.key, cy, s.grid_w, s.size, s.width, threshold, runs);
    for (size_t p = 0; p < planes; p++) {
      if (runs.size() == 1 && !runs[0].hidden) {  // whole band kept: one block copy
        size_t off = p * plane + y0 * w * pixel;
        std::memcpy(out + off, in + off, (y1 - y0) * w * pixel);
        continue;
      }
      const uint8_t *fill_src = fill_row.data() + p * w * elem;
      for (size_t y = y0; y < y1; y++) {
        size_t row = p * plane + y * w * pixel;
        for (const CellRun &r : runs) {
          size_t off = r.x0 * pixel, len = (r.x1 - r.x0) * pixel;
          std::memcpy(out + row + off, r.hidden ? fill_src + off : in + row + off, len);
        }
      }
    }
  }
}

}  // namespace

class HideAndSeekCPU : public HideAndSeek<dali::CPUBackend> {
 public:
  explicit HideAndSeekCPU(const dali::OpSpec &spec)
      : HideAndSeek<dali::CPUBackend>(spec), fill_rows_(num_threads_), runs_(num_threads_) {}

 protected:
  using dali::Operator<dali::CPUBackend>::RunImpl;

  void RunImpl(dali::Workspace &ws) override {
    Prepare(ws);
    auto &pool = ws.GetThreadPool();
    const auto *fill = reinterpret_cast<const uint8_t *>(fill_elems_.data());
    for (const SampleDesc &s : samples_) {
      pool.AddWork([&, s](int tid) {
        HideSample(s, fill, elem_size_, chw_, threshold_, fill_rows_[tid], runs_[tid]);
      }, uint64_t{s.height} * s.width * s.channels);  // biggest first
    }
    pool.RunAll();
  }

 private:
  std::vector<std::vector<uint8_t>> fill_rows_;  // per thread scratch, reused across iterations
  std::vector<std::vector<CellRun>> runs_;
};

}  // namespace dali_has

DALI_REGISTER_OPERATOR(dali_has__HideAndSeek, ::dali_has::HideAndSeekCPU, ::dali::CPU);

DALI_SCHEMA(dali_has__HideAndSeek)
    .DocStr(R"(Hide-and-Seek (Singh et al., arXiv 1811.02545) in one pass.

Per sample, draws a patch size S uniformly from `patch_sizes` (0: hide nothing), lays an S x S grid
anchored at the top-left corner (edge cells clipped), hides each cell independently with probability
`p_hide` and gives hidden pixels `fill` on every channel. Input: HWC or CHW, uint8, float16 or float32;
the output has the input's shape, type and layout. The CPU and GPU backends draw identical masks
for the same seed.)")
    .NumInput(1)
    .NumOutput(1)
    .AddParent(::dali_has::kHideAndSeekArgs)
    .AddRandomSeedArg();
