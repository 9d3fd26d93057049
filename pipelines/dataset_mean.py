"""`dali-has mean`: per-channel mean and std of a dataset's pixels, decoded by DALI as training decodes them.

Every image is read once (the reader's epoch with `pad_last_batch=True`; the padded repeats of the
last sample are dropped), decoded to RGB (`cpu`, or `mixed` on a GPU), and reduced inside the pipeline
to per-channel sums of x and x² in uint64. Totals are kept as Python integers, so the result is exact
and pixel-weighted: a large image counts in proportion to its pixels, not as one mean among many.
The std is the population std over all pixels of the dataset (ddof 0).

Files are listed and checked as the loader does (`pipelines.file_check`): a file DALI's decoder must not see
(not an image, a header it cannot parse, a FIFO, ...) stops the run before decoding with an error naming it, and
so does a file that fails to decode (found by `pipelines.bad_files`).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from pipelines.bad_files import explain
from pipelines.decoder import decode
from pipelines.file_check import usable_dataset
from pipelines.files import Dataset, stores_pixels
from pipelines.settings import PASS_BATCH_SIZE, PipelineOptions


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel (R, G, B) statistics on the 0..255 scale; `scaled(255)` gives the 0..1 scale."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    images: int
    pixels: int

    def scaled(self, divisor: float) -> ChannelStats:
        return ChannelStats(tuple(m / divisor for m in self.mean), tuple(s / divisor for s in self.std),
                            self.images, self.pixels)


def stats_from_sums(sums, squares, pixels: int, images: int) -> ChannelStats:
    """Mean and population std from exact integer per-channel sums of x and x² over `pixels` pixels."""
    mean = tuple(s / pixels for s in sums)
    # n·Σx² − (Σx)² in integers: no cancellation error, however many pixels.
    std = tuple(math.sqrt((pixels * q - s * s) / pixels**2) for s, q in zip(sums, squares))
    return ChannelStats(mean, std, images, pixels)


def mean_pipeline(dataset: Dataset, options: PipelineOptions):
    """The (unbuilt) DALI pipeline whose outputs are per-image channel sums of x and x² and the image shapes."""
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(**options.pipeline_kwargs())
    def sums():
        encoded, _ = fn.readers.file(
            files=[name for name, _ in dataset.samples], file_root=str(dataset.root),
            pad_last_batch=True, name="reader",
        )
        images = decode(encoded, options.device, pixels=stores_pixels(dataset))
        # x² through a 256-entry table into uint16 (255² < 2**16, exact): on CPU this costs about half of
        # what widening to int32 and multiplying does. Sums accumulate in uint64 inside DALI.
        values = [float(v * v) for v in range(256)]
        squares = fn.lookup_table(images, keys=list(range(256)), values=values, dtype=types.UINT16)
        total = fn.reductions.sum(images, axes=[0, 1], dtype=types.UINT64)
        squares = fn.reductions.sum(squares, axes=[0, 1], dtype=types.UINT64)
        return total, squares, images.shape()

    return sums()


def dataset_mean(data: str | os.PathLike | Dataset, *, batch_size: int = PASS_BATCH_SIZE,
                 num_threads: int | None = None, device: str = "cpu", device_id: int | None = None,
                 progress: bool = True) -> ChannelStats:
    """Exact per-channel mean/std over every image of a folder tree or file list (each image once)."""
    options = PipelineOptions(batch_size=batch_size, num_threads=num_threads, device=device, device_id=device_id)
    dataset = usable_dataset(data, progress=progress)

    pipe = mean_pipeline(dataset, options)
    pipe.build()
    size = pipe.epoch_size("reader")
    sums, squares, pixels = [0, 0, 0], [0, 0, 0], 0
    with tqdm(total=size, unit="image", desc="mean", disable=not progress) as bar:
        for start in range(0, size, batch_size):
            try:
                outputs = pipe.run()
            except RuntimeError as error:
                # The reader reads in dataset order: the failed batch is these samples.
                batch = [str(dataset.root / name) for name, _ in dataset.samples[start:start + batch_size]]
                source = str(dataset.root) if isinstance(data, Dataset) else os.fspath(data)
                explained = explain(error, options, batch, data=source, root=str(dataset.root),
                                    pixels=stores_pixels(dataset), progress=progress)
                if explained is None:
                    raise
                raise explained from error
            total, square, shape = (np.asarray((out.as_cpu() if device == "gpu" else out).as_array())
                                    for out in outputs)
            valid = min(batch_size, size - start)  # the rest of the last batch repeats the last sample
            # uint64 column sums of one batch cannot overflow (< 2**64 up to ~65000 images of 65500²);
            # across batches Python integers take over.
            sums = [a + int(b) for a, b in zip(sums, total[:valid].sum(axis=0))]
            squares = [a + int(b) for a, b in zip(squares, square[:valid].sum(axis=0))]
            pixels += int((shape[:valid, 0] * shape[:valid, 1]).sum())
            bar.update(valid)
    return stats_from_sums(sums, squares, pixels, size)

