"""Classifiers with a class-activation-map (CAM) interface, and `build_model`, the factory the CLI uses.

Every model is a `CAMNet`: `forward(x) -> logits`, `features_and_logits(x) -> (features, logits)` and
`classifier_weight` ([classes, channels]), so `train.wsol.cam` works on any of them.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from train.models.alexnet_gap import STEMS, AlexNetGAP
from train.models.cam_net import CAMNet
from train.models.resnet50 import ResNet50CAM

ARCHS: dict[str, type[CAMNet]] = {"resnet50": ResNet50CAM, "alexnet_gap": AlexNetGAP}


def model_options(arch: str) -> dict[str, object]:
    """The options `build_model` accepts for `arch`, with their defaults."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(ARCHS)}")
    params = inspect.signature(ARCHS[arch].__init__).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def build_model(arch: str, num_classes: int, **opts) -> CAMNet:
    """Build a randomly initialised model (weights are never downloaded); unknown options are errors."""
    allowed = model_options(arch)
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for arch {arch!r}; expected some of {sorted(allowed)}")
    return ARCHS[arch](num_classes, **opts)


__all__ = ["ARCHS", "STEMS", "AlexNetGAP", "CAMNet", "ResNet50CAM", "build_model", "model_options"]


CROP_SEARCH_LIMIT = 1024  # the largest crop tried when looking for the smallest one a network takes


def check_crop_fits(build: Callable[[], torch.nn.Module], crop: int, arch: str) -> None:
    """Refuse a crop the network `build()` makes reduces to nothing in its pooling (AlexNet-GAP below 31 pixels
    raised inside the first training step, or the bench's model step after minutes of loader runs), naming the
    smallest that fits. Shapes only: the model is built and run on the meta device."""
    with torch.device("meta"):
        model = build().eval()

    def fits(side: int) -> bool:
        try:
            model(torch.empty(2, 3, side, side, device="meta"))
        except RuntimeError:
            return False
        return True

    if fits(crop):
        return
    low, high = crop, CROP_SEARCH_LIMIT  # low does not fit; find the smallest that does
    if not fits(high):
        raise ValueError(f"crop={crop} is too small for {arch}, and so is {high}: check its --model-opt")
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    raise ValueError(f"crop={crop} is too small for {arch}: its pooling leaves nothing below {high} pixels; "
                     f"give --crop {high} or more")
