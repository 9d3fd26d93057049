"""One training configuration: validated, with the paper-style defaults per architecture, saved with each run.

The input settings are the pipelines' own types, nested rather than copied: `augment` is a
`pipelines.TrainAugment` (Hide-and-Seek, random-resized-crop, flip, shuffling), and the normalization defaults
come from `pipelines.settings`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from dali_has import FeatureHideAndSeek, HaSConfig, insert_after, validate
from dali_has.spec import PAPER_P_HIDE
from pipelines.files import checked_path
from pipelines.own_files import written_whole
from pipelines.settings import (
    CROP,
    DEVICES,
    DTYPE_NAMES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_BATCH_SIZE,
    MAX_CROP,
    TrainAugment,
    checked_num_threads,
    rgb,
)
from train.models import ARCHS, build_model, model_options
from train.wsol.box_formats import BOX_SPLITS, HELD_OUT_SPLIT

OPTIMIZERS = ("sgd", "adamw")  # SGD with momentum; AdamW with betas (momentum, 0.999), decoupled weight decay
# step: lr x gamma at each milestone epoch, after a linear warm-up of warmup_epochs (changes once per epoch);
# onecycle: cosine rise from lr/25 to lr over the first 30 % of all steps, then cosine decay to lr/25e4
# (torch's OneCycleLR defaults, without its momentum cycling), updated every step.
LR_SCHEDULES = ("step", "onecycle")
# Epochs of any training here, bounded: 10**30 failed in a traceback (a range that long has no len()).
MAX_EPOCHS = 1_000_000
# Data that does not name its classes (a file list, shards without their manifest) has as many as its largest
# label + 1: one label of 5,000,000 built a classifier that took 24 GB before its first step. Beyond this many
# classes (ImageNet-21k has 21,841) such data must hold more samples than classes: Google Landmarks v2 (203,094
# classes) and face sets of 360,000 identities do, a stray label does not.
SPARSE_CLASSES = 100_000

# Paper-style SGD schedules (lr for batch 256, scaled linearly with the batch): ResNet-50 as in the standard
# ImageNet recipe (90 epochs, /10 at 30 and 60); AlexNet-GAP as trained from scratch in the HaS paper's code
# (55 epochs, /10 every 25). They are what `dali-has train` uses unless --optimizer / --lr-schedule say otherwise.
MOMENTUM = 0.9
ARCH_DEFAULTS = {
    "resnet50": dict(epochs=90, lr=0.1, weight_decay=1e-4, lr_milestones=(30, 60)),
    "alexnet_gap": dict(epochs=55, lr=0.01, weight_decay=5e-4, lr_milestones=(25, 50)),
}


@dataclass(frozen=True)
class FeatureHaS:
    """Feature-map Hide-and-Seek (paper Table 5) right after the layer named `after` (a name from the model's
    `named_modules()`, e.g. "body.1" = AlexNet-GAP's conv1 ReLU, "body.2" with batch_norm); cells in feature-map
    pixels."""

    after: str
    patch_sizes: tuple[int, ...] = (5, 11)  # the paper's sizes on AlexNet's 55x55 conv1 map
    p_hide: float = PAPER_P_HIDE

    def __post_init__(self):
        if not isinstance(self.after, str) or not self.after:
            raise ValueError(f"feature_has after={self.after!r}; expected a layer name such as 'body.1'")
        has = HaSConfig(self.patch_sizes, self.p_hide)
        object.__setattr__(self, "patch_sizes", has.patch_sizes)
        object.__setattr__(self, "p_hide", has.p_hide)


VAL_METRICS = ("top1", "top5", "gt_known_loc", "top1_loc", "maxboxacc_v2")  # all: higher is better
LOCALIZATION_METRICS = VAL_METRICS[2:]


@dataclass(frozen=True)
class Validation:
    """Evaluation on held-out data while training, every `every` epochs and after the last one.

    data: held-out folder DIR/<class>/<image> or file list (stored as an absolute path).
    boxes: true boxes (ILSVRC XML, CUB-200-2011 folder, synthetic boxes.json) add GT-known Loc, Top-1 Loc and
        MaxBoxAccV2 to top-1 / top-5; None = classification only.
    metric: the one that picks best.pt; default gt_known_loc with boxes, else top1.
    resize: shorter side before the centre crop (None = crop / 0.875); split: the CUB / synthetic split of data.
    """

    data: str
    boxes: str | None = None
    every: int = 1
    metric: str | None = None
    resize: int | None = None
    split: str = HELD_OUT_SPLIT

    def __post_init__(self):
        for name in ("data", "boxes"):
            path = getattr(self, name)
            if path is not None:
                if not isinstance(path, (str, os.PathLike)):
                    raise ValueError(f"validation {name}={path!r}; expected a path")
                if not checked_path(path, f"validation {name}").exists():
                    raise ValueError(f"validation {name}={path!r} does not exist")
                object.__setattr__(self, name, str(Path(path).resolve()))
        object.__setattr__(self, "every", validate.positive_int("val every", self.every))
        metric = self.metric or ("gt_known_loc" if self.boxes else "top1")
        validate.one_of("val metric", metric, VAL_METRICS)
        if metric in LOCALIZATION_METRICS and self.boxes is None:
            raise ValueError(f"val metric={metric!r} needs true boxes (--val-boxes)")
        object.__setattr__(self, "metric", metric)
        if self.resize is not None:
            object.__setattr__(self, "resize", validate.positive_int("val resize", self.resize))
        validate.one_of("val split", self.split, BOX_SPLITS)


# Learning rates (TrainConfig.lr, ARCH_DEFAULTS) are given per this many images and scaled linearly to the batch.
LR_REFERENCE_BATCH = 256


def scaled_lr(lr: float, batch_size: int) -> float:
    """The learning rate for `batch_size` images of one given per LR_REFERENCE_BATCH (the linear scaling rule)."""
    return lr * batch_size / LR_REFERENCE_BATCH


@dataclass
class TrainConfig:
    data: str
    out: str
    arch: str = "alexnet_gap"
    epochs: int | None = None
    batch_size: int = 256
    lr: float | None = None  # per LR_REFERENCE_BATCH images; scaled by batch_size / it (for every optimizer)
    momentum: float = MOMENTUM  # SGD's momentum; AdamW's beta1
    weight_decay: float | None = None
    optimizer: str = "sgd"
    lr_schedule: str = "step"
    lr_milestones: tuple[int, ...] | None = None  # step schedule only
    lr_gamma: float = 0.1  # step schedule only
    warmup_epochs: int = 0  # step schedule only (one-cycle has its own warm-up)
    crop: int = CROP
    # Hide-and-Seek with the paper's settings is on unless `augment.has` is None.
    augment: TrainAugment = field(default_factory=lambda: TrainAugment(has=HaSConfig()))
    device: str = "cpu"
    dtype: str = "float32"  # loader output; GPU training runs under bf16 autocast regardless
    channels_last: bool = True
    amp: bool = True  # bf16 autocast on the GPU; ignored on the CPU
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    seed: int = 0
    num_threads: int | None = None
    model: dict = field(default_factory=dict)  # architecture options, passed to build_model
    feature_has: FeatureHaS | None = None
    val: Validation | None = None  # evaluation while training, and best.pt
    compile: bool = False  # torch.compile the model (worth it on a GPU; see `dali-has bench --compile`)
    tensorboard: bool = False  # also log every epoch's numbers to RUN/tensorboard (needs the tensorboard package)
    max_steps_per_epoch: int | None = None  # for smoke runs and benchmarks
    skip_bad_files: bool = False  # leave out files the loader's listing check refuses, instead of stopping

    def __post_init__(self):
        for name in ("data", "out"):
            value = getattr(self, name)
            if not isinstance(value, (str, os.PathLike)):
                raise ValueError(f"{name}={value!r}; expected a path")
            checked_path(value, name)
            setattr(self, name, os.fspath(value))
        validate.one_of("arch", self.arch, tuple(ARCHS))
        for key, value in ARCH_DEFAULTS[self.arch].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        self.epochs = validate.whole_number("epochs", self.epochs, minimum=1, maximum=MAX_EPOCHS)
        self.batch_size = validate.whole_number("batch_size", self.batch_size, minimum=1, maximum=MAX_BATCH_SIZE)
        self.crop = validate.whole_number("crop", self.crop, minimum=1, maximum=MAX_CROP)
        self.lr = validate.number("lr", self.lr, low=0.0, low_open=True)
        self.momentum = validate.number("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        self.weight_decay = validate.number("weight_decay", self.weight_decay, low=0.0)
        if not isinstance(self.lr_milestones, (list, tuple)):
            raise ValueError(f"lr_milestones={self.lr_milestones!r}; expected a list of epochs")
        self.lr_milestones = tuple(validate.whole_number("lr_milestones", m) for m in self.lr_milestones)
        self.lr_gamma = validate.number("lr_gamma", self.lr_gamma, low=0.0, low_open=True)
        self.warmup_epochs = validate.whole_number("warmup_epochs", self.warmup_epochs)
        validate.one_of("optimizer", self.optimizer, OPTIMIZERS)
        validate.one_of("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if self.lr_schedule == "onecycle" and self.warmup_epochs:
            raise ValueError(f"warmup_epochs={self.warmup_epochs} with lr_schedule='onecycle', which warms up "
                             "by itself; leave warmup_epochs at 0")
        if isinstance(self.augment, dict):
            self.augment = TrainAugment.from_dict(self.augment)
        elif not isinstance(self.augment, TrainAugment):
            raise ValueError(f"augment={self.augment!r}; expected a pipelines.TrainAugment or a dict of its settings")
        validate.one_of("device", self.device, DEVICES)
        validate.one_of("dtype", self.dtype, tuple(DTYPE_NAMES))
        validate.boolean("channels_last", self.channels_last)
        validate.boolean("amp", self.amp)
        self.mean, self.std = rgb("mean", self.mean), rgb("std", self.std, positive=True)
        self.seed = validate.whole_number("seed", self.seed, maximum=validate.MAX_SEED)
        if self.num_threads is not None:
            self.num_threads = checked_num_threads(self.num_threads)
        if isinstance(self.feature_has, dict):
            if "after" not in self.feature_has:
                raise ValueError(f"feature_has={self.feature_has!r} needs 'after', the layer to hide features after")
            self.feature_has = FeatureHaS(**validate.known_fields("feature_has", self.feature_has, FeatureHaS))
        elif self.feature_has is not None and not isinstance(self.feature_has, FeatureHaS):
            raise ValueError(f"feature_has={self.feature_has!r}; expected None or a mapping of its settings")
        if isinstance(self.val, dict):
            if "data" not in self.val:
                raise ValueError(f"val={self.val!r} needs 'data', the held-out folder or file list")
            self.val = Validation(**validate.known_fields("validation", self.val, Validation))
        elif self.val is not None and not isinstance(self.val, Validation):
            raise ValueError(f"val={self.val!r}; expected None or a mapping of validation settings")
        validate.boolean("compile", self.compile)
        validate.boolean("tensorboard", self.tensorboard)
        if self.max_steps_per_epoch is not None:
            self.max_steps_per_epoch = validate.positive_int("max_steps_per_epoch", self.max_steps_per_epoch)
        validate.boolean("skip_bad_files", self.skip_bad_files)
        if not isinstance(self.model, dict):
            raise ValueError(f"model={self.model!r}; expected a mapping of architecture options")
        unknown = sorted(set(self.model) - set(model_options(self.arch)))
        if unknown:  # option values are checked when the model is built
            raise ValueError(f"unknown option(s) {unknown} in model for arch {self.arch!r}; "
                             f"expected some of {sorted(model_options(self.arch))}")

    def build_model(self, num_classes: int):
        """The configured architecture, randomly initialized, with feature-map Hide-and-Seek inserted if asked."""
        model = build_model(self.arch, num_classes, **self.model)
        if self.feature_has is not None:
            insert_after(model, self.feature_has.after,
                         FeatureHideAndSeek(self.feature_has.patch_sizes, self.feature_has.p_hide, fill="mean"))
        return model

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build from a mapping (config.json); unknown keys are errors, and so are values of the wrong type."""
        try:
            return cls(**validate.known_fields("training", d, cls))
        except TypeError as e:  # e.g. a missing key, or a string where a number belongs
            raise ValueError(f"training config: {e}") from None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["augment"] = self.augment.to_dict()
        return d

    def save(self, path: Path) -> None:
        """Written whole under a temporary name, then renamed into place: a link there is replaced, not written
        through (a resume rewrote the file a link in the run folder pointed to)."""
        with written_whole(path) as file:
            file.write((json.dumps(self.to_dict(), indent=2) + "\n").encode())

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
