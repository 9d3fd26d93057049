"""The file reader of the sequence pipelines (features, video): each file's row in its list is its label.

Reading rows instead of classes lets evaluation find a sample's ground truth (segments, length); the loader
turns rows into class labels. Shuffled or in order, sharded, every file exactly once per epoch.
"""
from __future__ import annotations

from collections.abc import Sequence

from nvidia.dali import fn, types

from pipelines.files import is_utf8
from pipelines.settings import PipelineOptions

READER_NAME = "SequenceReader"  # the loader finds epoch and shard sizes through this name


def read_rows(paths: Sequence[str], options: PipelineOptions, *, shuffle: bool):
    """(file bytes, int64 row of the file in `paths`) nodes.

    stick_to_shard keeps every epoch on the same shard; pad_last_batch ends each epoch at the shard boundary
    (the loader drops the padding) instead of wrapping into the next epoch.
    """
    for path in paths:
        check_name(path)
    encoded, rows = fn.readers.file(files=list(paths), labels=list(range(len(paths))), name=READER_NAME,
                                    random_shuffle=shuffle, shard_id=options.shard_id,
                                    num_shards=options.num_shards,
                                    stick_to_shard=True, pad_last_batch=True)
    return encoded, fn.cast(fn.squeeze(rows, axes=[0]), dtype=types.INT64)


def check_name(path: str, where: str = "") -> None:
    """Refuse a file name DALI's reader cannot take (it takes UTF-8 only; a Latin-1 name on a Linux file system
    gave "Unsupported argument type with name files")."""
    if not is_utf8(path):
        raise ValueError(f"{where}{': ' if where else ''}the name {path!r} is not UTF-8, which DALI's reader "
                         "needs; rename the file")
