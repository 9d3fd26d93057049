"""`resize_mirror_normalize_hide`: from decoded crop windows to the network input in one operator.

The training pipeline's tail, fn.resize -> fn.crop_mirror_normalize -> hide_and_seek, spends most of its CPU
time in DALI's general-purpose resize. The plugin's `fn.dali_has.resize_mirror_normalize_hide` does the same
work in one pass per output row: the same linear, antialiased filter with the same weights, the uint8
rounding fn.resize applies, crop_mirror_normalize's normalization (a 256-entry table per channel), and
Hide-and-Seek cells written as the fill instead of being computed. It differs from the chain only where
the two resizes round a value to a different uint8 level (one normalized step, 1 / std).

The operator has a GPU backend too, when the plugin was built with its CUDA kernels and the driver can run them
(`fused.gpu_available()`): one kernel launch per batch, one thread per output pixel, made to give the CPU
backend's numbers bit for bit (its per-pixel arithmetic, compiled for the host, is compared with the CPU backend
in the CPU tests; the kernel itself in `gpu` tests). On the GPU it runs only when asked for (`impl="fused"`):
`impl="auto"` keeps the built-ins there until the kernel has been measured against them on a GPU. Where the
plugin cannot be built, `impl="auto"` runs the chain of DALI built-ins (with `hide_and_seek` in the
`has_impl` it is given).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
from nvidia.dali import fn, types
from nvidia.dali.data_node import DataNode

from dali_has import fused, operator, validate
from dali_has.spec import HaSConfig

IMPLEMENTATIONS = ("auto", "fused", "builtin")
OUTPUT_TYPES = (types.FLOAT, types.FLOAT16)  # DALI 2.4 has no bfloat16
LAYOUTS = ("CHW", "HWC")
MAX_CHANNELS = 4  # the operator's limit (one pixel is one 4-float vector)
LARGEST = {types.FLOAT: validate.FLOAT32_MAX, types.FLOAT16: float(np.finfo(np.float16).max)}

Channels = Union[float, Sequence[float]]


def resize_mirror_normalize_hide(images, *, size: Union[int, Sequence[int]], mirror=0, mean: Channels = 0.0,
                                 std: Channels = 1.0, dtype=types.FLOAT, layout: str = "CHW",
                                 has: Union[None, HaSConfig, dict] = None, impl: str = "auto",
                                 has_impl: str = "auto", window=None):
    """Resize, flip, normalize and (optionally) Hide-and-Seek a batch of decoded images in one operator.

    Args:
        images: DALI node of uint8 HWC images of any size (e.g. fn.decoders.image_random_crop's windows),
            1 to 4 channels.
        window: None (resize whole images), or (anchor, shape) CPU nodes of int32 (y, x) and (height, width)
            per sample, e.g. fn.random_crop_generator's outputs: resize that window of each image. The fused
            operator reads it in place; the built-ins slice it out first.
        size: output side, or (height, width), in pixels.
        mirror: per-sample horizontal flip: 0/1, or a DALI node such as fn.random.coin_flip().
        mean, std: normalization (x - mean) / std on the 0..255 scale, one value or one per channel.
        dtype: types.FLOAT or types.FLOAT16 (DALI 2.4 has no bfloat16).
        layout: "CHW" or "HWC", of each output sample.
        has: Hide-and-Seek settings (a HaSConfig or a dict of its settings), applied on the output grid after the
            flip, fill in normalized units; None hides nothing.
        impl: "fused" (the plugin's operator; GPU images need `fused.gpu_available()`), "builtin" (fn.resize +
            fn.crop_mirror_normalize + `hide_and_seek(impl=has_impl)`), or "auto": the operator for CPU images
            when the plugin loads and `has_impl` is not "composed", else the built-ins.
        has_impl: the `hide_and_seek` implementation the built-in chain uses.

    Returns:
        A node of `dtype` images, `size` in `layout`.

    Raises:
        ValueError: an argument is out of range or of the wrong type (the message names it).
        RuntimeError: impl="fused" but the plugin is unavailable, or its CUDA kernel is and the images are on
            the GPU (the message says why).
    """
    sides = validate.as_values(size) or ()
    if len(sides) not in (1, 2):
        raise ValueError(f"size={size!r}; expected a positive whole number or (height, width)")
    height, width = (validate.positive_int("size", side) for side in sides * (3 - len(sides)))
    if height * width >= 2**31:  # the operator's sides are 32-bit: 2**32 + 8 became 8, silently
        raise ValueError(f"size={size!r}: {height} x {width} pixels; an output image holds fewer than 2**31")
    if not isinstance(mirror, DataNode):
        mirror = int(validate.one_of("mirror", int(mirror) if isinstance(mirror, bool) else mirror, (0, 1)))
    mean = _channels("mean", mean)
    std = _channels("std", std, positive=True)
    if dtype not in OUTPUT_TYPES:  # one_of would show DALI's enum reprs, <DALIDataType.FLOAT: 9>
        raise ValueError(f"dtype={getattr(dtype, 'name', dtype)}; expected one of "
                         f"{', '.join(f'types.{t.name}' for t in OUTPUT_TYPES)} (DALI 2.4 has no bfloat16)")
    validate.one_of("layout", layout, LAYOUTS)
    has = HaSConfig.given(has)
    _check_output_range(mean, std, () if has is None else has.fill, dtype)
    validate.one_of("impl", impl, IMPLEMENTATIONS)
    validate.one_of("has_impl", has_impl, operator.IMPLEMENTATIONS)
    if window is not None and (not isinstance(window, (tuple, list)) or len(window) != 2
                               or not all(isinstance(part, DataNode) for part in window)):
        raise ValueError(f"window={window!r}; expected None or (anchor, shape) nodes, e.g. the outputs of "
                         "fn.random_crop_generator")

    on_gpu = getattr(images, "device", "cpu") == "gpu"
    if impl == "fused" or (impl == "auto" and not on_gpu and has_impl != "composed" and fused.load()):
        if not fused.load():
            raise RuntimeError(f"the fused operator is unavailable: {fused.unavailable_reason()}")
        if on_gpu and not fused.gpu_available():
            raise RuntimeError(f"the fused operator cannot run on the GPU here: {fused.gpu_unavailable_reason()}; "
                               "use impl='auto' or 'builtin'")
        has_args = has.to_dict() if has is not None else {"patch_sizes": [0], "p_hide": 0.0, "fill": [0.0]}
        window_args = {} if window is None else {"crop_anchor": window[0], "crop_shape": window[1]}
        return fn.dali_has.resize_mirror_normalize_hide(images, size=[height, width], mirror=mirror,
                                                        mean=list(mean), std=list(std), dtype=dtype,
                                                        output_layout=layout, **has_args, **window_args)
    if impl == "auto" and not on_gpu and has_impl != "composed":
        operator.warn_fallback(fused.unavailable_reason())
    if window is not None:
        images = fn.slice(images, start=window[0], shape=window[1], axes=[0, 1])
    images = fn.resize(images, size=[height, width])
    images = fn.crop_mirror_normalize(images, mirror=mirror, mean=list(mean), std=list(std), dtype=dtype,
                                      output_layout=layout)
    if has is None:
        return images
    return operator.hide_and_seek(images, patch_sizes=has.patch_sizes, p_hide=has.p_hide, fill=has.fill,
                                  impl=has_impl)


def _check_output_range(mean: tuple[float, ...], std: tuple[float, ...], fill: tuple[float, ...], dtype) -> None:
    """Refuse settings whose normalized values, (0 - mean) / std .. (255 - mean) / std, or whose fill, do not fit
    the output type (they would be written as infinities)."""
    if len(mean) > 1 and len(std) > 1 and len(mean) != len(std):
        raise ValueError(f"mean has {len(mean)} values and std {len(std)}; give one value or one per channel")
    largest = LARGEST[dtype]
    name = "float16" if dtype == types.FLOAT16 else "float32"
    m, s = np.array(mean), np.array(std)
    spread = float(np.max(np.maximum(np.abs(m), np.abs(255 - m)) / s))
    if not spread <= largest:
        raise ValueError(f"mean={list(mean)}, std={list(std)} normalize pixels to values up to {spread:.3g}, "
                         f"beyond {name}'s largest ({largest:.6g}): give them on the 0..255 scale of the pixels")
    if any(abs(f) > largest for f in fill):
        raise ValueError(f"Hide-and-Seek fill={list(fill)} does not fit {name} (largest {largest:.6g}); the fill "
                         "is in normalized units")


def _channels(name: str, value: Channels, *, positive: bool = False) -> tuple[float, ...]:
    values = validate.numbers(name, value, positive=positive)
    if len(values) > MAX_CHANNELS:
        raise ValueError(f"{name}={value!r}; expected one value or one per channel, at most {MAX_CHANNELS}")
    return values
