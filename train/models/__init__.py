"""Classifiers with a class-activation-map (CAM) interface, and `build_model`, the factory the CLI uses.

Every model is a `CAMNet`: `forward(x) -> logits`, `features_and_logits(x) -> (features, logits)` and
`classifier_weight` ([classes, channels]), so `train.wsol.cam` works on any of them.
"""
from __future__ import annotations

import inspect

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
