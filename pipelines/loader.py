"""DALI pipelines as plain PyTorch iterables: `EpochLoader`, the core every loader of this package shares, and
`make_loader` / `DaliLoader` for images.

Epochs. Each `for batch in loader` is one epoch of this shard: every sample exactly once, the last batch
partial (never padded with repeated samples). DALI readers cannot restart mid-epoch, so when a `for` stops early
(break, exception) the next `for` *rebuilds* the pipeline and starts a fresh epoch. We rebuild rather than drain
the unfinished epoch because trainers that cap batches per epoch would otherwise pay for a whole epoch of
decoding each time; a rebuild costs a pipeline build and a file listing. A rebuilt pipeline gets a new seed
derived from (seed, number of rebuilds), so its crops and masks are new but still reproducible.

Randomness. The pipeline seed is seed + shard_id: shards draw different crops, flips and masks; every epoch draws
new ones (DALI's generators run on); a fixed seed gives the same batches run after run.

Resuming. Keep one loader for a whole training run: its pipeline then lists the files, allocates its decoders and
fills its shuffle buffer once, and the next epoch's first batches are prefetched while the last ones train. To
resume such a run exactly, make the loader with `checkpointing=True`, save `loader.state_dict()` after an epoch
and give it to `load_state_dict()` of a new loader with the same settings (checkpointing too): its next `for`
yields exactly what the old loader's next `for` would have (DALI's checkpoints restore the readers' positions
and shuffle buffers and every random generator; a `for` that had stopped early is restored as the rebuild it
would have caused). A state of other settings or data is refused, naming what differs; a refused state leaves
the loader as it was.

Shutdown. A loader owns one DALI pipeline. `close()` (or `with make_loader(...) as loader:`) releases it at once,
and so does dropping the last reference. Loaders still open at interpreter exit are closed by an atexit hook, so
DALI's threads and CUDA memory are released while the interpreter and the CUDA driver are fully up, not in
whatever order garbage collection reaches them during shutdown.
"""
from __future__ import annotations

import atexit
import hashlib
import math
import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Optional, Union

import numpy as np
import nvidia.dali.backend
import torch
from nvidia.dali import Pipeline
from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

from dali_has import HaSConfig, validate
from pipelines import webdataset
from pipelines.bad_files import NO_FILES, SHARDS, explain, explain_shard_sample, read_dali_error
from pipelines.dali_checkpoint import check_reader_state
from pipelines.errors import UnreadableImageError
from pipelines.file_check import usable_dataset
from pipelines.files import WEBDATASET, Dataset, list_shards, stores_pixels
from pipelines.reader import READER_NAME
from pipelines.settings import ImageOptions, PipelineOptions, TrainAugment, as_train_augment, split_options
from pipelines.train_pipeline import train_pipeline
from pipelines.val_pipeline import eval_resize, val_pipeline

_OPEN_LOADERS: weakref.WeakSet[EpochLoader] = weakref.WeakSet()
STATE_VERSION = 2  # of EpochLoader.state_dict(); 2 added "settings"


@atexit.register
def _close_open_loaders():
    for loader in list(_OPEN_LOADERS):
        loader.close()


class EpochLoader:
    """One DALI pipeline as an iterable of batches, one epoch per `for` (see the module docstring for epochs,
    randomness and shutdown). Subclasses say how a batch of named DALI outputs becomes what they yield.

    define: builds the (unbuilt) pipeline for given options; called again, with a derived seed, on a rebuild.
    outputs: names of the pipeline's outputs; reader_name: the name of its reader (epoch and shard sizes).
    settings: what else decides the batches (JSON-like values: augmentation, crop, a digest of the files, ...);
        with the batch size and seed, a saved state holds them and `load_state_dict` refuses a state whose
        settings differ (DALI would restore it and silently yield other batches).

    batch_size: samples per batch (the last batch of an epoch may be smaller).
    num_samples: samples of this shard, i.e. per epoch of this loader.
    dataset_size: samples of the whole data set, all shards together.
    len(loader): batches per epoch, ceil(num_samples / batch_size). Shards differ by at most one sample, so
        their batch counts differ by at most one.
    """

    def __init__(self, define: Callable[[PipelineOptions], Pipeline], options: PipelineOptions,
                 outputs: Sequence[str], reader_name: str, settings: Optional[dict] = None):
        self._define = define
        self._settings = {"batch_size": options.batch_size, "seed": options.seed, **(settings or {})}
        self._options = replace(options, checkpoint=None)  # a given checkpoint is where the first pipeline starts
        self._outputs = list(outputs)
        self._reader_name = reader_name
        self._rebuilds = 0
        self._epoch = 0  # id of the newest `for`; older ones stop
        self._mid_epoch = False  # a batch of the current epoch was drawn and the epoch has not ended
        self._running: Optional[int] = None  # the epoch whose `for` has started and not yet ended or been dropped
        self._process = os.getpid()  # DALI's threads do not survive a fork
        self._pipeline: Optional[Pipeline] = None
        self._iterator: Optional[DALIGenericIterator] = None
        self._open(options.checkpoint)
        self.batch_size = options.batch_size
        self.num_samples = len(shard_range(self.dataset_size, options.shard_id, options.num_shards))
        _OPEN_LOADERS.add(self)

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator:
        self._check_usable()
        if self._mid_epoch:  # the previous `for` stopped early: start the next epoch from a fresh pipeline
            self._close_pipeline()
            self._rebuilds += 1
            self._open()
        self._epoch += 1
        return self._batches(self._epoch)

    @property
    def pipeline(self) -> Optional[Pipeline]:
        """The DALI pipeline now in use (a new one after a rebuild); None once closed."""
        return self._pipeline

    def state_dict(self) -> dict:
        """Where the next `for` starts (see "Resuming" in the module docstring); needs `checkpointing=True`.

        Take it between epochs: after a `for` ended or stopped early, or before the first. Its "pipeline" entry is
        DALI's checkpoint (bytes, None when the next `for` starts a fresh pipeline).
        """
        self._check_usable()
        if not self._options.checkpointing:
            raise ValueError("state_dict() needs a loader made with checkpointing=True")
        if self._running is not None:
            raise RuntimeError("state_dict() inside an epoch: a `for` over this loader has not ended, so the state "
                               "cannot say where its epoch ends (a loader resumed from it gave other batches); take "
                               "it after the `for` ends or stops (`break`)")
        state = {"version": STATE_VERSION, "dataset_size": self.dataset_size,
                 "shard": [self._options.shard_id, self._options.num_shards], "settings": self._settings}
        if self._mid_epoch:  # the next `for` rebuilds: a fresh pipeline with the next derived seed
            return dict(state, rebuilds=self._rebuilds + 1, pipeline=None)
        return dict(state, rebuilds=self._rebuilds, pipeline=self._iterator.checkpoints()[0])

    def load_state_dict(self, state: dict) -> None:
        """Continue from a `state_dict()` of a loader with the same settings and data (rebuilds the pipeline).
        A state refused (ValueError) leaves the loader as it was."""
        self._check_usable()
        keys = {"version", "dataset_size", "shard", "rebuilds", "pipeline", "settings"}
        # Version 1 (no settings) is not read: relabelled 1, any state skipped the settings check.
        if not isinstance(state, dict) or set(state) != keys or type(state["version"]) is not int or \
                state["version"] != STATE_VERSION:
            raise ValueError(f"not a loader state of this version: expected a dict with keys {sorted(keys)} "
                             f"and version {STATE_VERSION}, as state_dict() returns")
        if not self._options.checkpointing:  # it resumed, then failed in state_dict() after a whole epoch
            raise ValueError("load_state_dict() needs a loader made with checkpointing=True, as the one the state "
                             "was taken from: without it this loader could not save its own state later")
        mine = {"dataset_size": self.dataset_size, "shard": [self._options.shard_id, self._options.num_shards]}
        theirs = {key: state[key] for key in mine}
        if theirs != mine:
            raise ValueError(f"the loader state is of another data set or shard ({theirs}); this loader has {mine}")
        if state["settings"] != self._settings:
            saved, current = (state["settings"] if isinstance(state["settings"], dict) else {}), self._settings
            differ = [f"{key} {saved.get(key)!r} (this loader: {current.get(key)!r})"
                      for key in sorted(set(saved) | set(current)) if saved.get(key) != current.get(key)]
            raise ValueError(f"the loader state was taken with other settings: {'; '.join(differ)}; make the loader "
                             "with the settings and data it was taken with")
        rebuilds = validate.whole_number("rebuilds", state["rebuilds"])
        if state["pipeline"] is not None and not isinstance(state["pipeline"], bytes):
            raise ValueError(f"the loader state's pipeline is a {type(state['pipeline']).__name__}; expected the "
                             "bytes of a DALI checkpoint or None, as state_dict() returns")
        # Where this loader's next `for` would start, to go back to if DALI cannot restore the state.
        now = self.state_dict()
        self._close_pipeline()
        try:
            self._rebuilds = rebuilds
            self._open(state["pipeline"])
            if state["pipeline"] is not None:
                self._check_restored_position()
        except Exception as error:  # besides ours (ValueError): whatever DALI raises reading damaged bytes
            # (KeyError, TypeError, RuntimeError, an OverflowError for a count beyond int64 that left it closed)
            self._close_pipeline()
            self._rebuilds = now["rebuilds"]
            self._open(now["pipeline"])
            if type(error) is ValueError:  # ours, saying what is wrong
                raise
            raise ValueError(f"the loader state's DALI checkpoint is damaged ({type(error).__name__}: {error}); "
                             "resume from an intact state") from error

    def _check_restored_position(self) -> None:
        """A state is taken between epochs: DALI's iterator, restored from its checkpoint, must stand at the start
        of an epoch of this shard. An edited one was restored as it said: 8 of 21 samples an epoch while len()
        said 6, epochs of repeated samples, an IndexError inside DALI."""
        it, shards = self._iterator, self._options.num_shards
        for name in ("_consumer_iter", "_epoch_idx"):  # the pipeline's record: a null one failed the first batch
            value = getattr(self._pipeline, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"the loader state's DALI checkpoint records the pipeline's {name.strip('_')} as "
                                 f"{value!r}: it was damaged or edited; resume from an intact state")
        restored = {"size": it._size, "counter": int(it._counter), "shards": [int(i) for i in it._shards_id],
                    "shard sizes": [int(n) for n in it._shard_sizes_per_gpu],
                    "counters": [int(n) for n in it._counter_per_gpu]}
        # DALI's record at an epoch start (pad_last_batch, stick_to_shard): its size is the largest shard's, which
        # every shard is padded to; sizes and counters are kept for all shards, not only this loader's.
        expected = {"size": math.ceil(self.dataset_size / shards), "counter": 0, "shards": [self._options.shard_id],
                    "shard sizes": [len(shard_range(self.dataset_size, i, shards)) for i in range(shards)],
                    "counters": [0] * shards}
        if restored != expected:
            differ = "; ".join(f"{key} {restored[key]} (expected {expected[key]})" for key in expected
                               if restored[key] != expected[key])
            raise ValueError(f"the loader state's DALI checkpoint does not stand at the start of an epoch of this "
                             f"loader ({differ}): it was damaged or edited; resume from an intact state")

    def _check_usable(self) -> None:
        if self._iterator is None:
            raise RuntimeError("this loader is closed")
        if os.getpid() != self._process:  # its DALI threads stayed in the parent: the child waited for ever
            raise RuntimeError(f"this loader was made in process {self._process} and is used in {os.getpid()}, a "
                               "fork of it (a DataLoader worker?), where its DALI pipeline cannot run: make the "
                               "loader in the process that reads it; it needs no DataLoader workers (DALI runs its "
                               "own threads)")

    def __reduce__(self):
        # pickle, copy and deepcopy: DALI's pipeline cannot be copied (it failed deep inside it, then warned from
        # a half-made Pipeline's __del__), and a shallow copy would share this loader's pipeline and epoch.
        raise TypeError(f"a {type(self).__name__} cannot be pickled or copied: it owns a DALI pipeline and its "
                        "threads; make a loader in each process (a state_dict() can be saved and loaded)")

    def close(self) -> None:
        """Release the DALI pipeline now; the loader cannot be iterated afterwards."""
        self._close_pipeline()
        _OPEN_LOADERS.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _convert(self, batch: dict):
        """What one batch of named outputs (torch tensors) becomes for the caller."""
        raise NotImplementedError

    def _explain(self, error: RuntimeError) -> Optional[Exception]:
        """A clearer error for a failure while iterating, or None to re-raise DALI's."""
        return None

    def _no_files_message(self) -> str:
        return "the pipeline's reader found no files"

    def _batches(self, epoch: int) -> Iterator:
        self._running = epoch
        try:
            while True:
                if epoch != self._epoch:
                    raise RuntimeError("a newer `for` over this loader started a new epoch; this one has ended")
                if self._iterator is None:
                    raise RuntimeError("this loader was closed during the epoch (or rebuilt by a `for` in another "
                                       "thread: iterate a loader from one thread)")
                self._mid_epoch = True
                try:
                    (batch,) = next(self._iterator)
                except StopIteration:  # the iterator has reset itself (auto_reset) for the next epoch
                    self._mid_epoch = False
                    return
                except RuntimeError as error:
                    explained = self._explain(error)
                    if explained is None:
                        raise
                    raise explained from error
                # A shard one sample smaller than the largest can end in a batch of padding only; DALI trims the
                # padding (LastBatchPolicy.PARTIAL), which leaves it empty.
                if len(batch[self._outputs[-1]]) == 0:
                    continue
                yield self._convert(batch)
        finally:  # ended, failed, or closed (a `break` drops the generator, which closes it)
            if self._running == epoch:
                self._running = None

    def _open(self, checkpoint: Optional[bytes] = None) -> None:
        options = replace(self._options, seed=rebuild_seed(self._options.seed, self._rebuilds), checkpoint=checkpoint)
        if checkpoint is not None:
            try:
                check_reader_state(checkpoint, self._reader_name)
            except ValueError as error:
                raise ValueError(f"the DALI checkpoint is damaged or edited: {error}; resume from an intact state "
                                 "(a loader's state_dict())") from None
        try:
            self._pipeline = self._define(options)
            self._pipeline.build()
            self.dataset_size = self._pipeline.reader_meta(self._reader_name)["epoch_size"]  # all shards
            self._iterator = DALIGenericIterator(
                self._pipeline, self._outputs, reader_name=self._reader_name, auto_reset=True,
                last_batch_policy=LastBatchPolicy.PARTIAL, prepare_first_batch=False)
        except RuntimeError as error:
            if checkpoint is not None and "checkpoint" in str(error):
                raise ValueError("the DALI checkpoint cannot be restored by this loader's pipeline ("
                                 f"{read_dali_error(error).detail}); give the state_dict() of a loader with the same "
                                 "settings and data") from error
            kind = read_dali_error(error).kind
            if kind == NO_FILES:
                raise ValueError(self._no_files_message()) from error
            if kind == SHARDS:
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


def make_loader(data, *, train: bool, batch_size: int, has: Union[None, HaSConfig, dict] = None,
                augment: Union[None, TrainAugment, dict] = None, ten_crop: bool = False,
                resize: Optional[int] = None, **options) -> DaliLoader:
    """An iterable of (images, labels) batches over `data`, one epoch per `for`.

    Args:
        data: a folder `DIR/<class>/<image>` (label = index of the class folder in sorted order), a DALI file
            list (`path label` per line, paths relative to the list; `dali-has scan --write-list` writes one), or
            WebDataset shards with their DALI indexes: a folder of `*.tar`, one `.tar` or a list of `.tar` paths
            (`dali-has prepare --webdataset` writes them; `pipelines.webdataset` has the format).
        train: True = shuffled, random-resized-crop + flip (+ Hide-and-Seek); False = in order, centre crop.
        batch_size: samples per batch; the last batch of an epoch may be smaller. One larger than a shard's
            samples gives one batch of the whole shard, and the loader's `batch_size` says that many.
        has: Hide-and-Seek settings (a HaSConfig or a dict of its settings, `fill` in normalized units, see
            `pipelines.has_fill`); None = none. The common case of `augment`; give one or the other.
        augment: all training augmentation settings (`TrainAugment` or a dict of them): HaS and its
            implementation, random-resized-crop ranges, flip probability, shuffle buffer. Ignored when
            train=False (Hide-and-Seek never runs at evaluation) but still checked.
        ten_crop, resize: evaluation only (`val_pipeline`); ten_crop=True with train=True is an error.
        **options: fields of `PipelineOptions` (device, device_id, seed, shard_id, num_shards, num_threads,
            checkpointing: needed for `state_dict()` and `load_state_dict()`, see "Resuming" in the module docstring;
            operator_concurrency="full" lets DALI overlap the GPU operators of successive batches) and of
            `ImageOptions` (crop, dtype, layout, mean, std, hw_decoder_load, preallocate_hint, skip_bad_files).
            Every file of a folder or file list is checked when the data is listed (`pipelines.file_check`,
            cached): files DALI's decoder must not see raise `UnreadableImageError` naming them, or with
            skip_bad_files=True are left out with a warning saying how many and where they are listed. Shards
            are checked sample by sample the same way (the first time, cached): one holding a sample DALI must
            not see raises `UnreadableImageError` naming it (a shard's samples cannot be left out).

    Returns:
        A `DaliLoader`. Its images are [B, 3, crop, crop] (NCHW) or [B, crop, crop, 3] (NHWC) in `dtype`,
        normalized with mean/std (0..255 scale), on the CPU for device="cpu" and on the GPU for device="gpu";
        with ten_crop=True [B, 10, ...]. Labels are int64 [B] on the images' device.

    Raises:
        ValueError: a setting is invalid (the message names it), the data holds no images, or there are more
            shards than samples. TypeError: an unknown option. FileNotFoundError: a WebDataset shard listed (or
            named by an index beside it) that is not an existing .tar file.
        UnreadableImageError: files the listing check refuses (unless skip_bad_files=True); while iterating, a
            file DALI could not read or decode. It names the file(s).
    """
    validate.boolean("train", train)
    run, image = split_options(options)
    run = PipelineOptions(batch_size=batch_size, **run)
    image = ImageOptions(data=data, **image)
    if has is not None and augment is not None:
        raise ValueError("give Hide-and-Seek settings either as has=... or inside augment=..., not both")
    augment = TrainAugment(has=has) if augment is None else as_train_augment(augment)
    if train:
        if ten_crop or resize is not None:  # a training crop is resized from a random window: no resize to ignore
            raise ValueError(f"{'ten_crop=True' if ten_crop else f'resize={resize!r}'} is an evaluation setting; use "
                             "it with train=False")
    else:
        resize = eval_resize(image.crop, resize)
        validate.boolean("ten_crop", ten_crop)
    files = None if image.kind == WEBDATASET else usable_dataset(image.data, skip_bad_files=image.skip_bad_files)
    run = replace(run, batch_size=min(run.batch_size, _largest_shard(image, files, run.num_shards)))
    if train:
        define = lambda o: train_pipeline(o, image, augment, files=files)  # noqa: E731
    else:
        define = lambda o: val_pipeline(o, image, resize=resize, ten_crop=ten_crop, files=files)  # noqa: E731
    # What decides the batches besides the batch size and seed; a loader state carries it (see EpochLoader).
    settings = {"train": train, "crop": image.crop, "dtype": str(image.dtype).removeprefix("torch."),
                "layout": image.layout, "mean": list(image.mean), "std": list(image.std),
                **({"augment": augment.to_dict()} if train else {"resize": resize, "ten_crop": ten_crop}),
                "samples": None if files is None else samples_digest(files)}
    return DaliLoader(define, run, image, files, train=train, settings=settings)


def _largest_shard(image: ImageOptions, files: Optional[Dataset], num_shards: int) -> int:
    """The most samples a shard of the data holds: a batch larger than that is the whole shard, and DALI would
    otherwise allocate for every slot of the batch (batch_size=4096 took 5.5 GB for 18 images; 65536 failed in
    std::bad_alloc)."""
    if files is not None:
        samples = len(files.samples)
    else:
        samples = sum(len(webdataset.read_index(shard)) for shard in list_shards(image.data))
    return max(1, -(-samples // num_shards))


class DaliLoader(EpochLoader):
    """(images, labels) torch batches from an image pipeline; build it with `make_loader`. A file DALI cannot
    read or decode raises `UnreadableImageError` naming it."""

    def __init__(self, define: Callable[[PipelineOptions], Pipeline], options: PipelineOptions,
                 image: ImageOptions, files: Optional[Dataset], *, train: bool, settings: Optional[dict] = None):
        self._image = image  # files: the checked files of a folder or file list; None for shards
        self._files = files
        self._train = train
        super().__init__(define, options, ["images", "labels"], READER_NAME, settings)

    def _convert(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["images"], batch["labels"]

    def _explain(self, error: RuntimeError) -> Optional[UnreadableImageError]:
        if self._files is None:  # shards: no files to search, but DALI's CPU decoder names the shard's sample
            return explain_shard_sample(error)
        # The shard's files: DALI shards an unshuffled list in order. A shuffled reader (training) first permutes
        # the whole list with a fixed seed (std::shuffle, the same on every rank), so its shard is looked for
        # among all the files.
        o, samples = self._options, self._files.samples
        if not self._train:
            shard = shard_range(len(samples), o.shard_id, o.num_shards)
            samples = samples[shard.start:shard.stop]
        return explain(error, o, [str(self._files.root / name) for name, _ in samples], data=self._image.data,
                       root=str(self._files.root), image=self._image, pixels=stores_pixels(self._files))

    def __repr__(self) -> str:
        o = self._options
        return (f"DaliLoader(data={self._image.data!r}, train={self._train}, batch_size={self.batch_size}, "
                f"crop={self._image.crop}, device={o.device!r}, shard={o.shard_id}/{o.num_shards}, "
                f"num_samples={self.num_samples}, batches={len(self)})")


def samples_digest(files: Dataset) -> str:
    """A SHA-256 of the listed names and labels, in reader order: the same data set (wherever it lies) gives the
    same digest."""
    digest = hashlib.sha256()
    for name, label in files.samples:
        digest.update(f"{name}\0{label}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def shard_range(dataset_size: int, shard_id: int, num_shards: int) -> range:
    """DALI's split: shard i holds samples [floor(i*N/S), floor((i+1)*N/S)) in reader order."""
    return range(shard_id * dataset_size // num_shards, (shard_id + 1) * dataset_size // num_shards)


def rebuild_seed(seed: Optional[int], rebuilds: int) -> Optional[int]:
    """The base seed for the n-th rebuild: unchanged at first, then a reproducible fresh one."""
    if seed is None or rebuilds == 0:
        return seed
    return int(np.random.SeedSequence([seed, rebuilds]).generate_state(1)[0] >> 2)  # < 2**30: room for + shard_id

