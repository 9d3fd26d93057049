// GPU backend: draws on the host (shared with the CPU backend), writes pixels with the CUDA kernel.
#include <vector>

#include "dali/core/cuda_error.h"
#include "dali/kernels/dynamic_scratchpad.h"
#include "hide_and_seek.h"

namespace dali_has {

class HideAndSeekGPU : public HideAndSeek<dali::GPUBackend> {
 public:
  using HideAndSeek<dali::GPUBackend>::HideAndSeek;

 protected:
  void RunImpl(dali::Workspace &ws) override {
    Prepare(ws);
    Require(samples_.size() <= 65535, "Batches larger than 65535 samples are not supported.");
    if (samples_.empty() || max_pixels_ == 0)
      return;
    // One host-to-device copy of the batch description (size, key and pointers per sample) and the
    // fill; the cell decisions are recomputed in the kernel from the key (see the .cu file).
    dali::kernels::DynamicScratchpad scratch(ws.stream());
    auto [samples_gpu, fill_gpu] = scratch.ToContiguousGPU(ws.stream(), samples_, fill_elems_);
    CUDA_CALL(LaunchHideAndSeek(samples_gpu, samples_.size(), max_pixels_, fill_gpu, elem_size_, chw_,
                                threshold_, ws.stream()));
  }
};

}  // namespace dali_has

DALI_REGISTER_OPERATOR(dali_has__HideAndSeek, ::dali_has::HideAndSeekGPU, ::dali::GPU);
