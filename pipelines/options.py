"""Settings shared by the training and validation pipelines, validated once.

Every check raises a `ValueError` that names the bad value, so a typo in a config file is caught before DALI
builds anything.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Optional, Sequence

import torch
from nvidia.dali import types

# The usual ImageNet statistics on the 0..255 scale of decoded pixels.
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

DEVICES = ("cpu", "gpu")
LAYOUTS = ("NCHW", "NHWC")
DTYPES = {torch.float32: types.FLOAT, torch.float16: types.FLOAT16}
_DTYPE_NAMES = {"float32": torch.float32, "float": torch.float32, "float16": torch.float16, "half": torch.float16}


@dataclass(frozen=True)
class PipelineOptions:
    """What every pipeline needs: where the data is, batch geometry, output format, sharding, threads.

    data: an ImageNet-style folder `DIR/<class>/<image>` (labels = sorted class folder index) or a DALI
        file list (`relative/path label` per line, paths relative to the list's folder).
    crop: side of the square network input in pixels.
    device: "gpu" decodes with nvJPEG / the hardware JPEG decoder (`mixed`) and augments on the GPU;
        "cpu" runs everything on the CPU (libjpeg-turbo).
    device_id: CUDA device for device="gpu"; None = torch's current device (torchrun scripts set it per rank).
    dtype, layout: of the image tensors handed to PyTorch (torch.float32 / torch.float16, or their names
        "float32" / "float16" from a config file; "NCHW" / "NHWC").
    mean, std: per-channel (R, G, B) normalization on the 0..255 pixel scale; a scalar applies to all three.
    shard_id, num_shards: this process's part of the data set.
    num_threads: DALI CPU worker threads; None = usable CPU cores / processes on this node.
    seed: base seed; the pipeline's seed is seed + shard_id so ranks differ. None = a random seed.
    hw_decoder_load: share of JPEG work sent to the hardware decoder (A100/H100/H200), in [0, 1].
    preallocate_hint: (height, width) of the largest JPEGs, to preallocate hardware-decoder memory
        (ImageNet: (6430, 5980)); None = allocate as needed.
    """

    data: str
    batch_size: int
    crop: int = 224
    device: str = "cpu"
    device_id: Optional[int] = None
    dtype: torch.dtype = torch.float32
    layout: str = "NCHW"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    shard_id: int = 0
    num_shards: int = 1
    num_threads: Optional[int] = None
    seed: Optional[int] = None
    hw_decoder_load: float = 0.65
    preallocate_hint: Optional[tuple[int, int]] = None

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        set_("data", _check_data(self.data))
        set_("batch_size", positive_int("batch_size", self.batch_size))
        set_("crop", positive_int("crop", self.crop))
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r}; expected one of {DEVICES}")
        if self.device_id is not None:
            _non_negative_int("device_id", self.device_id)
        set_("dtype", _check_dtype(self.dtype))
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout={self.layout!r}; expected one of {LAYOUTS}")
        set_("mean", check_channels("mean", self.mean, positive=False))
        set_("std", check_channels("std", self.std, positive=True))
        if max(self.std) < 1.0:
            raise ValueError(f"std={self.std!r} looks like the 0..1 scale; mean and std are on the 0..255 "
                             "pixel scale (ImageNet std: 58.4, 57.1, 57.4)")
        set_("num_shards", positive_int("num_shards", self.num_shards))
        set_("shard_id", _non_negative_int("shard_id", self.shard_id))
        if self.shard_id >= self.num_shards:
            raise ValueError(f"shard_id={self.shard_id} must be < num_shards={self.num_shards}")
        if self.num_threads is not None:
            set_("num_threads", positive_int("num_threads", self.num_threads))
        if self.seed is not None:
            set_("seed", _non_negative_int("seed", self.seed))
        if (isinstance(self.hw_decoder_load, bool) or not isinstance(self.hw_decoder_load, Real)
                or not 0.0 <= self.hw_decoder_load <= 1.0):
            raise ValueError(f"hw_decoder_load={self.hw_decoder_load!r} must be a number in [0, 1]")
        if self.preallocate_hint is not None:
            hint = tuple(self.preallocate_hint)
            if len(hint) != 2:
                raise ValueError(f"preallocate_hint={self.preallocate_hint!r}; expected (height, width)")
            set_("preallocate_hint", tuple(positive_int("preallocate_hint", v) for v in hint))

    @property
    def is_file_list(self) -> bool:
        return os.path.isfile(self.data)

    @property
    def dali_dtype(self):
        return DTYPES[self.dtype]

    @property
    def pipeline_seed(self) -> Optional[int]:
        """seed + shard_id, so shards draw different crops and masks; None lets DALI pick."""
        return None if self.seed is None else self.seed + self.shard_id

    def pipeline_kwargs(self, seed: Optional[int]) -> dict:
        """Arguments of `nvidia.dali.Pipeline` for these options."""
        return dict(
            batch_size=self.batch_size,
            num_threads=self.num_threads or default_num_threads(),
            device_id=self._resolved_device_id(),
            seed=seed,
        )

    def _resolved_device_id(self) -> Optional[int]:
        return dali_device_id(self.device, self.device_id)


def dali_device_id(device: str, device_id: Optional[int] = None) -> Optional[int]:
    """The `device_id` of a DALI pipeline: None on the CPU (DALI runs without CUDA); on the GPU the given id, else
    torch's current device, which torchrun scripts set per rank (never a fixed GPU 0)."""
    if device == "cpu":
        return None
    if device_id is not None:
        return device_id
    if not torch.cuda.is_available():
        raise ValueError("device='gpu' but no CUDA device is visible; use device='cpu'")
    return torch.cuda.current_device()


def default_num_threads() -> int:
    """Usable CPU cores shared by the processes of this node (torchrun sets LOCAL_WORLD_SIZE)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, cores // max(1, local_procs))


def check_range(name: str, value, *, upper: Optional[float] = None) -> tuple[float, float]:
    """A (low, high) pair with 0 < low <= high (<= upper)."""
    pair = tuple(value) if isinstance(value, Sequence) else None
    if (pair is None or len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, Real) for v in pair)
            or not 0 < pair[0] <= pair[1] or (upper is not None and pair[1] > upper)):
        bound = f" <= {upper}" if upper is not None else ""
        raise ValueError(f"{name}={value!r}; expected (low, high) with 0 < low <= high{bound}")
    return float(pair[0]), float(pair[1])


def _check_data(data) -> str:
    if not isinstance(data, (str, os.PathLike)):
        raise ValueError(f"data={data!r}; expected a folder DIR/<class>/<image> or a file list path")
    path = Path(data).expanduser()
    if not path.exists():
        raise ValueError(f"data={str(data)!r} does not exist; expected a folder DIR/<class>/<image> "
                         "or a file list (`dali-has scan DIR --write-list FILE` writes one)")
    return str(path.resolve())


def _check_dtype(dtype) -> torch.dtype:
    dtype = _DTYPE_NAMES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}; expected torch.float32 or torch.float16")
    return dtype


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name}={value!r} must be a whole number >= 1")
    return int(value)


def _non_negative_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise ValueError(f"{name}={value!r} must be a whole number >= 0")
    return int(value)


def check_channels(name: str, values, *, positive: bool) -> tuple[float, ...]:
    vals = (values,) * 3 if isinstance(values, Real) else tuple(values)
    ok = len(vals) == 3 and all(not isinstance(v, bool) and isinstance(v, Real) and v == v for v in vals)
    if not ok or (positive and min(vals) <= 0):
        need = "positive numbers" if positive else "numbers"
        raise ValueError(f"{name}={values!r}; expected 3 {need} (R, G, B) on the 0..255 pixel scale")
    return tuple(float(v) for v in vals)
