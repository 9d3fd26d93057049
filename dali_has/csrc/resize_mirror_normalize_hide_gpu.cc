// dali_has.resize_mirror_normalize_hide, GPU backend: the checks and draws of the CPU backend
// (resize_mirror_normalize_hide.h), the pixels written by one CUDA kernel launch per batch (_gpu.cu).
#include <vector>

#include "dali/core/cuda_error.h"
#include "dali/kernels/dynamic_scratchpad.h"
#include "resize_mirror_normalize_hide.h"
#include "resize_mirror_normalize_hide_kernel.h"

namespace dali_has {

class ResizeMirrorNormalizeHideGPU : public ResizeMirrorNormalizeHide<dali::GPUBackend> {
 public:
  using ResizeMirrorNormalizeHide<dali::GPUBackend>::ResizeMirrorNormalizeHide;

 protected:
  void RunImpl(dali::Workspace &ws) override {
    PrepareJobs(ws);
    Require(jobs_.size() <= 65535, "Batches larger than 65535 samples are not supported.");
    if (jobs_.empty())
      return;
    // The host's part per sample: its two axes' filter constants and the draw; the kernel derives every
    // weight from them. One host-to-device copy carries the batch description, the level table and the fill.
    samples_.resize(jobs_.size());
    int64_t max_pixels = 0;
    for (size_t i = 0; i < jobs_.size(); i++) {
      const SampleJob &j = jobs_[i];
      samples_[i] = MakeResizeSample(j.in, j.stride, j.in_h, j.in_w, j.channels, j.out, j.out_h, j.out_w, j.mirror,
                                     j.draw.size, j.draw.key);
      max_pixels = std::max<int64_t>(max_pixels, int64_t{j.out_h} * j.out_w);
    }
    dali::kernels::DynamicScratchpad scratch(ws.stream());
    const bool f32 = dtype_ == DALI_FLOAT;
    const void *table, *fill;
    const ResizeSample *samples_gpu;
    if (f32)
      std::tie(samples_gpu, table, fill) = scratch.ToContiguousGPU(ws.stream(), samples_, table_f32_, fill_f32_);
    else
      std::tie(samples_gpu, table, fill) = scratch.ToContiguousGPU(ws.stream(), samples_, table_f16_, fill_f16_);
    CUDA_CALL(LaunchResizeMirrorNormalizeHide(samples_gpu, samples_.size(), max_pixels, table, fill,
                                              f32 ? 4 : 2, layout_ == "CHW", has_.threshold(), ws.stream()));
  }

 private:
  std::vector<ResizeSample> samples_;
};

}  // namespace dali_has

DALI_REGISTER_OPERATOR(dali_has__ResizeMirrorNormalizeHide, ::dali_has::ResizeMirrorNormalizeHideGPU, ::dali::GPU);
