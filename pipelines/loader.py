"""`make_loader`: a DALI pipeline wrapped as a plain PyTorch iterable of (images, labels) batches.

Epochs. Each `for batch in loader` is one epoch of this shard: every sample exactly once, the last batch
partial (never padded with repeated samples). DALI readers cannot restart mid-epoch, so when a `for` stops early
(break, exception) the next `for` *rebuilds* the pipeline and starts a fresh epoch. We rebuild rather than drain
the unfinished epoch because trainers that cap batches per epoch would otherwise pay for a whole epoch of
decoding each time; a rebuild costs a pipeline build and a file listing. A rebuilt pipeline gets a new seed
derived from (seed, number of rebuilds), so its crops and masks are new but still reproducible.

Randomness. The pipeline seed is seed + shard_id: shards draw different crops, flips and masks; every epoch draws
new ones (DALI's generators run on); a fixed seed gives the same batches run after run.

Shutdown. A loader owns one DALI pipeline. `close()` (or `with make_loader(...) as loader:`) releases it at once,
and so does dropping the last reference. Loaders still open at interpreter exit are closed by an atexit hook, so
DALI's threads and CUDA memory are released while the interpreter and the CUDA driver are fully up, not in
whatever order garbage collection reaches them during shutdown.
"""
from __future__ import annotations

import atexit
import math
import weakref
from dataclasses import replace
from typing import Callable, Iterator, Optional, Union

import numpy as np
import nvidia.dali.backend
import torch
from nvidia.dali import Pipeline
from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

from dali_has import HaSConfig
from pipelines.bad_files import explain
from pipelines.options import IMAGENET_MEAN, IMAGENET_STD, PipelineOptions
from pipelines.reader import IMAGE_FILTERS, READER_NAME, reader_kwargs
from pipelines.train_pipeline import (FLIP_PROBABILITY, INITIAL_FILL, RANDOM_AREA, RANDOM_ASPECT_RATIO, check_train_settings,
                                      train_pipeline)
from pipelines.val_pipeline import val_pipeline

_OPEN_LOADERS: "weakref.WeakSet[DaliLoader]" = weakref.WeakSet()


@atexit.register
def _close_open_loaders():
    for loader in list(_OPEN_LOADERS):
        loader.close()


def make_loader(data, *, train: bool, batch_size: int, crop: int = 224, device: str = "cpu",
                has: Union[None, HaSConfig, dict] = None, has_impl: str = "auto", seed: Optional[int] = None,
                shard_id: int = 0, num_shards: int = 1, num_threads: Optional[int] = None, dtype=torch.float32,
                layout: str = "NCHW",
                mean=IMAGENET_MEAN, std=IMAGENET_STD, ten_crop: bool = False, resize: Optional[int] = None,
                random_area=RANDOM_AREA, random_aspect_ratio=RANDOM_ASPECT_RATIO, initial_fill: int = INITIAL_FILL,
                flip_probability: float = FLIP_PROBABILITY,
                device_id: Optional[int] = None, hw_decoder_load: float = 0.65,
                preallocate_hint: Optional[tuple[int, int]] = None) -> "DaliLoader":
    """An iterable of (images, labels) batches over `data`, one epoch per `for`.

    data: a folder `DIR/<class>/<image>` (label = index of the class folder in sorted order) or a DALI file
        list (`path label` per line, paths relative to the list; `dali-has scan DIR --write-list FILE`).
    train: True = shuffled, random-resized-crop + flip (+ Hide-and-Seek); False = in order, centre crop.
    images: [B, 3, crop, crop] (NCHW) or [B, crop, crop, 3] (NHWC), `dtype`, normalized with mean/std
        (0..255 scale); on the CPU for device="cpu", on the GPU for device="gpu". With ten_crop=True: [B, 10, ...].
    labels: int64 [B], on the images' device.
    has: Hide-and-Seek settings (HaSConfig or dict, `fill` in normalized units, see `pipelines.has_fill`);
        None = none. Ignored when train=False: HaS never runs at evaluation.
    has_impl: "auto", "fused" or "composed" Hide-and-Seek operator (`train_pipeline`).
    seed, shard_id, num_shards, num_threads, dtype, layout, device_id, hw_decoder_load, preallocate_hint:
        see `PipelineOptions`.
    Training only (ignored when train=False): random_area, random_aspect_ratio, initial_fill, flip_probability
        (`train_pipeline`).
    Evaluation only: resize (shorter side, default crop / 0.875) is ignored when train=True; ten_crop=True with
        train=True is an error, since it changes the output shape.
    """
    if not isinstance(train, bool):
        raise ValueError(f"train={train!r} must be True or False")
    options = PipelineOptions(data=data, batch_size=batch_size, crop=crop, device=device, device_id=device_id,
                              dtype=dtype, layout=layout, mean=mean, std=std, shard_id=shard_id,
                              num_shards=num_shards, num_threads=num_threads, seed=seed,
                              hw_decoder_load=hw_decoder_load, preallocate_hint=preallocate_hint)
    # Checked in both modes, so a typo in a shared settings dict shows up whichever loader is built first.
    train_settings = check_train_settings(has, has_impl, random_area, random_aspect_ratio, initial_fill,
                                          flip_probability)
    if train:
        if ten_crop:
            raise ValueError("ten_crop=True is an evaluation setting; use it with train=False")

        def build(rebuilds: int) -> Pipeline:
            reseeded = replace(options, seed=_rebuild_seed(options.seed, rebuilds))
            return train_pipeline(reseeded, **train_settings)
    else:
        def build(rebuilds: int) -> Pipeline:  # deterministic: a rebuild needs no new seed
            return val_pipeline(options, resize=resize, ten_crop=ten_crop)

    return DaliLoader(build, options, reader_kwargs(options, shuffle=train, initial_fill=initial_fill), train=train)


class DaliLoader:
    """Iterable of (images, labels) torch batches from a DALI pipeline; see the module docstring for epochs,
    randomness and shutdown. Build it with `make_loader`.

    batch_size: samples per batch (the last batch of an epoch may be smaller).
    num_samples: samples of this shard, i.e. per epoch of this loader.
    dataset_size: samples of the whole data set, all shards together.
    len(loader): batches per epoch, ceil(num_samples / batch_size). Shards differ by at most one sample, so
        their batch counts differ by at most one.
    """

    def __init__(self, build: Callable[[int], Pipeline], options: PipelineOptions, reader_kwargs: dict, *,
                 train: bool):
        self._build = build
        self._options = options
        self._reader_kwargs = reader_kwargs
        self._train = train
        self._rebuilds = 0
        self._epoch = 0  # id of the newest `for`; older ones stop
        self._mid_epoch = False  # a batch of the current epoch was drawn and the epoch has not ended
        self._pipeline: Optional[Pipeline] = None
        self._iterator: Optional[DALIGenericIterator] = None
        self._open()
        self.batch_size = options.batch_size
        self.dataset_size = self._dataset_size
        self.num_samples = _shard_size(self.dataset_size, options.shard_id, options.num_shards)
        _OPEN_LOADERS.add(self)

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._iterator is None:
            raise RuntimeError("this loader is closed")
        if self._mid_epoch:  # the previous `for` stopped early: start the next epoch from a fresh pipeline
            self._close_pipeline()
            self._rebuilds += 1
            self._open()
        self._epoch += 1
        return self._batches(self._epoch)

    def _batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            if epoch != self._epoch:
                raise RuntimeError("a newer `for` over this loader started a new epoch; this one has ended")
            if self._iterator is None:
                raise RuntimeError("this loader was closed during the epoch")
            self._mid_epoch = True
            try:
                (batch,) = next(self._iterator)
            except StopIteration:  # the iterator has reset itself (auto_reset) for the next epoch
                self._mid_epoch = False
                return
            except RuntimeError as error:
                explained = explain(error, self._options, self._reader_kwargs)
                if explained is None:
                    raise
                raise explained from error
            images, labels = batch["images"], batch["labels"]
            # A shard one sample smaller than the largest can end in a batch of padding only; DALI trims the
            # padding (LastBatchPolicy.PARTIAL), which leaves it empty.
            if len(labels) == 0:
                continue
            yield images, labels

    @property
    def pipeline(self) -> Optional[Pipeline]:
        """The DALI pipeline now in use (a new one after a rebuild); None once closed."""
        return self._pipeline

    def close(self) -> None:
        """Release the DALI pipeline now; the loader cannot be iterated afterwards."""
        self._close_pipeline()
        _OPEN_LOADERS.discard(self)

    def __enter__(self) -> "DaliLoader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        o = self._options
        return (f"DaliLoader(data={o.data!r}, train={self._train}, batch_size={self.batch_size}, crop={o.crop}, "
                f"device={o.device!r}, shard={o.shard_id}/{o.num_shards}, num_samples={self.num_samples}, "
                f"batches={len(self)})")

    def _open(self) -> None:
        try:
            self._pipeline = self._build(self._rebuilds)
            self._pipeline.build()
            self._dataset_size = self._pipeline.reader_meta(READER_NAME)["epoch_size"]  # all shards together
            self._iterator = DALIGenericIterator(
                self._pipeline, ["images", "labels"], reader_name=READER_NAME, auto_reset=True,
                last_batch_policy=LastBatchPolicy.PARTIAL, prepare_first_batch=False)
        except RuntimeError as error:
            if "No files found" in str(error):
                raise ValueError(self._no_files_message()) from error
            if "requested number of shards" in str(error):
                raise ValueError(f"num_shards={self._options.num_shards} is more than the data set's samples; "
                                 "every shard needs at least one") from error
            raise
        self._mid_epoch = False

    def _close_pipeline(self) -> None:
        # Our references are the only ones: dropping them frees DALI's threads and (GPU) memory.
        self._iterator = None
        self._pipeline = None
        if self._options.device == "gpu":
            # DALI keeps freed device and pinned memory in its pools; hand it back so torch can use it.
            nvidia.dali.backend.ReleaseUnusedMemory()

    def _no_files_message(self) -> str:
        o = self._options
        if o.is_file_list:
            return f"the file list {o.data} names no files"
        return (f"no images in {o.data}: expected class folders DIR/<class>/<image> with files matching "
                f"{', '.join(IMAGE_FILTERS)}")


def _shard_size(dataset_size: int, shard_id: int, num_shards: int) -> int:
    """DALI's split: shard i holds samples [floor(i*N/S), floor((i+1)*N/S))."""
    return (shard_id + 1) * dataset_size // num_shards - shard_id * dataset_size // num_shards


def _rebuild_seed(seed: Optional[int], rebuilds: int) -> Optional[int]:
    """The base seed for the n-th rebuild: unchanged at first, then a reproducible fresh one."""
    if seed is None or rebuilds == 0:
        return seed
    return int(np.random.SeedSequence([seed, rebuilds]).generate_state(1)[0] >> 2)  # < 2**30: room for + shard_id
