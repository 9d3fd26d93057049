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
    PrepareSamples(ws);
    Require(samples_.size() <= 65535, "Batches larger than 65535 samples are not supported.");
    if (samples_.empty())
      return;
    // One host-to-device copy carries the batch description (the kernel derives every weight from each axis's
    // filter constants in it), the level table and the fill.
    dali::kernels::DynamicScratchpad scratch(ws.stream());
    const bool f32 = dtype_ == DALI_FLOAT;
    const void *table, *fill;
    const ResizeSample *samples_gpu;
    if (f32)
      std::tie(samples_gpu, table, fill) = scratch.ToContiguousGPU(ws.stream(), samples_, table_f32_, fill_f32_);
    else
      std::tie(samples_gpu, table, fill) = scratch.ToContiguousGPU(ws.stream(), samples_, table_f16_, fill_f16_);
    const int64_t out_pixels = int64_t{size_[0]} * size_[1];  // every sample's output has the same size
    CUDA_CALL(LaunchResizeMirrorNormalizeHide(samples_gpu, samples_.size(), out_pixels, table, fill, f32 ? 4 : 2,
                                              layout_ == "CHW", has_.threshold(), ws.stream()));
  }
};

}  // namespace dali_has

DALI_REGISTER_OPERATOR(dali_has__ResizeMirrorNormalizeHide, ::dali_has::ResizeMirrorNormalizeHideGPU, ::dali::GPU);
