"""The shape every CAM-capable classifier shares: conv features -> global pooling -> one linear layer."""
from __future__ import annotations

import torch
from torch import nn

from dali_has import validate

POOLINGS = {"avg": nn.AdaptiveAvgPool2d, "max": nn.AdaptiveMaxPool2d}


class CAMNet(nn.Module):
    """`body` maps images to features [N, K, h, w]; logits = classifier(pool(features)).

    With a linear classifier on pooled features, CAM(c) = sum_k W[c, k] F_k is the map whose average (GAP) is
    the class score minus its bias; with max pooling (GMP, paper Table 4) the same map is used.
    """

    def __init__(self, body: nn.Module, classifier: nn.Linear, pooling: str = "avg"):
        super().__init__()
        validate.one_of("pooling", pooling, sorted(POOLINGS))
        self.pooling = pooling
        self.body = body
        self.pool = POOLINGS[pooling](1)
        self.classifier = classifier

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return features, self.classifier(self.pool(features).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[1]

    @property
    def classifier_weight(self) -> torch.Tensor:
        """[classes, channels]: the W of CAM(c) = sum_k W[c, k] F_k."""
        return self.classifier.weight

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features


def check_num_classes(num_classes: int) -> int:
    return validate.positive_int("num_classes", num_classes)
