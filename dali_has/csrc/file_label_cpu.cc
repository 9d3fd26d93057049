// dali_has.file_label: the label of each sample, looked up by the name its reader gave it.
//
// fn.readers.numpy reads .npy files in parallel, mapped rather than copied through one loader thread, but
// gives no labels; fn.readers.file gives labels but reads every file whole on one thread. The names
// fn.readers.numpy reports (`source_info`: each file's name exactly as given in `files`) find the label.
//
// The names arrive as one NUL-separated string and stay in it, found by binary search over their sorted
// order: a hash map of std::string took twice the memory (dali_has/file_label.py has the figures).
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dali/pipeline/operator/checkpointing/stateless_operator.h"
#include "require.h"

namespace dali_has {

// Stateless: a pipeline checkpoint (the trainer's exact resume) has nothing to save for it.
class FileLabelCPU : public dali::StatelessOperator<dali::CPUBackend> {
 public:
  explicit FileLabelCPU(const dali::OpSpec &spec)
      : dali::StatelessOperator<dali::CPUBackend>(spec),
        names_(spec.GetArgument<std::string>("names")),
        labels_(spec.GetRepeatedArgument<int>("labels")) {
    for (size_t start = 0; start <= names_.size();) {
      size_t end = std::min(names_.find('\0', start), names_.size());
      starts_.push_back(start);
      start = end + 1;
    }
    starts_.push_back(names_.size() + 1);  // name i is [starts_[i], starts_[i + 1] - 1)
    const size_t count = starts_.size() - 1;
    Require(count == labels_.size(), "Arguments `names` and `labels` have ", count, " and ", labels_.size(),
            " entries; give one label per name (names separated by NUL characters).");
    order_.resize(count);
    for (size_t i = 0; i < count; i++)
      order_[i] = static_cast<uint32_t>(i);
    std::sort(order_.begin(), order_.end(), [&](uint32_t a, uint32_t b) { return Name(a) < Name(b); });
    for (size_t k = 1; k < count; k++) {
      uint32_t a = order_[k - 1], b = order_[k];
      Require(Name(a) != Name(b) || labels_[a] == labels_[b], "File \"", Name(a), "\" is listed with labels ",
              labels_[a], " and ", labels_[b], "; a name must have one label (read such a list with "
              "fn.readers.file, which labels each entry).");
    }
  }

 protected:
  bool SetupImpl(std::vector<dali::OutputDesc> &output_desc, const dali::Workspace &ws) override {
    const auto &names = ws.Input<dali::CPUBackend>(0);
    Require(names.type() == DALI_UINT8 && names.sample_dim() == 1, "Input has type ", names.type(), " and ",
            names.sample_dim(), " dimensions; expected each sample's name as 1-D uint8, e.g. "
            "fn.get_property(images, key=\"source_info\").");
    output_desc.resize(1);
    output_desc[0] = {dali::TensorListShape<>(dali::uniform_list_shape(names.num_samples(), dali::TensorShape<0>{})),
                      DALI_INT64};
    return true;
  }

  void RunImpl(dali::Workspace &ws) override {
    const auto &names = ws.Input<dali::CPUBackend>(0);
    auto &labels = ws.Output<dali::CPUBackend>(0);
    for (int i = 0; i < names.num_samples(); i++) {
      std::string_view name(static_cast<const char *>(names.raw_tensor(i)), names.tensor_shape_span(i)[0]);
      auto found = std::lower_bound(order_.begin(), order_.end(), name,
                                    [&](uint32_t entry, std::string_view n) { return Name(entry) < n; });
      Require(found != order_.end() && Name(*found) == name, "Sample ", i, " is named \"", name,
              "\", which `names` does not hold; give the reader's `files` as `names`.");
      *labels.mutable_tensor<int64_t>(i) = labels_[*found];
    }
  }

 private:
  std::string_view Name(uint32_t i) const {
    return std::string_view(names_).substr(starts_[i], starts_[i + 1] - 1 - starts_[i]);
  }

  std::string names_;              // every name, NUL-separated
  std::vector<int> labels_;        // labels_[i]: name i's label
  std::vector<size_t> starts_;     // name i starts at starts_[i]
  std::vector<uint32_t> order_;    // the names' indices in sorted order
};

}  // namespace dali_has

DALI_REGISTER_OPERATOR(dali_has__FileLabel, ::dali_has::FileLabelCPU, ::dali::CPU);

DALI_SCHEMA(dali_has__FileLabel)
    .DocStr(R"(The label of each sample, found by its name (CPU only).

Input: each sample's name as 1-D uint8, e.g. fn.get_property(images, key="source_info") of
fn.readers.numpy, which gives each file's name as it was listed in `files`. Output: an int64 scalar
per sample, the label given for that name in `labels`.)")
    .NumInput(1)
    .NumOutput(1)
    .AddArg("names", "The names samples can have (e.g. the reader's `files`), separated by NUL characters.",
            DALI_STRING)
    .AddArg("labels", "One label per name, in the order of `names`.", DALI_INT_VEC);
