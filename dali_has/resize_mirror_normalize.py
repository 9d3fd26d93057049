"""`resize_mirror_normalize_hide`: from decoded crop windows to the network input in one CPU operator.

The training pipeline's tail, fn.resize -> fn.crop_mirror_normalize -> hide_and_seek, spends most of its CPU
time in DALI's general-purpose resize. The plugin's `fn.dali_has.resize_mirror_normalize_hide` does the same
work in one pass per output row: the same linear, antialiased filter with the same weights, the uint8
rounding fn.resize applies, crop_mirror_normalize's normalization (a 256-entry table per channel), and
Hide-and-Seek cells written as the fill instead of being computed. It differs from the chain only where
the two resizes round a value to a different uint8 level (one normalized step, 1 / std).

The operator is CPU only. Where the plugin cannot be built, or the images are on the GPU, `impl="auto"` runs
the chain of DALI built-ins instead (with `hide_and_seek`'s own fused-or-composed choice).
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Optional, Sequence, Union

from nvidia.dali import fn, types

from dali_has import fused, operator
from dali_has.spec import HaSConfig

IMPLEMENTATIONS = ("auto", "fused", "composed")
OUTPUT_TYPES = (types.FLOAT, types.FLOAT16)  # DALI 2.4 has no bfloat16
LAYOUTS = ("CHW", "HWC")
MAX_CHANNELS = 4  # the operator's limit (one pixel is one 4-float vector)

Channels = Union[float, Sequence[float]]


def resize_mirror_normalize_hide(images, *, size: Union[int, Sequence[int]], mirror=0, mean: Channels = 0.0,
                                 std: Channels = 1.0, dtype=types.FLOAT, layout: str = "CHW",
                                 has: Optional[HaSConfig] = None, impl: str = "auto"):
    """Resize, flip, normalize and (optionally) Hide-and-Seek a batch of decoded images in one operator.

    Args:
        images: DALI node of uint8 HWC images of any size (e.g. fn.decoders.image_random_crop's windows),
            1 to 4 channels.
        size: output side, or (height, width), in pixels.
        mirror: per-sample horizontal flip: 0/1, or a DALI node such as fn.random.coin_flip().
        mean, std: normalization (x - mean) / std on the 0..255 scale, one value or one per channel.
        dtype: types.FLOAT or types.FLOAT16 (DALI 2.4 has no bfloat16).
        layout: "CHW" or "HWC", of each output sample.
        has: Hide-and-Seek settings, applied on the output grid after the flip, fill in normalized units;
            None hides nothing.
        impl: "auto" (the fused operator for CPU images when the plugin loads, else the chain of built-ins),
            "fused" or "composed" (fn.resize + fn.crop_mirror_normalize + hide_and_seek(impl="composed")).

    Returns:
        A node of `dtype` images, `size` in `layout`.

    Raises:
        ValueError: an argument is out of range or of the wrong type (the message names it).
        RuntimeError: impl="fused" but the plugin is unavailable or the images are on the GPU.
    """
    size = _check_size(size)
    mean = _check_channels("mean", mean, positive=False)
    std = _check_channels("std", std, positive=True)
    if dtype not in OUTPUT_TYPES:
        raise ValueError(f"dtype={dtype!r}; expected types.FLOAT or types.FLOAT16")
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}; expected one of {LAYOUTS}")
    if has is not None and not isinstance(has, HaSConfig):
        raise ValueError(f"has={has!r}; expected None or a dali_has.HaSConfig")
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"impl={impl!r}; expected one of {IMPLEMENTATIONS}")

    on_gpu = getattr(images, "device", "cpu") == "gpu"
    if impl == "fused" or (impl == "auto" and not on_gpu and fused.load()):
        if on_gpu:
            raise RuntimeError("resize_mirror_normalize_hide has no GPU operator; give it CPU images or use "
                               "impl='auto' / 'composed'")
        if not fused.load():
            raise RuntimeError(f"the fused operator is unavailable: {fused.unavailable_reason()}")
        has_args = has.to_dict() if has is not None else {"patch_sizes": [0], "p_hide": 0.0, "fill": [0.0]}
        return fn.dali_has.resize_mirror_normalize_hide(images, size=list(size), mirror=mirror, mean=list(mean),
                                                        std=list(std), dtype=dtype, output_layout=layout,
                                                        **has_args)
    if impl == "auto" and not on_gpu:
        operator.warn_fallback(fused.unavailable_reason())
    images = fn.resize(images, size=list(size))
    images = fn.crop_mirror_normalize(images, mirror=mirror, mean=list(mean), std=list(std), dtype=dtype,
                                      output_layout=layout)
    if has is None:
        return images
    return operator.hide_and_seek(images, patch_sizes=has.patch_sizes, p_hide=has.p_hide, fill=has.fill,
                                  impl="composed" if impl == "composed" else "auto")


def _check_size(size) -> tuple[int, int]:
    sides = (size, size) if isinstance(size, Real) else tuple(size)
    if len(sides) != 2 or any(isinstance(s, bool) or not isinstance(s, Real) or s != int(s) or s < 1
                              for s in sides):
        raise ValueError(f"size={size!r}; expected a positive whole number or (height, width)")
    return int(sides[0]), int(sides[1])


def _check_channels(name: str, value: Channels, *, positive: bool) -> tuple[float, ...]:
    values = (value,) if isinstance(value, Real) else tuple(value)
    ok = 1 <= len(values) <= MAX_CHANNELS and all(
        not isinstance(v, bool) and isinstance(v, Real) and math.isfinite(v) and (v > 0 or not positive)
        for v in values)
    if not ok:
        rule = "positive numbers" if positive else "finite numbers"
        raise ValueError(f"{name}={value!r}; expected one or up to {MAX_CHANNELS} {rule} (one per channel)")
    return tuple(float(v) for v in values)
