"""`hide_and_seek`: the public Hide-and-Seek operator for DALI pipeline definitions.

It uses the fused C++/CUDA plugin when it can be built and loaded, else the composition of DALI built-ins
(same rule, same oracle tests), saying so once.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

from dali_has import composed, fused, validate
from dali_has.spec import PAPER_P_HIDE, PAPER_PATCH_SIZES, Fill, HaSConfig

IMPLEMENTATIONS = ("auto", "fused", "composed")
_warned = False


def hide_and_seek(images, *, patch_sizes: Sequence[int] | int = PAPER_PATCH_SIZES, p_hide: float = PAPER_P_HIDE,
                  fill: Fill = 0.0, impl: str = "auto"):
    """Hide random grid cells of every image in a DALI batch (training only; never call it at evaluation).

    Per sample and iteration: a patch size S drawn uniformly from `patch_sizes`, a top-left-anchored S×S grid
    (edge cells clipped), each cell hidden with probability `p_hide`, hidden pixels set to `fill` on every channel.

    Args:
        images: a DALI node of HWC or CHW images (uint8, float16 or float32; the layout is read at run time), on
            the CPU or the GPU.
        patch_sizes: cell sizes in pixels of `images`, one drawn per sample and iteration; 0 = leave the sample
            whole. Default: the paper's (`spec.PAPER_PATCH_SIZES`, for 224-pixel inputs).
        p_hide: probability that a cell is hidden.
        fill: value of hidden pixels, a scalar or one per channel. 0 is the dataset mean once images are
            normalized with that mean; integer images get it rounded half-to-even and clamped to their type's
            range (300 is 255 on uint8).
        impl: "auto" (fused plugin if available, else the composition, with one warning saying why), "fused" or
            "composed".

    Returns:
        A node of the same shape, dtype, layout and device. Masks are new every iteration and reproducible for a
        fixed pipeline seed.

    Raises:
        ValueError: a setting is invalid (the message names it).
        RuntimeError: impl="fused" and the plugin cannot be used here (the message says why).
        When the pipeline runs, a fill of several values for images of another channel count fails the batch:
        the fused operator with a ValueError naming `fill`; the composition with DALI's reshape error (a
        RuntimeError, "Input and output samples must occupy the same size in bytes"), as the channel count is
        known only then.
    """
    cfg = HaSConfig(patch_sizes, p_hide, fill)
    if any(abs(value) > validate.FLOAT32_MAX for value in cfg.fill):  # float32 images took it as inf, on every path
        raise ValueError(f"fill={fill!r} is beyond float32's largest ({validate.FLOAT32_MAX:.7g}), the widest "
                         "image type hide_and_seek takes")
    validate.one_of("impl", impl, IMPLEMENTATIONS)
    if impl == "composed":
        return composed.hide_and_seek_composed(images, cfg)
    if fused.load() and (images.device != "gpu" or fused.gpu_available()):
        return fused.hide_and_seek_fused(images, cfg)
    reason = fused.unavailable_reason() or fused.gpu_unavailable_reason()
    if impl == "fused":
        what = "plugin is not available" if fused.unavailable_reason() else "operator cannot run on the GPU"
        raise RuntimeError(f"the fused Hide-and-Seek {what}: {reason}")
    warn_fallback(reason)
    return composed.hide_and_seek_composed(images, cfg)


def warn_fallback(reason: str | None) -> None:
    """Say once per process that the plugin is unavailable and DALI built-ins run instead."""
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f"dali_has: fused plugin unavailable ({reason}); "
                      "using the composition of DALI built-ins", RuntimeWarning, stacklevel=3)
