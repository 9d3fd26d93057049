"""Crop, flip, normalize and lay out decoded images in one DALI op; the matching Hide-and-Seek fill."""
from __future__ import annotations

from collections.abc import Sequence

from nvidia.dali import fn

from pipelines.settings import IMAGENET_MEAN, IMAGENET_STD, ImageOptions, rgb


def has_fill(data_mean: Sequence[float], mean: Sequence[float] = IMAGENET_MEAN,
             std: Sequence[float] = IMAGENET_STD) -> tuple[float, float, float]:
    """The Hide-and-Seek fill, per channel, for images normalized as (x - mean) / std.

    HaS hides with the training-set mean colour `data_mean` (paper §3.1.2). Masking happens after
    normalization, where that colour becomes (data_mean - mean) / std: 0 when you normalize with the data set's
    own mean (`dali-has mean DIR`), something else with e.g. ImageNet statistics. All values on the 0..255 scale.
    """
    data_mean, mean, std = rgb("data_mean", data_mean), rgb("mean", mean), rgb("std", std, positive=True)
    return tuple((d - m) / s for d, m, s in zip(data_mean, mean, std))


def crop_mirror_normalize(images, image: ImageOptions, *, mirror=0):
    """The centre crop×crop window (the callers' windows already are that size), optional horizontal flip,
    (x - mean) / std, cast to the output dtype, HWC -> CHW when the layout asks for it."""
    return fn.crop_mirror_normalize(
        images,
        crop=(image.crop, image.crop),
        mirror=mirror,
        mean=list(image.mean),
        std=list(image.std),
        dtype=image.dali_dtype,
        output_layout=image.layout[1:],  # per-sample layout: "CHW" or "HWC"
    )
