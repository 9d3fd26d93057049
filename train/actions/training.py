"""Train the §4.2.3 action classifier on feature sequences (with or without temporal Hide-and-Seek) and
evaluate classification and CAM-based temporal localization."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dali_has import TemporalHaSConfig, validate
from pipelines.feature_pipeline import FeatureIndex, feature_pipeline
from pipelines.sequence_loader import SequenceLoader
from pipelines.settings import PipelineOptions
from train.actions.localization import (
    PAPER_CAM_THRESHOLD,
    THUMOS_IOU_THRESHOLDS,
    Segment,
    mean_average_precision,
    predict_segments,
)
from train.actions.model import ActionClassifier


@dataclass(frozen=True)
class ActionTrainConfig:
    """frames: F_total features sampled per video; has: temporal HaS settings, None = baseline."""

    frames: int = 40
    has: Optional[TemporalHaSConfig] = None
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self):
        for name in ("frames", "epochs", "batch_size"):
            validate.positive_int(name, getattr(self, name))
        validate.number("lr", self.lr, low=0.0, low_open=True)
        validate.number("weight_decay", self.weight_decay, low=0.0)
        validate.whole_number("seed", self.seed)


def train_action_model(index: FeatureIndex, cfg: ActionTrainConfig, *, progress: bool = True) -> ActionClassifier:
    """Fit a fresh classifier on the video labels of `index` with Adam; DALI draws new masks every epoch."""
    torch.manual_seed(cfg.seed)
    dim = int(np.load(index.videos[0].features, mmap_mode="r").shape[1])
    model = ActionClassifier(dim, len(index.classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loader = SequenceLoader(lambda o: feature_pipeline(index, o, frames=cfg.frames, train=True, has=cfg.has),
                            PipelineOptions(batch_size=cfg.batch_size, seed=cfg.seed), index.labels)
    name = "HaS" if cfg.has else "baseline"
    model.train()
    for _ in tqdm(range(cfg.epochs), desc=f"{name} seed {cfg.seed}", unit="epoch", disable=not progress,
                  leave=False):
        for batch in loader:
            loss = F.cross_entropy(model(batch.sequences), batch.labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model


@torch.no_grad()
def evaluate_localization(model: ActionClassifier, index: FeatureIndex, *, frames: int, batch_size: int = 64,
                          cam_threshold: float = PAPER_CAM_THRESHOLD,
                          iou_thresholds=THUMOS_IOU_THRESHOLDS) -> dict:
    """Top-1 accuracy and mAP at each temporal IoU threshold on `index` (never hidden)."""
    model.eval()
    predictions, correct = [], 0
    loader = SequenceLoader(lambda o: feature_pipeline(index, o, frames=frames, train=False),
                            PipelineOptions(batch_size=batch_size), index.labels)
    for batch in loader:
        probabilities = F.softmax(model(batch.sequences), dim=1).numpy()
        cams = model.cam(batch.sequences).numpy()
        correct += int((probabilities.argmax(axis=1) == batch.labels.numpy()).sum())
        for row, cam, prob in zip(batch.rows.tolist(), cams, probabilities):
            predictions += predict_segments(row, cam, prob, index.videos[row].frames, cam_threshold)
    ground_truth = [Segment(row, v.label, s, e) for row, v in enumerate(index.videos) for s, e in v.segments]
    return {"top1": correct / len(index.videos),
            "mAP": mean_average_precision(predictions, ground_truth, iou_thresholds)}
