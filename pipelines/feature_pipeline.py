"""Feature-sequence pipeline: per-video `.npy` features [T, D] -> F_total uniformly sampled features ->
temporal Hide-and-Seek (training only), for weakly supervised action localization (paper §3.2, §4.2.3).

A data set is an index file (JSON):

    {"classes": ["name", ...],
     "videos": [{"features": "relative/or/absolute.npy", "label": 0, "frames": T,
                 "segments": [[start, end], ...]}, ...]}

`label` is the video-level class (the only supervision), `frames` the T of its feature array and `segments`
the ground-truth action extents in feature indices, [start, end), used for evaluation only.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import nvidia.dali.fn as fn
import nvidia.dali.types as types
from nvidia.dali import Pipeline, pipeline_def

from dali_has import TemporalHaSConfig, hide_and_seek_temporal
from pipelines.sequence_reader import read_rows
from pipelines.settings import PipelineOptions
from pipelines.temporal_sampling import sample_uniformly


@dataclass(frozen=True)
class Video:
    features: str  # absolute path of the [T, D] .npy file
    label: int
    frames: int
    segments: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class FeatureIndex:
    path: str
    classes: tuple[str, ...]
    videos: tuple[Video, ...]

    @classmethod
    def load(cls, path: str) -> FeatureIndex:
        """Read and check an index file; feature paths are taken relative to its folder."""
        with open(path) as f:
            raw = json.load(f)
        if not isinstance(raw, dict) or set(raw) != {"classes", "videos"}:
            raise ValueError(f"{path}: expected a JSON object with exactly the keys 'classes' and 'videos'")
        classes = tuple(str(c) for c in raw["classes"])
        base = os.path.dirname(os.path.abspath(path))
        videos = tuple(_video(entry, i, len(classes), base, path) for i, entry in enumerate(raw["videos"]))
        if not videos:
            raise ValueError(f"{path} lists no videos")
        return cls(os.path.abspath(path), classes, videos)

    @property
    def labels(self) -> np.ndarray:
        return np.array([v.label for v in self.videos], dtype=np.int64)


def feature_pipeline(index: FeatureIndex, options: PipelineOptions, *, frames: int, train: bool,
                     has: Optional[TemporalHaSConfig] = None) -> Pipeline:
    """A DALI pipeline (not built yet) with outputs (features float32 [frames, D] "FC", row of the video in the
    index); `pipelines.SequenceLoader(define, options, index.labels)` makes it a PyTorch iterable.

    train=True shuffles and applies `has` (None = no hiding; its fill in feature units, e.g. `mean_feature`);
    train=False reads in index order and never hides.
    """
    return _graph(index, options, frames, has if train else None, train,
                  **options.pipeline_kwargs(options.pipeline_seed))


@pipeline_def
def _graph(index: FeatureIndex, options: PipelineOptions, frames: int, has: Optional[TemporalHaSConfig],
           train: bool):
    encoded, rows = read_rows([v.features for v in index.videos], options, shuffle=train)
    # float32 for the model, and because DALI's CPU arithmetic has no float16 (features are often stored so).
    features = fn.cast(fn.decoders.numpy(encoded), dtype=types.FLOAT)
    features = fn.reshape(features, layout="FC")
    if options.device == "gpu":
        features = features.gpu()
    features = sample_uniformly(features, frames)
    if has is not None:
        features = hide_and_seek_temporal(features, segment=has.segment, p_hide=has.p_hide, fill=has.fill)
    return features, rows


def mean_feature(index: FeatureIndex) -> np.ndarray:
    """The data set's mean feature vector [D] over all frames of all videos: the temporal HaS fill."""
    total, count = 0.0, 0
    for video in index.videos:
        features = np.load(video.features, mmap_mode="r")
        total = total + features.sum(axis=0, dtype=np.float64)
        count += len(features)
    return total / count


def _video(entry, i: int, num_classes: int, base: str, path: str) -> Video:
    where = f"{path}: videos[{i}]"
    if not isinstance(entry, dict) or set(entry) != {"features", "label", "frames", "segments"}:
        raise ValueError(f"{where} must have exactly the keys 'features', 'label', 'frames', 'segments'")
    label, frames = entry["label"], entry["frames"]
    if not isinstance(label, int) or not 0 <= label < num_classes:
        raise ValueError(f"{where}: label={label!r} is not a class index in [0, {num_classes})")
    if not isinstance(frames, int) or frames < 1:
        raise ValueError(f"{where}: frames={frames!r} must be a whole number >= 1")
    segments = tuple((float(s), float(e)) for s, e in entry["segments"])
    if any(not 0 <= s < e <= frames for s, e in segments):
        raise ValueError(f"{where}: segments {entry['segments']} must satisfy 0 <= start < end <= frames={frames}")
    return Video(os.path.join(base, entry["features"]), label, frames, segments)
