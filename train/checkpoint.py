"""A run folder's files and how they are written and read.

    RUN/config.json     the resolved TrainConfig
    RUN/checkpoint.pt   model, optimizer, scheduler, epoch, RNG, best-so-far: written after every epoch
    RUN/best.pt         the same, from the epoch with the best validation result so far (with --val-data)
    RUN/metrics.jsonl   one JSON line per epoch

Checkpoints are written to a temporary file and renamed, so a crash never leaves half a checkpoint.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from train.config import TrainConfig

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
METRICS = "metrics.jsonl"


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` to `path` atomically."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """A checkpoint this project wrote, its tensors on `device`."""
    return torch.load(path, map_location=device, weights_only=False)


def load_trained_model(run_dir: str | Path, device: torch.device | str = "cpu", checkpoint: str = CHECKPOINT):
    """The model of a run folder with the weights of `checkpoint` (the latest, or BEST), in eval mode, and the
    run's config."""
    run_dir = Path(run_dir)
    cfg = TrainConfig.load(run_dir / CONFIG)
    state = load_checkpoint(run_dir / checkpoint, device)
    model = cfg.build_model(state["num_classes"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), cfg
