"""Class activation maps (Zhou et al. 2016; Hide-and-Seek paper §3.1.3): CAM(c) = Σ_k W[c, k] · F_k.

F are the last conv features [N, K, h, w] and W the linear classifier's weights [classes, K]; the bias is left
out (it shifts the map by a constant, which normalization removes anyway). Maps are upsampled bilinearly to
the input size and min-max normalized per image to [0, 1] as wsolevaluation's `normalize_scoremap` does
(clovaai/wsolevaluation, inference.py; a constant map becomes all zeros). wsolevaluation resizes with
bicubic interpolation, which overshoots; bilinear keeps the map within the range of its samples.

    features, logits = model.features_and_logits(images)
    cams = class_activation_maps(features, model.classifier_weight, labels, size=images.shape[-2:])
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def class_activation_maps(features: torch.Tensor, weight: torch.Tensor, classes: torch.Tensor,
                          size: Sequence[int] | None = None, normalize: bool = True) -> torch.Tensor:
    """CAMs [N, H, W] of class classes[n] for each image n, upsampled to `size` (default: the feature size).

    normalize=False returns the raw, upsampled maps, e.g. to average over test crops before normalizing.
    """
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
    return normalize_cams(cams) if normalize else cams


def normalize_cams(cams: torch.Tensor) -> torch.Tensor:
    """Min-max normalize each map of [N, H, W] to [0, 1]; constant or non-finite maps become zeros."""
    flat = cams.reshape(cams.shape[0], -1)
    lo = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - lo
    ok = torch.isfinite(span) & (span > 0)
    out = torch.where(ok, (flat - lo) / torch.where(ok, span, torch.ones_like(span)), torch.zeros_like(flat))
    return out.reshape(cams.shape)
