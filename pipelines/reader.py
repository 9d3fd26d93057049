"""The file reader both image pipelines start from: folder tree or file list, shuffled or not, sharded exactly."""
from __future__ import annotations

from typing import Optional

from nvidia.dali import fn, types

from pipelines.file_check import usable_dataset
from pipelines.files import Dataset
from pipelines.settings import SHUFFLE_BUFFER, ImageOptions, PipelineOptions

READER_NAME = "Reader"  # loaders find epoch and shard sizes through this name


def reader_kwargs(options: PipelineOptions, image: ImageOptions, *, shuffle: bool,
                  shuffle_buffer: int = SHUFFLE_BUFFER, files: Optional[Dataset] = None) -> dict:
    """Arguments of `fn.readers.file` for these options.

    DALI reads exactly `files`, the files of `image.data` that passed the listing check
    (`pipelines.file_check.usable_dataset`, run here when not given): names, labels and order as DALI would list
    them itself, so epochs, shards and labels are the same, but a file its decoder must not see never reaches it.
    stick_to_shard keeps every epoch on the same shard, so a shard's size (and the loader's len()) never
    changes between epochs; pad_last_batch makes DALI end each epoch at the shard boundary (the padding is cut
    off again by the loader) instead of wrapping into the next epoch.
    """
    if files is None:
        files = usable_dataset(image.data, skip_bad_files=image.skip_bad_files)
    return dict(files=[name for name, _ in files.samples], labels=[label for _, label in files.samples],
                file_root=str(files.root), name=READER_NAME, shard_id=options.shard_id, num_shards=options.num_shards,
                stick_to_shard=True, pad_last_batch=True, random_shuffle=shuffle, initial_fill=shuffle_buffer)


def read_files(options: PipelineOptions, image: ImageOptions, *, shuffle: bool, shuffle_buffer: int = SHUFFLE_BUFFER,
               files: Optional[Dataset] = None):
    """(encoded image bytes, labels) nodes; labels come out int64 with one scalar per sample, on the images'
    device, so the batch is a `[B]` tensor ready for `cross_entropy`. `files`: see `reader_kwargs`."""
    encoded, labels = fn.readers.file(**reader_kwargs(options, image, shuffle=shuffle, shuffle_buffer=shuffle_buffer,
                                                      files=files))
    labels = fn.cast(fn.squeeze(labels, axes=[0]), dtype=types.INT64)
    return encoded, (labels.gpu() if options.device == "gpu" else labels)
