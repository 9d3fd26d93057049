"""Write a fill into the masked values of a DALI batch: x where m = 0, the fill where m = 1 (NaN and infinities
included), in x's dtype, on x's device.

Shared by the image composition (`composed`) and temporal Hide-and-Seek (`temporal`). Four things make this
more than one line, `x * (1 - m) + fill * m`:

* Non-finite values. 0 * NaN and 0 * inf are NaN, so a hidden NaN would stay NaN where the numpy oracle writes
  the fill; DALI's arithmetic has no select, so the hidden values' bits are cleared (x read as an integer of its
  width, and-ed with all-ones or zero) before the fill is added.
* Placement. Shapes and layouts are read through CPU nodes (`node.shape()`, `node.property("layout")`) even for
  GPU data: shape arguments such as `fn.random.coin_flip(shape=...)` must live on the CPU.
* Types. DALI's arithmetic has no float16 on either device (the GPU raises "Right operand data type not
  supported" at run time; seen on an H200, DALI 2.4), and promotes uint8 with the int32 literal `1` to int32, so
  both devices blend in a wider float type (`compute_dtype`) and cast the result back to x's type.
* Rounding. Integer data gets the fill rounded half-to-even, as the numpy oracle (`np.rint`) and the fused
  operator (`std::nearbyint`) round it. DALI's casts round halves away from zero on the CPU and to even on the
  GPU, so the fill is never left to a cast: it is rounded on the host, and the graph picks the rounded or the
  exact fill at run time by whether x's type is an integer type (DALI 2.4 nodes carry no static dtype), probed
  as "does 0.5 survive a cast to x's type?".
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import nvidia.dali.fn as fn
import nvidia.dali.types as types

C_AXIS = ord("C")  # the channel axis in a layout node, which DALI gives as character codes
_SAME_WIDTH_INT = {types.FLOAT: types.INT32, types.FLOAT64: types.INT64}  # compute_dtype's bits, as an integer


def fill_node(values: Sequence[float], layout, shape):
    """The fill as a float32 CPU node broadcastable against the data: a scalar, or one value per entry of the
    layout's `C` axis (`layout` is the data's layout as a CPU node of character codes, `shape` its shape)."""
    if len(values) == 1:
        return types.Constant(np.float32(values[0]), device="cpu")
    constant = types.Constant(np.array(values, dtype=np.float32), device="cpu")
    # The data's channel count on the channel axis, 1 on every other axis: [1, 1, C] for HWC, [C, 1, 1] for CHW,
    # [1, C] for FC. Data with another number of channels than values fails in this reshape; the values' own count
    # there let 3 values broadcast 1-channel images to 3 channels, silently.
    shape = fn.cast(layout == C_AXIS, dtype=types.INT32) * (fn.cast(shape, dtype=types.INT32) - 1) + 1
    return fn.reshape(constant, shape=shape)


def blend(x, mask, fill: Sequence[float], layout, *, compute_dtype=types.FLOAT):
    """x where `mask` is 0 and the fill where it is 1, with x's shape, dtype and layout, on x's device.

    mask: a 0/1 node broadcastable against x, on the CPU or on x's device.
    fill: a scalar or one value per channel (the `C` axis of `layout`, a CPU node of x's layout).
    compute_dtype: the type the blend computes in; it must hold x's values and the fill exactly
        (float32 for uint8 / float16 / float32 images, float64 for int32 / float64 sequences).
    """
    on_gpu = x.device == "gpu"
    fill = _fill_for(x, fill, layout, on_gpu)
    if on_gpu and mask.device != "gpu":
        mask = mask.gpu()
    # x * (1 - mask) would leave NaN and infinities in hidden values (0 * NaN is NaN): the hidden values' bits
    # are cleared instead (an all-ones or all-zeros integer of x's width), which leaves +0.0, then the fill added.
    ints = _SAME_WIDTH_INT[compute_dtype]
    keep = fn.cast(mask, dtype=ints) - 1  # -1 (every bit set) where kept, 0 where hidden (signed: no promotion)
    kept = fn.reinterpret(fn.reinterpret(fn.cast(x, dtype=compute_dtype), dtype=ints) & keep, dtype=compute_dtype)
    return fn.cast_like(kept + fill * fn.cast(mask, dtype=compute_dtype), x)


def _fill_for(x, values: Sequence[float], layout, on_gpu: bool):
    """The fill x's type should get: rounded half-to-even for integer types, exact otherwise (see module doc)."""
    exact = fill_node(values, layout, x.shape())
    rounded_values = np.rint(np.asarray(values, dtype=np.float64))
    if np.array_equal(rounded_values, values):  # e.g. fill 0: nothing to round, no run-time choice needed
        return exact.gpu() if on_gpu else exact
    rounded = fill_node(rounded_values.tolist(), layout, x.shape())
    half = types.Constant(np.float32(0.5), device="cpu")
    if on_gpu:
        exact, rounded, half = exact.gpu(), rounded.gpu(), half.gpu()
    is_integer = fn.cast(fn.cast(fn.cast_like(half, x), dtype=types.FLOAT) != 0.5, dtype=types.FLOAT)
    return exact * (1 - is_integer) + rounded * is_integer
