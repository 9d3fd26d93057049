"""Train the §4.2.3 action classifier on feature sequences (with or without temporal Hide-and-Seek) and
evaluate classification and CAM-based temporal localization."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from tqdm import tqdm

from dali_has import TemporalHaSConfig, validate
from pipelines.feature_pipeline import FeatureIndex, feature_loader
from pipelines.settings import PipelineOptions
from pipelines.temporal_sampling import MAX_COUNT
from train.actions.localization import (
    PAPER_CAM_THRESHOLD,
    THUMOS_IOU_THRESHOLDS,
    Segment,
    mean_average_precision,
    predict_segments,
)
from train.actions.model import ActionClassifier
from train.config import MAX_EPOCHS


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
        validate.whole_number("frames", self.frames, minimum=1, maximum=MAX_COUNT)
        validate.whole_number("epochs", self.epochs, minimum=1, maximum=MAX_EPOCHS)
        validate.positive_int("batch_size", self.batch_size)
        validate.number("lr", self.lr, low=0.0, low_open=True)
        validate.number("weight_decay", self.weight_decay, low=0.0)
        validate.whole_number("seed", self.seed, maximum=validate.MAX_SEED)


def train_action_model(index: FeatureIndex, cfg: ActionTrainConfig, *, progress: bool = True) -> ActionClassifier:
    """Fit a fresh classifier on the video labels of `index` with Adam; DALI draws new masks every epoch."""
    torch.manual_seed(cfg.seed)
    model = ActionClassifier(index.dim, len(index.classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loader = feature_loader(index, PipelineOptions(batch_size=cfg.batch_size, seed=cfg.seed), frames=cfg.frames,
                            train=True, has=cfg.has)
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


def check_scorable(index: FeatureIndex) -> None:
    """Refuse an index without ground-truth segments (its mAP would be NaN)."""
    if not any(v.segments for v in index.videos):
        raise ValueError(f"{index.path} marks no action segments, so localization cannot be scored; give the "
                         "videos their segments")


@torch.no_grad()
def evaluate_localization(model: ActionClassifier, index: FeatureIndex, *, frames: int, batch_size: int = 64,
                          cam_threshold: float = PAPER_CAM_THRESHOLD,
                          iou_thresholds=THUMOS_IOU_THRESHOLDS) -> dict:
    """Top-1 accuracy and mAP at each temporal IoU threshold on `index` (never hidden)."""
    model.eval()
    predictions, correct = [], 0
    check_scorable(index)
    loader = feature_loader(index, PipelineOptions(batch_size=batch_size), frames=frames, train=False)
    for batch in loader:
        probabilities = F.softmax(model(batch.sequences), dim=1).numpy()
        cams = model.cam(batch.sequences).numpy()
        correct += int((probabilities.argmax(axis=1) == batch.labels.numpy()).sum())
        for row, cam, prob in zip(batch.rows.tolist(), cams, probabilities):
            predictions += predict_segments(row, cam, prob, index.videos[row].frames, cam_threshold)
    ground_truth = [Segment(row, v.label, s, e) for row, v in enumerate(index.videos) for s, e in v.segments]
    return {"top1": correct / len(index.videos),
            "mAP": mean_average_precision(predictions, ground_truth, iou_thresholds)}
