// dali_has.file_label: the label of each sample, looked up by the name its reader gave it.
//
// fn.readers.numpy reads .npy files in parallel, mapped rather than copied through one loader thread, but
// gives no labels; fn.readers.file gives labels but reads every file whole on one thread. The names
// fn.readers.numpy reports (`source_info`: each file's name exactly as given in `files`) find the label.
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "dali/pipeline/operator/operator.h"
#include "require.h"

namespace dali_has {

class FileLabelCPU : public dali::Operator<dali::CPUBackend> {
 public:
  explicit FileLabelCPU(const dali::OpSpec &spec) : dali::Operator<dali::CPUBackend>(spec) {
    const auto names = spec.GetRepeatedArgument<std::string>("names");
    const auto labels = spec.GetRepeatedArgument<int>("labels");
    Require(names.size() == labels.size(), "Arguments `names` and `labels` have ", names.size(), " and ",
            labels.size(), " entries; give one label per name.");
    label_of_.reserve(names.size());
    for (size_t i = 0; i < names.size(); i++) {
      auto [entry, added] = label_of_.emplace(names[i], labels[i]);
      Require(added || entry->second == labels[i], "File \"", names[i], "\" is listed with labels ",
              entry->second, " and ", labels[i], "; a name must have one label (read such a list with "
              "fn.readers.file, which labels each entry).");
    }
  }

 protected:
  bool SetupImpl(std::vector<dali::OutputDesc> &output_desc, const dali::Workspace &ws) override {
    const auto &names = ws.Input<dali::CPUBackend>(0);
    Require(names.type() == DALI_UINT8 && names.sample_dim() == 1, "Input has type ", names.type(),
            " and ", names.sample_dim(), " dimensions; expected each sample's name as 1-D uint8, e.g. "
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
      std::string name(static_cast<const char *>(names.raw_tensor(i)), names.tensor_shape_span(i)[0]);
      auto entry = label_of_.find(name);
      Require(entry != label_of_.end(), "Sample ", i, " is named \"", name, "\", which `names` does not "
              "hold; give the reader's `files` as `names`.");
      *labels.mutable_tensor<int64_t>(i) = entry->second;
    }
  }

 private:
  std::unordered_map<std::string, int64_t> label_of_;
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
    .AddArg("names", "The names samples can have, e.g. the reader's `files`.", DALI_STRING_VEC)
    .AddArg("labels", "One label per name.", DALI_INT_VEC);
