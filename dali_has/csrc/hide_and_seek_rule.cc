// The Hide-and-Seek arguments, one schema that every hiding operator names as its parent.
#include "hide_and_seek_rule.h"

DALI_SCHEMA(DaliHasHideAndSeekArgs)
    .DocStr("Hide-and-Seek arguments (a parent schema, not an operator).")
    .AddOptionalArg("patch_sizes", "Grid cell sizes in pixels to draw from uniformly; 0 = no hiding.",
                    std::vector<int>{0, 16, 32, 44, 56})
    .AddOptionalArg("p_hide", "Probability that one grid cell is hidden, in [0, 1].", 0.5f)
    .AddOptionalArg("fill", "Value of hidden pixels: one number, or one per channel.",
                    std::vector<float>{0.f});
