"""One training configuration: validated, with the paper-style defaults per architecture, saved with each run."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from dali_has import HaSConfig
from train.models import model_options

ARCHS = ("alexnet_gap", "resnet50")
OPTIMIZERS = ("sgd", "adamw")  # SGD with momentum; AdamW with betas (momentum, 0.999), decoupled weight decay
# step: lr x gamma at each milestone epoch, after a linear warm-up of warmup_epochs (changes once per epoch);
# onecycle: cosine rise from lr/25 to lr over the first 30 % of all steps, then cosine decay to lr/25e4
# (torch's OneCycleLR defaults, without its momentum cycling), updated every step.
LR_SCHEDULES = ("step", "onecycle")
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

# Paper-style SGD schedules (lr for batch 256, scaled linearly with the batch): ResNet-50 as in the standard
# ImageNet recipe (90 epochs, /10 at 30 and 60); AlexNet-GAP as trained from scratch in the HaS paper's code
# (55 epochs, /10 every 25). They are what `dali-has train` uses unless --optimizer / --lr-schedule say otherwise.
ARCH_DEFAULTS = {
    "resnet50": dict(epochs=90, lr=0.1, weight_decay=1e-4, lr_milestones=(30, 60)),
    "alexnet_gap": dict(epochs=55, lr=0.01, weight_decay=5e-4, lr_milestones=(25, 50)),
}


@dataclass
class TrainConfig:
    data: str
    out: str
    arch: str = "alexnet_gap"
    epochs: int | None = None
    batch_size: int = 256
    lr: float | None = None  # for batch 256; scaled by batch_size / 256 (for every optimizer)
    momentum: float = 0.9  # SGD's momentum; AdamW's beta1
    weight_decay: float | None = None
    optimizer: str = "sgd"
    lr_schedule: str = "step"
    lr_milestones: tuple[int, ...] | None = None  # step schedule only
    lr_gamma: float = 0.1  # step schedule only
    warmup_epochs: int = 0  # step schedule only (one-cycle has its own warm-up)
    crop: int = 224
    random_area: tuple[float, float] = (0.08, 1.0)  # random-resized-crop area range
    flip_probability: float = 0.5
    device: str = "cpu"
    dtype: str = "float32"  # loader output; GPU training runs under bf16 autocast regardless
    channels_last: bool = True
    amp: bool = True  # bf16 autocast on the GPU; ignored on the CPU
    has: bool = True
    has_patch_sizes: tuple[int, ...] = (0, 16, 32, 44, 56)
    has_p_hide: float = 0.5
    has_fill: tuple[float, ...] = (0.0,)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    seed: int = 0
    num_threads: int | None = None
    model: dict = field(default_factory=dict)  # architecture options, passed to build_model
    # Feature-map HaS (paper Table 5) after a named layer, e.g. "body.2" (AlexNet-GAP's conv1 ReLU); None = off.
    feature_has_after: str | None = None
    feature_has_patch_sizes: tuple[int, ...] = (5, 11)
    feature_has_p_hide: float = 0.5
    max_steps_per_epoch: int | None = None  # for smoke runs and benchmarks

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"arch={self.arch!r}; expected one of {ARCHS}")
        for key, value in ARCH_DEFAULTS[self.arch].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        self.lr_milestones = tuple(int(m) for m in self.lr_milestones)
        self.has_patch_sizes = tuple(int(s) for s in self.has_patch_sizes)
        self.has_fill = tuple(float(f) for f in self.has_fill)
        self.random_area = tuple(float(a) for a in self.random_area)
        self.mean, self.std = tuple(map(float, self.mean)), tuple(map(float, self.std))
        _positive("epochs", self.epochs)
        _positive("batch_size", self.batch_size)
        _positive("crop", self.crop)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r}; expected one of {OPTIMIZERS}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule={self.lr_schedule!r}; expected one of {LR_SCHEDULES}")
        if self.lr_schedule == "onecycle" and self.warmup_epochs:
            raise ValueError(f"warmup_epochs={self.warmup_epochs} with lr_schedule='onecycle', which warms up "
                             "by itself; leave warmup_epochs at 0")
        if self.lr <= 0:
            raise ValueError(f"lr={self.lr} must be > 0")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ValueError(f"weight_decay={self.weight_decay} must be >= 0 and momentum={self.momentum} in [0, 1)")
        if self.device not in ("cpu", "gpu"):
            raise ValueError(f"device={self.device!r}; expected 'cpu' or 'gpu'")
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"dtype={self.dtype!r}; expected 'float32' or 'float16'")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean={self.mean} and std={self.std} need 3 values each, std > 0")
        if self.warmup_epochs < 0 or self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError("warmup_epochs must be >= 0 and max_steps_per_epoch >= 1")
        self.has_config()  # validates the Hide-and-Seek settings
        self.feature_has_patch_sizes = tuple(int(s) for s in self.feature_has_patch_sizes)
        HaSConfig(self.feature_has_patch_sizes, self.feature_has_p_hide)
        unknown = sorted(set(self.model) - set(model_options(self.arch)))
        if unknown:  # option values are checked when the model is built
            raise ValueError(f"unknown option(s) {unknown} for arch {self.arch!r}; "
                             f"expected some of {sorted(model_options(self.arch))}")

    def has_config(self) -> HaSConfig | None:
        if not self.has:
            return None
        return HaSConfig(self.has_patch_sizes, self.has_p_hide, self.has_fill)

    @property
    def scaled_lr(self) -> float:
        return self.lr * self.batch_size / 256

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}")
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def _positive(name: str, value) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a whole number >= 1")
