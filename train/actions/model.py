"""The weakly supervised action classifier of paper §4.2.3 over per-frame features.

Two 1×1 temporal convolutions with 500 kernels (each a per-frame fully connected layer, ReLU after each),
global max pooling over time, then a linear layer whose softmax gives the class probabilities. The class
activation over time (1-D CAM) is the classifier weights applied to the per-frame conv features.
"""
from __future__ import annotations

import torch
from torch import nn

from dali_has import validate

PAPER_WIDTH = 500


class ActionClassifier(nn.Module):
    def __init__(self, feature_dim: int, num_classes: int, width: int = PAPER_WIDTH):
        super().__init__()
        for name, value in (("feature_dim", feature_dim), ("num_classes", num_classes), ("width", width)):
            validate.positive_int(name, value)
        self.features = nn.Sequential(nn.Conv1d(feature_dim, width, 1), nn.ReLU(inplace=True),
                                      nn.Conv1d(width, width, 1), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        """Class logits [B, classes] for feature sequences [B, F, D]."""
        return self.classifier(self._frame_features(sequences).amax(dim=2))

    def cam(self, sequences: torch.Tensor) -> torch.Tensor:
        """Class activation over time [B, classes, F]: CAM_c(t) = sum_i W[c, i] * f_i(t)."""
        return torch.einsum("ci,bit->bct", self.classifier.weight, self._frame_features(sequences))

    def _frame_features(self, sequences: torch.Tensor) -> torch.Tensor:
        return self.features(sequences.transpose(1, 2))  # Conv1d wants [B, D, F]
