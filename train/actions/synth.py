"""A generated feature-sequence data set on which temporal Hide-and-Seek should help localize actions.

Each video is T feature vectors of temporally smooth noise (background) with one action of its class. The
action's full extent (the ground truth) carries a moderate class cue on every feature; a short burst inside it
carries a strong cue of its own instead (a distinct, highly discriminative phase of the action). A classifier
that max-pools over time needs only the burst, so its class activation covers the burst, not the extent (the
paper's premise: the most discriminative part wins). Hiding segments during training sometimes removes the
burst, which pushes the model to recognize the rest of the extent as well.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from dali_has import validate

SPLITS = ("train", "test")
MAX_VIDEOS = 1_000_000  # per split: 10**30 failed in a traceback after the features folder was made


@dataclass(frozen=True)
class SynthActionsConfig:
    """Shape of the generated data set; every field is validated.

    frames: (min, max) features per video, drawn uniformly.
    extent: (min, max) length of the action as a fraction of the video.
    burst: (min, max) length of the discriminative burst in features.
    weak_amplitude, burst_amplitude: strength of the extent's and the burst's class cue (noise std is 1).
    weak_reliability: share of videos whose extent cue names their own class (else another class); below 1
        the extent is also a less reliable cue.
    smoothing: the noise is a moving average over this many features (unit std), as features of overlapping
        clips (C3D / I3D) are correlated in time.
    """

    classes: int = 5
    dim: int = 32
    train_videos: int = 300
    test_videos: int = 200
    frames: tuple[int, int] = (40, 80)
    extent: tuple[float, float] = (0.3, 0.6)
    burst: tuple[int, int] = (4, 6)
    weak_amplitude: float = 2.5
    burst_amplitude: float = 5.0
    weak_reliability: float = 1.0
    smoothing: int = 9
    seed: int = 0

    def __post_init__(self):
        for name in ("classes", "dim", "smoothing"):
            validate.positive_int(name, getattr(self, name))
        for name in ("train_videos", "test_videos"):
            validate.whole_number(name, getattr(self, name), minimum=1, maximum=MAX_VIDEOS)
        if self.classes < 2 or self.dim < 2 * self.classes:
            raise ValueError(f"classes={self.classes} with dim={self.dim} features: need 2 <= classes <= dim / 2 "
                             "(one weak and one burst direction per class)")
        _check_pair("frames", self.frames, int, 1)
        _check_pair("extent", self.extent, float, 0.0, 1.0)
        _check_pair("burst", self.burst, int, 1)
        if self.burst[1] >= self.extent[0] * self.frames[0]:
            raise ValueError(f"burst={self.burst} must be shorter than the shortest extent "
                             f"({self.extent[0]} * {self.frames[0]} features)")
        for name in ("weak_amplitude", "burst_amplitude"):
            validate.number(name, getattr(self, name), low=0.0, low_open=True)
        validate.probability("weak_reliability", self.weak_reliability)
        validate.whole_number("seed", self.seed)


def index_path(folder: str, split: str) -> str:
    """The feature index of `split` ("train" or "test") in a folder `dali-has synth-actions` writes."""
    return os.path.join(folder, f"{split}.json")


def generate(out_dir: str, cfg: SynthActionsConfig | None = None, *, progress: bool = True) -> dict[str, str]:
    """Write `features/*.npy` and one index per split (`train.json`, `test.json`); returns the index paths."""
    cfg = cfg or SynthActionsConfig()
    rng = np.random.default_rng(cfg.seed)
    # Orthonormal directions: the first `classes` are weak cues, the next `classes` burst cues.
    directions = np.linalg.qr(rng.standard_normal((cfg.dim, 2 * cfg.classes)))[0].T
    weak, burst = directions[:cfg.classes], directions[cfg.classes:]
    os.makedirs(os.path.join(out_dir, "features"), exist_ok=True)
    paths = {}
    for split, count in zip(SPLITS, (cfg.train_videos, cfg.test_videos)):
        videos = []
        for i in tqdm(range(count), desc=f"synth-actions {split}", unit="video", leave=False, disable=not progress):
            label = int(rng.integers(cfg.classes))
            features, segment = make_video(rng, cfg, label, weak, burst)
            name = f"features/{split}_{i:05d}.npy"
            np.save(os.path.join(out_dir, name), features)
            videos.append({"features": name, "label": label, "frames": len(features), "segments": [segment]})
        paths[split] = index_path(out_dir, split)
        with open(paths[split], "w") as f:
            json.dump({"classes": [f"action{c}" for c in range(cfg.classes)], "videos": videos}, f)
    with open(os.path.join(out_dir, "synth_config.json"), "w") as f:
        json.dump(asdict(cfg), f, indent=1)
    return paths


def make_video(rng: np.random.Generator, cfg: SynthActionsConfig, label: int, weak: np.ndarray,
               burst: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """One video's features [T, D] (float32) and its action extent [start, end) in features."""
    frames = int(rng.integers(cfg.frames[0], cfg.frames[1] + 1))
    length = max(cfg.burst[1] + 1, int(round(rng.uniform(*cfg.extent) * frames)))
    start = int(rng.integers(0, frames - length + 1))
    white = rng.standard_normal((frames, cfg.dim))
    features = ndimage.uniform_filter1d(white, cfg.smoothing, axis=0, mode="wrap") * np.sqrt(cfg.smoothing)
    weak_class = label if rng.random() < cfg.weak_reliability else _other_class(rng, label, cfg.classes)
    cue = np.zeros((length, cfg.dim))
    cue[:] = cfg.weak_amplitude * weak[weak_class]
    burst_length = int(rng.integers(cfg.burst[0], cfg.burst[1] + 1))
    burst_start = int(rng.integers(0, length - burst_length + 1))
    # The burst is a distinct phase of the action: its own cue replaces the extent's there.
    cue[burst_start:burst_start + burst_length] = cfg.burst_amplitude * burst[label]
    features[start:start + length] += cue
    return features.astype(np.float32), [start, start + length]


def _other_class(rng: np.random.Generator, label: int, classes: int) -> int:
    return (label + int(rng.integers(1, classes))) % classes


def _check_pair(name: str, pair, kind, low, high=None) -> None:
    ok = (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(v, (int, float)) for v in pair)
          and low <= pair[0] <= pair[1] and (high is None or pair[1] <= high)
          and (kind is float or all(isinstance(v, int) for v in pair)))
    if not ok:
        bound = f" <= {high}" if high is not None else ""
        raise ValueError(f"{name}={pair!r}; expected ({kind.__name__} low, high) with {low} <= low <= high{bound}")
