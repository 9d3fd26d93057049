"""`SequenceLoader`: a sequence pipeline (features or video) as a PyTorch iterable, one epoch per `for`.

Kept apart from `pipelines.loader` (images): that loader's error diagnosis decodes files as images, which would
blame every `.npy` or video. The epoch rule is the same: every file of the shard exactly once, the last batch
partial.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np
import torch
from nvidia.dali import Pipeline
from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

from pipelines.sequence_reader import READER_NAME


class SequenceBatch(NamedTuple):
    sequences: torch.Tensor  # [B, F_total, ...]: features [B, F, D] or video [B, F, H, W, C]
    labels: torch.Tensor  # int64 [B], classes
    rows: torch.Tensor  # int64 [B] on the CPU, rows of the files in the pipeline's list (for ground truth)


class SequenceLoader:
    """Iterable of `SequenceBatch`es from a pipeline whose outputs are (sequences, rows) and whose reader is
    `pipelines.sequence_reader.read_rows`; `labels[row]` is the class of each file.

    A `for` must run to the end of its epoch before the next one starts: DALI readers cannot restart
    mid-epoch, and a silently resumed half epoch would break the exactly-once rule.
    """

    def __init__(self, pipeline: Pipeline, labels: np.ndarray):
        pipeline.build()
        self._iterator = DALIGenericIterator(pipeline, ["sequences", "rows"], reader_name=READER_NAME,
                                             auto_reset=True, last_batch_policy=LastBatchPolicy.PARTIAL,
                                             prepare_first_batch=False)
        self._labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self._in_epoch = False
        self.batch_size = pipeline.max_batch_size
        self.num_samples = self._iterator.size  # of this shard

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[SequenceBatch]:
        if self._in_epoch:
            raise RuntimeError("the previous epoch of this SequenceLoader was not run to its end")
        self._in_epoch = True
        for (batch,) in self._iterator:
            sequences, rows = batch["sequences"], batch["rows"].cpu()
            # A shard one file smaller than the largest can end in a batch of padding only, trimmed to empty.
            if len(rows):
                yield SequenceBatch(sequences, self._labels[rows].to(sequences.device), rows)
        self._in_epoch = False
