"""The reader both image pipelines start from: the checked files of a folder tree or file list
(`fn.readers.file`), decoded pixels in `.npy` files (`fn.readers.numpy`) or WebDataset shards
(`fn.readers.webdataset`), shuffled or not, sharded exactly; every way (encoded images or pixels, int64 labels)."""
from __future__ import annotations

import os
from typing import Optional

import numpy as np
from nvidia.dali import fn, types

from dali_has import fused
from dali_has.file_label import file_label, one_label_per_name
from pipelines import webdataset
from pipelines.decoder import npy_pixels
from pipelines.file_check import check_shards, usable_dataset
from pipelines.files import WEBDATASET, Dataset, list_shards, stores_pixels
from pipelines.settings import SHUFFLE_BUFFER, ImageOptions, PipelineOptions

READER_NAME = "Reader"  # loaders find epoch and shard sizes through this name


def reader_kwargs(options: PipelineOptions, image: ImageOptions, *, shuffle: bool,
                  shuffle_buffer: int = SHUFFLE_BUFFER, files: Optional[Dataset] = None) -> dict:
    """Arguments of the reader for `image.kind` (`fn.readers.webdataset` for shards, else `fn.readers.file`).

    Files: DALI reads exactly `files`, the files of `image.data` that passed the listing check
    (`pipelines.file_check.usable_dataset`, run here when not given): names, labels and order as DALI would list
    them itself, so epochs, shards and labels are the same, but a file its decoder must not see never reaches it.
    Shards are read whole; their samples are checked first (`pipelines.file_check.check_shards`).
    stick_to_shard keeps every epoch on the same shard, so a shard's size (and the loader's len()) never
    changes between epochs; pad_last_batch makes DALI end each epoch at the shard boundary (the padding is cut
    off again by the loader) instead of wrapping into the next epoch. Every reader splits the samples into
    `num_shards` contiguous parts of one order, the same on every rank (the listed order, or for the file
    readers with random_shuffle a permutation of it by a fixed seed), so sharding is exact for every kind of data.
    """
    if image.kind == WEBDATASET:
        shards = list_shards(image.data)
        # The shuffle buffer mixes samples only locally: `dali-has prepare` writes shards in a random order.
        source = dict(paths=[str(s) for s in shards], index_paths=[str(webdataset.index_path(s)) for s in shards],
                      ext=[webdataset.IMAGE_EXT, webdataset.LABEL_EXT], missing_component_behavior="error",
                      dont_use_mmap=_remapped(shards))
    else:
        files = checked_files(image, files)
        source = dict(files=[name for name, _ in files.samples], labels=[label for _, label in files.samples],
                      file_root=str(files.root))
    return dict(source, name=READER_NAME, shard_id=options.shard_id, num_shards=options.num_shards,
                stick_to_shard=True, pad_last_batch=True, random_shuffle=shuffle, initial_fill=shuffle_buffer)


# Each shard's version (device, inode, size, modification time) when this process first gave it to DALI.
_MAPPED: dict[str, tuple[int, int, int, int]] = {}


def _remapped(shards) -> bool:
    """Whether a shard has changed since this process first gave it to DALI to map, so the reader must use plain
    file reads: DALI keeps one mapping per path and process while any reader holds it, so a loader made after the
    shard was rewritten read the old version's bytes at the new index's offsets. Mapping is otherwise kept: plain
    reads cost 14-23 % of a CPU training pipeline's speed (docs/performance.md). A shard cut short in place under
    a running loader still kills the process (SIGBUS), as with any memory-mapped reader: write shards anew and
    rename them into place, as `dali-has prepare` does."""
    changed = False
    for shard in shards:
        info = os.stat(shard)
        version = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        changed |= _MAPPED.setdefault(os.path.realpath(shard), version) != version
    return changed


def checked_files(image: ImageOptions, files: Optional[Dataset] = None) -> Optional[Dataset]:
    """`files`, or the checked files of image.data when not given (`usable_dataset`); None for WebDataset shards,
    whose samples are checked here (`check_shards`, cached)."""
    if image.kind == WEBDATASET:
        check_shards(image.data)
        return None
    if files is None:
        files = usable_dataset(image.data, skip_bad_files=image.skip_bad_files)
    return files


def holds_pixels(files: Optional[Dataset]) -> bool:
    """Whether `checked_files` are decoded pixels (`pipelines.files.stores_pixels`); shards hold JPEGs."""
    return files is not None and stores_pixels(files)


def read_files(options: PipelineOptions, image: ImageOptions, *, shuffle: bool, shuffle_buffer: int = SHUFFLE_BUFFER,
               files: Optional[Dataset] = None):
    """(data, labels) nodes: data are the encoded images, or for decoded pixels (`holds_pixels(files)`) HWC
    uint8 images (`read_pixels`); labels come out int64 with one scalar per sample, on the images' device, so the
    batch is a `[B]` tensor ready for `cross_entropy`. `files`: see `reader_kwargs`."""
    files = checked_files(image, files)
    kwargs = reader_kwargs(options, image, shuffle=shuffle, shuffle_buffer=shuffle_buffer, files=files)
    if image.kind == WEBDATASET:
        data, label_text = fn.readers.webdataset(**kwargs)
        labels = _decimal(label_text)
    elif holds_pixels(files):
        data, labels = read_pixels(**kwargs)
    else:
        data, labels = fn.readers.file(**kwargs)
        labels = _scalars(labels)
    return data, (labels.gpu() if options.device == "gpu" else labels)


def read_pixels(*, files: list[str], labels: list[int], **reader_args):
    """(HWC uint8 images, int64 scalar labels) of `.npy` files, read by `fn.readers.file`'s arguments.

    `fn.readers.numpy`, with `dali_has.file_label` finding each sample's label by its file name: it maps the
    files and copies the pixels out in DALI's thread pool, where `fn.readers.file` + `fn.decoders.numpy` copy
    each file twice, the first time on the reader's one loader thread (+14 to +39 % through `make_loader` on
    two cores: docs/performance.md, "Reading decoded pixels"). The latter is the fallback when the plugin does
    not load or a file list gives one name two labels. The readers list, shuffle and shard alike, so either
    gives the same samples.
    """
    if fused.load() and one_label_per_name(files, labels):
        images = fn.readers.numpy(files=files, **reader_args)
        return fn.reshape(images, layout="HWC"), file_label(images, names=files, labels=labels)
    encoded, labels = fn.readers.file(files=files, labels=labels, **reader_args)
    return npy_pixels(encoded), _scalars(labels)


def _scalars(labels):
    """fn.readers.file's int32 labels, shape [1] per sample, as int64 scalars."""
    return fn.cast(fn.squeeze(labels, axes=[0]), dtype=types.INT64)


def _decimal(text):
    """The integer written as `webdataset.LABEL_DIGITS` ASCII digits: sum of digit × 10^place, an int64 scalar."""
    places = np.array([10**k for k in reversed(range(webdataset.LABEL_DIGITS))], dtype=np.int64)
    return fn.reductions.sum((fn.cast(text, dtype=types.INT64) - ord("0")) * types.Constant(places))
