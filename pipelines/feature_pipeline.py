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
from pathlib import Path
from typing import Optional, Union

import numpy as np
import nvidia.dali.fn as fn
import nvidia.dali.types as types
from nvidia.dali import Pipeline, pipeline_def

from dali_has import TemporalHaSConfig, hide_and_seek_temporal, validate
from pipelines.files import Dataset
from pipelines.loader import samples_digest
from pipelines.sequence_loader import SequenceLoader
from pipelines.sequence_reader import check_name, read_rows
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
    dim: int  # D, the features per step of every video

    @classmethod
    def load(cls, path: str) -> FeatureIndex:
        """Read and check an index file; feature paths are taken relative to its folder.

        Every feature file's header is read (not its data): it must hold a [T, D] array DALI's numpy decoder
        reads (C order, little-endian, a bool, integer or float dtype) in a file of exactly that size, T must be
        the video's `frames`, and D and the dtype the same for every video (DALI's decoder stops on a batch
        mixing dtypes). Anything else raises a ValueError naming the index entry and the file.
        """
        if os.path.exists(path) and not os.path.isfile(path):  # a FIFO would be waited on for ever
            raise ValueError(f"{path}: not a regular file; a feature index is a JSON file")
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
        except (UnicodeDecodeError, ValueError, RecursionError) as error:  # ValueError: a 5,000-digit number too
            raise ValueError(f"{path}: not a JSON feature index ({type(error).__name__}: "
                             f"{str(error).splitlines()[0][:200]})") from None
        if not isinstance(raw, dict) or set(raw) != {"classes", "videos"}:
            raise ValueError(f"{path}: expected a JSON object with exactly the keys 'classes' and 'videos'")
        classes = raw["classes"]
        if (not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes)
                or len(set(classes)) != len(classes)):
            raise ValueError(f"{path}: 'classes' must be a list of different, non-empty class names")
        if not isinstance(raw["videos"], list) or not raw["videos"]:
            raise ValueError(f"{path}: 'videos' must be a non-empty list of videos")
        base = os.path.dirname(os.path.abspath(path))
        videos, dims, dtypes = [], [], []
        for i, entry in enumerate(raw["videos"]):
            video, dim, dtype = _video(entry, len(classes), base, f"{path}: videos[{i}]")
            if dims and dim != dims[0]:
                raise ValueError(f"{path}: videos[{i}]: {video.features} has {dim} features per step, the first "
                                 f"video {dims[0]}; every video of an index needs the same")
            if dtypes and dtype != dtypes[0]:
                raise ValueError(f"{path}: videos[{i}]: {video.features} holds {dtype} features, the first video "
                                 f"{dtypes[0]}; save every video's features with one dtype (e.g. float32)")
            videos.append(video)
            dims.append(dim)
            dtypes.append(dtype)
        return cls(os.path.abspath(path), tuple(classes), tuple(videos), dims[0])

    @property
    def labels(self) -> np.ndarray:
        return np.array([v.label for v in self.videos], dtype=np.int64)


def feature_pipeline(index: FeatureIndex, options: PipelineOptions, *, frames: int, train: bool,
                     has: Union[None, TemporalHaSConfig, dict] = None) -> Pipeline:
    """A DALI pipeline (not built yet) with outputs (features float32 [frames, D] "FC", row of the video in the
    index); `feature_loader` makes it a PyTorch iterable.

    train=True shuffles and applies `has` (a TemporalHaSConfig or a dict of its settings; None = no hiding; its
    fill in feature units, e.g. `mean_feature`); train=False reads in index order and never hides.
    """
    has = TemporalHaSConfig.given(has)
    if has is not None and len(has.fill) not in (1, index.dim):  # it failed at the first batch, in DALI's words
        raise ValueError(f"the temporal Hide-and-Seek fill has {len(has.fill)} values; the features of "
                         f"{index.path} have {index.dim}: give one value, or one per feature (mean_feature(index))")
    return _graph(index, options, frames, has if train else None, train,
                  **options.pipeline_kwargs(options.pipeline_seed))


def feature_loader(index: FeatureIndex, options: PipelineOptions, *, frames: int, train: bool,
                   has: Union[None, TemporalHaSConfig, dict] = None) -> SequenceLoader:
    """`feature_pipeline` as a PyTorch iterable of `SequenceBatch`es; a saved state holds the index's files and
    labels, frames and HaS, and a state of other ones is refused."""
    has = TemporalHaSConfig.given(has)
    base = os.path.dirname(index.path)
    videos = Dataset(Path(base), tuple((os.path.relpath(v.features, base), v.label) for v in index.videos))
    settings = {"train": train, "frames": frames, "has": has.to_dict() if train and has is not None else None,
                "files": samples_digest(videos)}
    return SequenceLoader(lambda o: feature_pipeline(index, o, frames=frames, train=train, has=has), options,
                          index.labels, settings)


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
    """The data set's mean feature vector [D] over all frames of all videos: the temporal HaS fill. Features
    that are not finite are refused (`check_finite_features`)."""
    total, count = 0.0, 0
    for video in index.videos:
        sums, frames = _finite_sums(video)
        total, count = total + sums, count + frames
    return total / count


def check_finite_features(index: FeatureIndex) -> None:
    """Refuse an index with a feature file holding NaN, infinity or float64 values beyond float32, naming it (in
    a test index they made the printed mAP silently wrong)."""
    for video in index.videos:
        _finite_sums(video)


def _finite_sums(video: Video) -> tuple[np.ndarray, int]:
    """The per-feature sums [D] over a video's frames, and its frame count, of finite features only."""
    features = np.load(video.features, mmap_mode="r")
    sums = features.sum(axis=0, dtype=np.float64)
    # NaN or infinite values (or float64 ones beyond float32, which the pipeline casts to) trained into NaN
    # weights, or stopped action-demo with a fill of NaNs that named no file.
    beyond_float32 = features.dtype == np.float64 and np.abs(features).max() > validate.FLOAT32_MAX
    if not np.isfinite(sums).all() or beyond_float32:
        raise ValueError(f"{video.features} holds NaN, infinite or (float64) values beyond float32's range; "
                         "clean the features, or leave the video out of the index")
    return sums, len(features)


def _video(entry, num_classes: int, base: str, where: str) -> tuple[Video, int, np.dtype]:
    """One index entry, checked, and the D and dtype of its feature file."""
    if not isinstance(entry, dict) or set(entry) != {"features", "label", "frames", "segments"}:
        raise ValueError(f"{where} must have exactly the keys 'features', 'label', 'frames', 'segments'")
    label, frames, segments = entry["label"], entry["frames"], entry["segments"]
    if not isinstance(entry["features"], str) or not entry["features"]:
        raise ValueError(f"{where}: features={entry['features']!r} must be the path of a .npy file")
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_classes:
        raise ValueError(f"{where}: label={label!r} is not a class index in [0, {num_classes})")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ValueError(f"{where}: frames={frames!r} must be a whole number >= 1")
    try:
        if not isinstance(segments, list) or not all(isinstance(s, list) for s in segments):
            raise ValueError
        pairs = [validate.numbers("segment", s, count=2) for s in segments]
    except ValueError:
        raise ValueError(f"{where}: segments={segments!r} must be a list of [start, end] pairs of numbers") from None
    if any(not 0 <= s < e <= frames for s, e in pairs):
        raise ValueError(f"{where}: segments {segments} must satisfy 0 <= start < end <= frames={frames}")
    features = os.path.join(base, entry["features"])
    steps, dim, dtype = _feature_shape(features, where)
    if steps != frames:
        raise ValueError(f"{where}: frames={frames}, but {features} holds {steps} feature steps; frames is the "
                         "number of rows of the feature array (the segments are in those rows)")
    return Video(features, label, frames, tuple(pairs)), dim, dtype


# What DALI's numpy decoder reads (and the model takes once cast to float32).
FEATURE_DTYPES = tuple(np.dtype(t) for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                             np.uint32, np.uint64, np.float16, np.float32, np.float64))


def _feature_shape(path: str, where: str) -> tuple[int, int, np.dtype]:
    """(T, D, dtype) of a feature file, from its header; a file DALI's numpy decoder would refuse or misread
    raises a ValueError naming it and saying how to write it instead."""
    check_name(path, where)
    if os.path.exists(path) and not os.path.isfile(path):  # a FIFO hung the index's loading
        raise ValueError(f"{where}: {path} is not a regular file; give the path of a .npy file")
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version != (1, 0):  # 2.0 passed here and failed in DALI: "Only major version 1 is supported"
                raise ValueError(f".npy format version {version}; DALI's decoder reads version 1.0 only")
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
            data_bytes = os.fstat(f.fileno()).st_size - f.tell()
    except OSError as error:
        raise ValueError(f"{where}: {path}: {error.strerror or error}") from None
    except ValueError as error:  # first line only: numpy's text for a long header goes on to suggest allow_pickle
        raise ValueError(f"{where}: {path} is not a .npy file numpy writes with np.save "
                         f"({str(error).splitlines()[0]})") from None
    if dtype.newbyteorder("=") not in FEATURE_DTYPES or dtype.byteorder == ">":
        raise ValueError(f"{where}: {path} holds {dtype.str} values; save the features as little-endian bool, "
                         "integers or floats, e.g. np.save(path, features.astype(np.float32))")
    if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"{where}: {path} holds an array of shape {shape}; expected [T, D] with T >= 1 steps of "
                         "D >= 1 features")
    if fortran_order:
        raise ValueError(f"{where}: {path} is stored in Fortran order (np.save of a transposed array), which "
                         "DALI's decoder cannot read; save np.ascontiguousarray(features) instead")
    expected = shape[0] * shape[1] * dtype.itemsize
    if data_bytes != expected:  # cut short, or bytes after the array: DALI's decoder failed mid-epoch, unnamed
        raise ValueError(f"{where}: {path} holds {data_bytes} bytes of data where its header ({shape}, "
                         f"{dtype.str}) says {expected}: the file is cut short or has bytes after the array; "
                         "write it again with np.save")
    return shape[0], shape[1], dtype

