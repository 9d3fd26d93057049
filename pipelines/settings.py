"""The input pipelines' settings and their defaults, in one place, each validated once.

* `PipelineOptions`: where and how any DALI pipeline runs (batch size, device, sharding, threads, seed); every
  pipeline of this package takes one, image and sequence pipelines alike.
* `ImageOptions`: what the image pipelines read and hand to the network (data, crop, dtype, layout,
  normalization, GPU decoder settings).
* `TrainAugment`: the training-only augmentation (random-resized-crop, flip, Hide-and-Seek, shuffling).

Every check raises a `ValueError` naming the bad value, so a typo in a config file is caught before DALI builds
anything.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Optional, Union

import torch
from nvidia.dali import types
from nvidia.dali.pipeline import OperatorConcurrency

from dali_has import HaSConfig, validate
from dali_has.operator import IMPLEMENTATIONS as HAS_IMPLEMENTATIONS
from dali_has.resize_mirror_normalize import IMPLEMENTATIONS as RESIZE_IMPLEMENTATIONS
from pipelines.files import checked_path, data_kind

# The usual ImageNet statistics on the 0..255 scale of decoded pixels.
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

DEVICES = ("cpu", "gpu")
LAYOUTS = ("NCHW", "NHWC")
DTYPES = {torch.float32: types.FLOAT, torch.float16: types.FLOAT16}
DTYPE_NAMES = {"float32": torch.float32, "float16": torch.float16}
CROP = 224
HW_DECODER_LOAD = 0.65  # DALI's default share of JPEGs for the A100/H100/H200 hardware decoder
# torchvision's RandomResizedCrop defaults: 8 %..100 % of the image area, width/height in 3/4..4/3.
RANDOM_AREA = (0.08, 1.0)
RANDOM_ASPECT_RATIO = (3 / 4, 4 / 3)
FLIP_PROBABILITY = 0.5
SHUFFLE_BUFFER = 1024  # samples in the reader's shuffle buffer (DALI's default `initial_fill`)
# DALI allocates every slot up front whatever the data set's size (10**6 slots took 1.35 GB for 18 images,
# 10**8 aborted in std::bad_alloc, 2**31 segfaulted on the first batch); each slot then holds one file.
MAX_SHUFFLE_BUFFER = 1 << 20
PASS_BATCH_SIZE = 64  # images per batch of a single pass over a data set: scan, mean, evaluation
CROP_RATIO = 0.875  # evaluation: resize the shorter side to crop / 0.875 (256 for 224), then centre-crop
# Upper bounds that turn absurd values into errors naming them instead of DALI failures. One float32 sample of
# crop 8192 is 805 MB, far beyond any classifier's input, and DALI fails on a crop of 100000 with only "pipeline
# no longer valid". Published large-batch training uses a few thousand images per device; DALI allocates
# per-sample state for the whole batch when it builds a pipeline, so batch_size=10**9 dies in std::bad_alloc.
MAX_CROP = 8192
MAX_BATCH_SIZE = 65535  # and the plugin's GPU operators launch a row of blocks per sample, at most 65535 rows
# DALI's CPU threads per pipeline: far more than any machine's cores (100,000 aborted DALI, exit 134, no message).
MAX_THREADS = 1024
# PipelineOptions.operator_concurrency -> DALI's policy.
OPERATOR_CONCURRENCY = {"backend": OperatorConcurrency.BACKEND, "full": OperatorConcurrency.FULL}


def checked_num_threads(value) -> int:
    """A DALI thread count, 1 to MAX_THREADS (ValueError naming num_threads otherwise)."""
    return validate.whole_number("num_threads", value, minimum=1, maximum=MAX_THREADS)


@dataclass(frozen=True)
class PipelineOptions:
    """Where and how a pipeline runs.

    batch_size: samples per batch.
    device: "gpu" decodes with nvJPEG / the hardware JPEG decoder (`mixed`) and augments on the GPU; "cpu" runs
        everything on the CPU.
    device_id: CUDA device for device="gpu"; None = torch's current device (torchrun scripts set it per rank).
    shard_id, num_shards: this process's part of the data set.
    num_threads: DALI CPU worker threads; None = usable CPU cores / processes on this node.
    seed: base seed; the pipeline's seed is seed + shard_id so ranks differ. None = a random seed.
    checkpointing: let DALI trace its readers' and random operators' state, so a loader's `state_dict()` can
        restart it exactly where it was (`pipelines.loader`). Off by default: every operator of the pipeline must
        support it.
    checkpoint: a DALI checkpoint (`Pipeline.checkpoint()`, bytes) the pipeline starts from; set by the loaders'
        `load_state_dict`, implies checkpointing.
    operator_concurrency: how much of the pipeline DALI may run at once. "backend" (DALI's default): one CPU,
        one mixed and one GPU operator at a time, whatever batch each works on, so a batch's GPU operators cost
        the sum of their host work (argument setup, kernel launches). "full": GPU and mixed operators of
        successive batches may run at once (an operator still waits for its own previous batch, so the batches
        are the same). Only GPU pipelines differ: DALI runs CPU operators one at a time either way. Whether
        "full" is faster on a GPU has not been measured yet (`train.bench.pipeline_stages`, stage `concurrent`).
    """

    batch_size: int
    device: str = "cpu"
    device_id: Optional[int] = None
    shard_id: int = 0
    num_shards: int = 1
    num_threads: Optional[int] = None
    seed: Optional[int] = None
    checkpointing: bool = False
    checkpoint: Optional[bytes] = None
    operator_concurrency: str = "backend"

    def __post_init__(self):
        _set(self, "batch_size", validate.whole_number("batch_size", self.batch_size, minimum=1,
                                                       maximum=MAX_BATCH_SIZE))
        validate.one_of("device", self.device, DEVICES)
        if self.device_id is not None:
            _set(self, "device_id", validate.whole_number("device_id", self.device_id))
        # DALI keeps shard counts as int32: 2**32 wrapped to 0 (SIGFPE), 2**32 + 1 to 1 (every rank read all)
        _set(self, "num_shards", validate.whole_number("num_shards", self.num_shards, minimum=1, maximum=2**31 - 1))
        _set(self, "shard_id", validate.whole_number("shard_id", self.shard_id, maximum=self.num_shards - 1))
        if self.num_threads is not None:
            _set(self, "num_threads", checked_num_threads(self.num_threads))
        if self.seed is not None:
            _set(self, "seed", validate.whole_number("seed", self.seed, maximum=validate.MAX_SEED))
        validate.boolean("checkpointing", self.checkpointing)
        if self.checkpoint is not None:
            if not isinstance(self.checkpoint, bytes):
                raise ValueError(f"checkpoint of type {type(self.checkpoint).__name__}; expected the bytes of a "
                                 "DALI checkpoint (Pipeline.checkpoint())")
            _set(self, "checkpointing", True)
        validate.one_of("operator_concurrency", self.operator_concurrency, tuple(OPERATOR_CONCURRENCY))

    @property
    def pipeline_seed(self) -> Optional[int]:
        """seed + shard_id, so shards draw different crops and masks; None lets DALI pick."""
        return None if self.seed is None else self.seed + self.shard_id

    def pipeline_kwargs(self, seed: Optional[int] = None) -> dict:
        """Arguments of `nvidia.dali.Pipeline` (and `@pipeline_def` functions) for these options."""
        return dict(batch_size=self.batch_size, num_threads=self.num_threads or default_num_threads(),
                    device_id=dali_device_id(self.device, self.device_id), seed=seed,
                    enable_checkpointing=self.checkpointing, checkpoint=self.checkpoint,
                    concurrency=OPERATOR_CONCURRENCY[self.operator_concurrency])


@dataclass(frozen=True)
class ImageOptions:
    """What the image pipelines read and output.

    data: an ImageNet-style folder `DIR/<class>/<image>` (labels = sorted class folder index), a DALI file list
        (`relative/path label` per line, paths relative to the list's folder) or WebDataset shards with their
        indexes (a folder of `*.tar`, one `.tar`, or a list of `.tar` paths; `pipelines.webdataset`).
        `kind` says which (`pipelines.files.data_kind`).
    crop: side of the square network input in pixels.
    dtype, layout: of the image tensors handed to PyTorch (torch.float32 / torch.float16, or their names from a
        config file; "NCHW" / "NHWC").
    mean, std: per-channel (R, G, B) normalization on the 0..255 pixel scale; a scalar applies to all three.
    hw_decoder_load: share of JPEG work sent to the hardware decoder (A100/H100/H200), in [0, 1].
    preallocate_hint: (height, width) of the largest JPEGs, to preallocate hardware-decoder memory; None =
        allocate as needed.
    skip_bad_files: what to do with files DALI's decoder must not see (`pipelines.file_check`: not an image,
        a header it cannot parse, not a regular file, ...): False = raise `UnreadableImageError` naming them,
        True = leave them out with a warning that says how many and where they are listed.
    """

    data: Union[str, tuple[str, ...]]
    crop: int = CROP
    dtype: torch.dtype = torch.float32
    layout: str = "NCHW"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    hw_decoder_load: float = HW_DECODER_LOAD
    preallocate_hint: Optional[tuple[int, int]] = None
    skip_bad_files: bool = False

    def __post_init__(self):
        _set(self, "data", _check_data(self.data))
        _set(self, "crop", validate.whole_number("crop", self.crop, minimum=1, maximum=MAX_CROP))
        _set(self, "dtype", check_dtype(self.dtype))
        validate.one_of("layout", self.layout, LAYOUTS)
        _set(self, "mean", rgb("mean", self.mean))
        _set(self, "std", rgb("std", self.std, positive=True))
        if 0 < max(self.mean) < 1.0:  # all zeros: no centring, a choice
            raise ValueError(f"mean={self.mean!r} looks like the 0..1 scale; mean and std are on the 0..255 pixel "
                             "scale (ImageNet mean: 123.7, 116.3, 103.5)")
        if max(self.std) < 1.0:
            raise ValueError(f"std={self.std!r} looks like the 0..1 scale; mean and std are on the 0..255 pixel "
                             "scale (ImageNet std: 58.4, 57.1, 57.4)")
        _set(self, "hw_decoder_load", validate.probability("hw_decoder_load", self.hw_decoder_load))
        if self.preallocate_hint is not None:
            validate.numbers("preallocate_hint", self.preallocate_hint, count=2, positive=True)
            # whole pixels: int() turned 1.5 into 1, and 0.5 into a "preallocate_hint=0" never given
            _set(self, "preallocate_hint", tuple(validate.positive_int("preallocate_hint", v)
                                                 for v in self.preallocate_hint))
        validate.boolean("skip_bad_files", self.skip_bad_files)

    @cached_property
    def kind(self) -> str:
        """FOLDER, FILE_LIST or WEBDATASET (`pipelines.files`)."""
        return data_kind(self.data)

    @property
    def dali_dtype(self):
        return DTYPES[self.dtype]


@dataclass(frozen=True)
class TrainAugment:
    """Training-only augmentation, applied in this order: random-resized-crop at decode time, horizontal flip,
    normalization, then Hide-and-Seek on the network input.

    has: Hide-and-Seek settings (a HaSConfig or a dict of its settings; `fill` in normalized units, see
        `pipelines.has_fill`); None = no hiding.
    has_impl: the Hide-and-Seek operator when it runs on its own: "auto" (fused plugin if loadable, else the
        composition), "fused" or "composed".
    resize_impl: the resize + flip + normalize (+ Hide-and-Seek) tail: "fused" (the plugin's one-pass
        operator, `dali_has.resize_mirror_normalize_hide`, with Hide-and-Seek folded in; on the GPU its CUDA
        kernel), "builtin" (fn.resize + fn.crop_mirror_normalize + the `has_impl` operator) or "auto" (fused for
        CPU pipelines when the plugin loads and has_impl is not "composed", else builtin; GPU pipelines use the
        built-ins unless "fused" is asked for: the kernel has not been measured against them on a GPU yet).
    random_area, random_aspect_ratio: (min, max) of the crop window's share of the image area and of its
        width / height.
    flip_probability: chance of a horizontal flip per sample (0 for data whose labels a mirror image changes).
    shuffle_buffer: samples in the reader's shuffle buffer (larger = better mixed, more memory).
    """

    has: Optional[HaSConfig] = None
    has_impl: str = "auto"
    resize_impl: str = "auto"
    random_area: tuple[float, float] = RANDOM_AREA
    random_aspect_ratio: tuple[float, float] = RANDOM_ASPECT_RATIO
    flip_probability: float = FLIP_PROBABILITY
    shuffle_buffer: int = SHUFFLE_BUFFER

    def __post_init__(self):
        _set(self, "has", HaSConfig.given(self.has))
        validate.one_of("has_impl", self.has_impl, HAS_IMPLEMENTATIONS)
        validate.one_of("resize_impl", self.resize_impl, RESIZE_IMPLEMENTATIONS)
        _set(self, "random_area", validate.number_range("random_area", self.random_area, high=1.0))
        _set(self, "random_aspect_ratio", validate.number_range("random_aspect_ratio", self.random_aspect_ratio))
        _set(self, "flip_probability", validate.probability("flip_probability", self.flip_probability))
        _set(self, "shuffle_buffer", validate.whole_number("shuffle_buffer", self.shuffle_buffer, minimum=1,
                                                           maximum=MAX_SHUFFLE_BUFFER))

    @classmethod
    def from_dict(cls, d: dict) -> TrainAugment:
        """Build from a mapping (e.g. a JSON config); unknown keys are errors."""
        return cls(**validate.known_fields("training augmentation", d, cls))

    def to_dict(self) -> dict:
        return {"has": None if self.has is None else self.has.to_dict(), "has_impl": self.has_impl,
                "resize_impl": self.resize_impl,
                "random_area": list(self.random_area), "random_aspect_ratio": list(self.random_aspect_ratio),
                "flip_probability": self.flip_probability, "shuffle_buffer": self.shuffle_buffer}


def as_train_augment(augment: Union[None, TrainAugment, dict]) -> TrainAugment:
    """None (the defaults, no Hide-and-Seek), a TrainAugment, or a dict of its settings (unknown keys are
    errors)."""
    if augment is None:
        return TrainAugment()
    if isinstance(augment, dict):
        return TrainAugment.from_dict(augment)
    if not isinstance(augment, TrainAugment):
        raise ValueError(f"augment={augment!r}; expected a pipelines.TrainAugment or a dict of its settings")
    return augment


def split_options(options: dict) -> tuple[dict, dict]:
    """Split keyword arguments into those of PipelineOptions and of ImageOptions; unknown names are errors."""
    run_names = {f.name for f in fields(PipelineOptions)}
    image_names = {f.name for f in fields(ImageOptions)}
    unknown = sorted(set(options) - run_names - image_names)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}; expected some of {sorted(run_names | image_names)}")
    return ({k: v for k, v in options.items() if k in run_names},
            {k: v for k, v in options.items() if k in image_names})


def default_device() -> str:
    """Where a command runs unless told: "gpu" when CUDA is visible, else "cpu"."""
    return "gpu" if torch.cuda.is_available() else "cpu"


def torch_device(device: str) -> torch.device:
    """The torch device of a `device` name ("cpu" or "gpu": the current CUDA device)."""
    return torch.device("cuda" if validate.one_of("device", device, DEVICES) == "gpu" else "cpu")


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, e.g. a container's or taskset's share)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_num_threads() -> int:
    """Usable CPU cores shared by the processes of this node (torchrun sets LOCAL_WORLD_SIZE)."""
    local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, usable_cores() // max(1, local_procs))


def dali_device_id(device: str, device_id: Optional[int] = None) -> Optional[int]:
    """The `device_id` of a DALI pipeline: None on the CPU (DALI runs without CUDA); on the GPU the given id, else
    torch's current device, which torchrun scripts set per rank (never a fixed GPU 0)."""
    validate.one_of("device", device, DEVICES)
    if device == "cpu":
        return None
    if device_id is not None:
        return device_id
    if not torch.cuda.is_available():
        raise ValueError("device='gpu' but no CUDA device is visible; use device='cpu'")
    return torch.cuda.current_device()


def rgb(name: str, values, *, positive: bool = False) -> tuple[float, float, float]:
    """Three finite numbers (R, G, B) on the 0..255 pixel scale; a scalar applies to all three."""
    try:
        return validate.numbers(name, (values,) * 3 if isinstance(values, (int, float)) else values, count=3,
                                positive=positive)
    except ValueError:
        need = "positive numbers" if positive else "numbers"
        raise ValueError(f"{name}={values!r}; expected 3 finite {need} (R, G, B) on the 0..255 pixel scale") \
            from None


def check_dtype(dtype) -> torch.dtype:
    """torch.float32 / torch.float16, or their names as a config file writes them."""
    dtype = DTYPE_NAMES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}; expected torch.float32 or torch.float16 ('float32' / 'float16')")
    return dtype


def _check_data(data) -> Union[str, tuple[str, ...]]:
    if isinstance(data, (list, tuple)) and data:  # WebDataset shards
        return tuple(_check_data(shard) for shard in data)
    if not isinstance(data, (str, os.PathLike)):
        raise ValueError(f"data={data!r}; expected a folder DIR/<class>/<image>, a file list path or WebDataset "
                         "shards (a folder of .tar files or a list of .tar paths)")
    path = checked_path(data).expanduser()
    if not path.exists():
        raise ValueError(f"data={str(data)!r} does not exist; expected a folder DIR/<class>/<image>, a file list "
                         "(`dali-has scan --data DIR --write-list FILE` writes one) or WebDataset shards "
                         "(`dali-has prepare --webdataset` writes them)")
    return str(path.resolve())


def _set(obj, name: str, value) -> None:
    object.__setattr__(obj, name, value)  # frozen dataclasses normalize their fields in __post_init__

