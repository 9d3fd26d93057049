"""`SequenceLoader`: a sequence pipeline (features or video) as a PyTorch iterable, on the same core as the image
loader (`pipelines.loader.EpochLoader`): one epoch per `for`, every file of the shard exactly once, the last
batch partial, a fresh pipeline when a `for` stopped early.

It does not share the image loader's error diagnosis, which decodes files as images and would blame every `.npy`
or video.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import NamedTuple, Optional

import numpy as np
import torch
from nvidia.dali import Pipeline

from pipelines.loader import EpochLoader
from pipelines.sequence_reader import READER_NAME
from pipelines.settings import PipelineOptions


class SequenceBatch(NamedTuple):
    sequences: torch.Tensor  # [B, F_total, ...]: features [B, F, D] or video [B, F, H, W, C]
    labels: torch.Tensor  # int64 [B], classes
    rows: torch.Tensor  # int64 [B] on the CPU, rows of the files in the pipeline's list (for ground truth)


class SequenceLoader(EpochLoader):
    """Iterable of `SequenceBatch`es from a pipeline whose outputs are (sequences, rows) and whose reader is
    `pipelines.sequence_reader.read_rows`; `labels[row]` is the class of each file (one per file).

    define: makes the pipeline for given options, e.g.
        `lambda o: video_pipeline(paths, o, frames=16, train=True)`; `feature_loader` makes one for a feature
        index, with its settings.
    settings: what else decides the batches (JSON-like values, as `EpochLoader`'s): a saved state holds them, with
        the labels, and `load_state_dict` refuses a state whose settings differ.
    """

    def __init__(self, define: Callable[[PipelineOptions], Pipeline], options: PipelineOptions, labels,
                 settings: Optional[dict] = None):
        labels = np.asarray(labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels of shape {labels.shape} and dtype {labels.dtype}; expected one whole-number "
                             "class per file")
        labels = labels.astype(np.int64)
        self._labels = torch.as_tensor(labels)
        super().__init__(define, options, ["sequences", "rows"], READER_NAME,
                         {"labels": hashlib.sha256(labels.tobytes()).hexdigest(), **(settings or {})})
        if len(labels) != self.dataset_size:
            self.close()
            raise ValueError(f"{len(labels)} labels for {self.dataset_size} files; give one label per file")

    def _convert(self, batch: dict) -> SequenceBatch:
        sequences, rows = batch["sequences"], batch["rows"].cpu()
        return SequenceBatch(sequences, self._labels[rows].to(sequences.device), rows)

