// Argument and input checks of the plugin's operators, worded for users.
#ifndef DALI_HAS_CSRC_REQUIRE_H_
#define DALI_HAS_CSRC_REQUIRE_H_

#include <stdexcept>

#include "dali/core/format.h"

namespace dali_has {

// DALI_ENFORCE would prefix the C++ condition; DALI reports std::invalid_argument with the operator's
// name and the pipeline line that created it. Arguments are formatted only on failure.
template <typename... Args>
void Require(bool ok, const Args &...message) {
  if (!ok)
    throw std::invalid_argument(dali::make_string(message...));
}

}  // namespace dali_has

#endif  // DALI_HAS_CSRC_REQUIRE_H_
