"""Hide-and-Seek composed of DALI built-in operators: the portable fallback for the fused plugin.

DALI 2.4 data nodes carry no static layout or dtype, so everything that depends on them is computed in the
graph at run time: the layout comes from `images.property("layout")` (a CPU node, also for GPU images), and
tensors that must broadcast against the image borrow its layout from a 1x1x1 slice of it (arithmetic keeps the
layout of its operands).

Per sample: patch size S from `fn.random.choice` -> a ceil(H/S) x ceil(W/S) grid of coin flips (channel axis 1)
-> nearest-neighbour upsampling with an ROI of H/S x W/S cells, which maps pixel y to cell floor((y + 0.5) / S)
= y // S exactly, edge cells clipped -> `dali_has.blend`: `x * (1 - m) + fill * m` in the image's dtype
(exact: 0 * x + fill == fill).
"""
from __future__ import annotations

import numpy as np
import nvidia.dali.fn as fn
import nvidia.dali.types as types

from dali_has.blend import C_AXIS, blend
from dali_has.spec import MAX_PATCH_SIZE, HaSConfig

# Grid cell size standing in for S = 0: one cell covering any image, never hidden (its coin has p = 0).
_NO_HIDE_CELL = MAX_PATCH_SIZE


def hide_and_seek_composed(images, cfg: HaSConfig):
    """Apply Hide-and-Seek to a batch of HWC or CHW images with DALI built-ins; returns a same-shaped node."""
    size = fn.random.choice(types.Constant(np.array(cfg.patch_sizes, dtype=np.int32), device="cpu"))
    cell = size + (size == 0) * _NO_HIDE_CELL
    p_hide = fn.cast((size > 0) * cfg.p_hide, dtype=types.FLOAT)

    # CPU nodes, also for GPU images: they feed shape arguments, which must live on the CPU.
    shape = images.shape(dtype=types.INT32)
    layout = images.property("layout")
    spatial = fn.cast(layout != C_AXIS, dtype=types.INT32)  # 1 on H and W, 0 on C
    grid_shape = ((shape + cell - 1) // cell) * spatial + (1 - spatial)
    coins = fn.random.coin_flip(probability=p_hide, shape=grid_shape, dtype=types.UINT8)

    chw = fn.cast(layout[0] == C_AXIS, dtype=types.INT32)
    height = shape[0] + chw * (shape[1] - shape[0])
    width = shape[1] + chw * (shape[2] - shape[1])
    out_size = fn.cast(fn.stack(height, width), dtype=types.FLOAT)
    roi_end = out_size / fn.cast(cell, dtype=types.FLOAT)

    # A zero with the image's layout makes the coin grid a layout-carrying image that resize understands.
    corner = fn.slice(images, start=[0, 0, 0], shape=[1, 1, 1], axis_names="HWC")
    carrier = fn.cast(corner, dtype=types.UINT8) * 0  # cast first: CPU arithmetic rejects float16
    if images.device == "gpu":
        coins = coins.gpu()
    grid = fn.cast(coins + carrier, dtype=types.UINT8)
    mask = fn.resize(grid, size=out_size, roi_start=[0.0, 0.0], roi_end=roi_end,
                     roi_relative=False, interp_type=types.INTERP_NN, antialias=False)
    return blend(images, mask, cfg.fill, layout)
