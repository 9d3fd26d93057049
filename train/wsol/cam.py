"""Class activation maps (Zhou et al. 2016; Hide-and-Seek paper §3.1.3): CAM(c) = Σ_k W[c, k] · F_k.

F are the last conv features [N, K, h, w] and W the linear classifier's weights [classes, K]; the bias is left
out, as in the CAM paper's code (zhoubolei/CAM, `returnCAMmap.m`). Maps are upsampled bilinearly to the input
size (wsolevaluation resizes with bicubic interpolation, which overshoots; bilinear keeps the map within the
range of its samples). Two scales, one per metric:

* `fraction_of_max`: the map divided by its maximum, negatives clipped to 0, so that "20 % of the max" (the
  papers' box rule, GT-known Loc and Top-1 Loc) is the threshold 0.2. The CAM code does the same: it divides
  by the max and writes the map as an image, which clips negatives.
* `normalize_cams`: min-max normalized to [0, 1], as wsolevaluation's `normalize_scoremap` (MaxBoxAccV2). On
  this scale 0.2 means min + 0.2 (max - min), another rule: CAMs have negative minima.

    features, logits = model.features_and_logits(images)
    cams = class_activation_maps(features, model.classifier_weight, labels, size=images.shape[-2:])
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def class_activation_maps(features: torch.Tensor, weight: torch.Tensor, classes: torch.Tensor,
                          size: Sequence[int] | None = None) -> torch.Tensor:
    """Raw CAMs [N, H, W] of class classes[n] for each image n, upsampled to `size` (default: the feature size);
    `LocalizationMeter` takes them as they are and puts them on each metric's scale."""
    if features.dim() != 4:
        raise ValueError(f"features have shape {tuple(features.shape)}; expected [N, K, h, w]")
    n, k = features.shape[:2]
    if weight.dim() != 2 or weight.shape[1] != k:
        raise ValueError(f"classifier weight has shape {tuple(weight.shape)}; expected [classes, {k}]")
    classes = torch.as_tensor(classes, device=features.device).long().reshape(-1)
    if classes.numel() != n:
        raise ValueError(f"{classes.numel()} classes given for {n} images")
    # Weight and sum in float32: under autocast the features may be half precision.
    cams = torch.einsum("nk,nkhw->nhw", weight[classes].float(), features.float())
    if size is not None and tuple(size) != tuple(cams.shape[-2:]):
        cams = F.interpolate(cams[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    return cams


def normalize_cams(cams: torch.Tensor) -> torch.Tensor:
    """Min-max normalize each map of [N, H, W] to [0, 1]; constant or non-finite maps become zeros."""
    flat = cams.reshape(cams.shape[0], -1)
    lo = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - lo
    ok = torch.isfinite(span) & (span > 0)
    out = torch.where(ok, (flat - lo) / torch.where(ok, span, torch.ones_like(span)), torch.zeros_like(flat))
    return out.reshape(cams.shape)


def fraction_of_max(cams: torch.Tensor) -> torch.Tensor:
    """Each map of [N, H, W] divided by its maximum, negatives clipped to 0 (the papers' scale, see the module
    docstring); maps without a finite positive maximum become zeros."""
    flat = cams.reshape(cams.shape[0], -1)
    top = flat.amax(dim=1, keepdim=True)
    ok = torch.isfinite(top) & (top > 0)
    out = torch.where(ok, (flat / torch.where(ok, top, torch.ones_like(top))).clamp(0, 1), torch.zeros_like(flat))
    return out.reshape(cams.shape)
