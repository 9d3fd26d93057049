"""The file reader both image pipelines start from: folder tree or file list, shuffled or not, sharded exactly."""
from __future__ import annotations

from nvidia.dali import fn, types

from pipelines.files import IMAGE_FILTERS
from pipelines.settings import SHUFFLE_BUFFER, ImageOptions, PipelineOptions

READER_NAME = "Reader"  # loaders find epoch and shard sizes through this name


def reader_kwargs(options: PipelineOptions, image: ImageOptions, *, shuffle: bool,
                  shuffle_buffer: int = SHUFFLE_BUFFER) -> dict:
    """Arguments of `fn.readers.file` for these options.

    stick_to_shard keeps every epoch on the same shard, so a shard's size (and the loader's len()) never
    changes between epochs; pad_last_batch makes DALI end each epoch at the shard boundary (the padding is cut
    off again by the loader) instead of wrapping into the next epoch.
    """
    source = (dict(file_list=image.data) if image.is_file_list
              else dict(file_root=image.data, file_filters=list(IMAGE_FILTERS)))
    return dict(source, name=READER_NAME, shard_id=options.shard_id, num_shards=options.num_shards,
                stick_to_shard=True, pad_last_batch=True, random_shuffle=shuffle, initial_fill=shuffle_buffer)


def read_files(options: PipelineOptions, image: ImageOptions, *, shuffle: bool, shuffle_buffer: int = SHUFFLE_BUFFER):
    """(encoded image bytes, labels) nodes; labels come out int64 with one scalar per sample, on the images'
    device, so the batch is a `[B]` tensor ready for `cross_entropy`."""
    encoded, labels = fn.readers.file(**reader_kwargs(options, image, shuffle=shuffle, shuffle_buffer=shuffle_buffer))
    labels = fn.cast(fn.squeeze(labels, axes=[0]), dtype=types.INT64)
    return encoded, (labels.gpu() if options.device == "gpu" else labels)
