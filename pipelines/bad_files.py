"""The one place that reads DALI's error messages and finds the input files behind a failure.

`read_dali_error` turns a DALI RuntimeError into a `DaliFailure`: which kind of failure it is (a file the reader
could not map, a decoder failure, no files, more shards than samples, anything else) and the path or detail
DALI gives. DALI names the file when its *reader* fails ("File mapping failed: PATH"), but a *decoder* failure
says only e.g. "nvImageCodec failure: '#3'" and the pipeline is dead, so nobody can ask which sample it was.

`DecodeCheck` answers that: it decodes encoded files with the pipeline's own decoder settings (`cpu` or `mixed`,
from `pipelines.decoder.decode`) in batches, and splits a failing batch in halves down to the single
files that fail. `dali-has scan` decodes every file with it; the loader and `dali-has mean` call
`find_undecodable` only after DALI failed, on the files that can have caused it.

Only files that passed `pipelines.file_check` reach these decoders: a file whose header DALI cannot parse can
crash DALI's batched decoder instead of raising (see there), while one whose header parses but whose data is bad
raises an ordinary error, which is what the bisection relies on.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
from tqdm import tqdm

from pipelines.decoder import decode
from pipelines.errors import UnreadableImageError
from pipelines.file_check import read_image_file
from pipelines.settings import ImageOptions, PipelineOptions

MAPPING_FAILED, DECODE, NO_FILES, SHARDS, OTHER = "file-mapping", "decode", "no-files", "shards", "other"
# Files decoded per batch while looking for the bad ones: a bisection of one batch with one bad file costs
# about 2 * log2(CHUNK) small decodes.
CHUNK = 64

# nvimgcodecStatus_t values (nvimgcodec.h) that DALI's decoders report as "nvImageCodec failure: '#N'".
_CODEC_STATUS = {3: "corrupt or truncated image data", 4: "not an image format the decoder supports"}
_MAPPING_FAILED = re.compile(r"File mapping failed: (.+)")
_CODEC_FAILURE = re.compile(r"nvImageCodec failure: '#(\d+)'")
_FAILED_SAMPLE = re.compile(r"Failed to decode sample #\d+ : ?(.*)")  # then the sample's source, when it has one
_DECODER_OPERATOR = re.compile(r"operator `nvidia\.dali\.fn\.(experimental\.)?decoders\.")
# fn.readers.numpy on a .npy file changed since the listing check read its header: (pattern, what it means).
_NPY_FAILURES = ((re.compile(r"Failed to read file: (\S+)"), "shorter than its .npy header says (cut short?)"),
                 (re.compile(r"File is not a numpy file\.* File: (\S+)"), "not a .npy file (no NumPy header)"))


@dataclass(frozen=True)
class DaliFailure:
    """What a DALI error was about: `kind` (MAPPING_FAILED, DECODE, NO_FILES, SHARDS, OTHER), the file when DALI
    names it (always for MAPPING_FAILED, sometimes for DECODE) and DALI's own words without traceback and C++
    context (for DECODE, the decoder's status in words)."""

    kind: str
    path: Optional[str]
    detail: str


def read_dali_error(error: BaseException) -> DaliFailure:
    """The kind of a DALI pipeline error and its essential words."""
    message = str(error)
    detail = _essential(message)
    if named := _MAPPING_FAILED.search(message):
        return DaliFailure(MAPPING_FAILED, named.group(1).strip(), "missing, empty or unreadable file")
    for pattern, what in _NPY_FAILURES:
        if named := pattern.search(message):
            return DaliFailure(DECODE, named.group(1), what)
    if "No files found" in message:
        return DaliFailure(NO_FILES, None, detail)
    if "requested number of shards" in message:
        return DaliFailure(SHARDS, None, detail)
    status, sample = _CODEC_FAILURE.search(message), _FAILED_SAMPLE.search(message)
    if _DECODER_OPERATOR.search(message) or status or sample:
        if status and int(status.group(1)) in _CODEC_STATUS:
            detail = _CODEC_STATUS[int(status.group(1))]
        elif sample:
            detail = _CODEC_STATUS[3]
        return DaliFailure(DECODE, (sample.group(1).strip() or None) if sample else None, detail)
    return DaliFailure(OTHER, None, detail)


def _essential(message: str) -> str:
    """The line(s) after DALI's "encountered:", without the C++ context and pipeline-state lines."""
    text = message.split("encountered:")[-1]
    keep = [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith(("C++ context", "Current pipeline object"))]
    return " ".join(keep) or message.strip()


class DecodeCheck:
    """Decodes encoded files as a pipeline with `options` and `image` would (`options.device`: "cpu" decodes on
    the CPU, "gpu" with the `mixed` decoder; pixels: the files hold decoded pixels) and names the ones that
    fail."""

    def __init__(self, options: PipelineOptions, image: Optional[ImageOptions] = None, *, batch_size: int = CHUNK,
                 pixels: bool = False):
        self._options, self._image, self._batch_size, self._pixels = options, image, batch_size, pixels
        self._pipe = None

    def failures(self, blobs: Sequence[bytes]) -> list[Optional[str]]:
        """For each encoded file: None when it decodes, else why not. A failing batch is split in halves."""
        if not blobs:
            return []
        if len(blobs) > self._batch_size:
            half = len(blobs) // 2
            return self.failures(blobs[:half]) + self.failures(blobs[half:])
        error = self._decode(blobs)
        if error is None:
            return [None] * len(blobs)
        if len(blobs) == 1:
            return [error]
        half = len(blobs) // 2
        return self.failures(blobs[:half]) + self.failures(blobs[half:])

    def _decode(self, blobs: Sequence[bytes]) -> Optional[str]:
        if self._pipe is None:
            self._pipe = self._build()
        try:
            self._pipe.feed_input("encoded", [np.frombuffer(blob, dtype=np.uint8) for blob in blobs])
            self._pipe.run()
            return None
        except RuntimeError as error:
            self._pipe = None  # DALI marks a pipeline invalid after an error: the next batch builds a new one
            return read_dali_error(error).detail

    def _build(self):
        pipe = decode_pipeline(self._options, self._image, self._batch_size, pixels=self._pixels)
        pipe.build()
        return pipe


def decode_pipeline(options: PipelineOptions, image: Optional[ImageOptions] = None, batch_size: int = CHUNK, *,
                    pixels: bool = False):
    """The (unbuilt) pipeline `DecodeCheck` feeds: encoded bytes in ("encoded"), decoded shapes out."""
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(**dict(options.pipeline_kwargs(), batch_size=batch_size, prefetch_queue_depth=1))
    def decode_batch():
        encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
        return decode(encoded, options.device, image, pixels=pixels).shape()  # the pixels stay inside DALI

    return decode_batch()


def find_undecodable(paths: Iterable[str], options: PipelineOptions, image: Optional[ImageOptions] = None, *,
                     pixels: bool = False, total: Optional[int] = None,
                     progress: bool = True) -> list[tuple[str, str]]:
    """(path, reason) for each file that cannot be read or that the decoder of `options`/`image` cannot decode
    (pixels: the files hold decoded pixels); files are read CHUNK at a time, so any number of them fits in
    memory."""
    check = DecodeCheck(options, image, pixels=pixels)
    bad: list[tuple[str, str]] = []
    chunk: list[tuple[str, bytes]] = []

    def flush():
        bad.extend((path, reason) for (path, _), reason in zip(chunk, check.failures([b for _, b in chunk]))
                   if reason is not None)
        chunk.clear()

    with tqdm(paths, total=total, desc="DALI failed on a file; locating it", unit="file", leave=False,
              disable=not progress) as bar:
        for path in bar:
            try:
                chunk.append((path, read_image_file(path)))
            except OSError as error:
                bad.append((path, f"cannot be read: {error.strerror or error}"))
            if len(chunk) == CHUNK:
                flush()
        flush()
    return bad


def unreadable_error(bad: list[tuple[str, str]], where: str, data: str) -> UnreadableImageError:
    """The error naming the files DALI could not use (`where`: e.g. "shard 0 of DATA")."""
    listed = "\n".join(f"  {path}: {reason}" for path, reason in bad[:20])
    more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
    return UnreadableImageError(
        f"DALI could not use {len(bad)} input file(s) of {where}:\n{listed}{more}\nRun `dali-has scan --data "
        f"{data} --write-list FILE` to check every file and write a list of the usable ones, then use FILE as "
        "the data.", [path for path, _ in bad])


def explain_shard_sample(error: RuntimeError) -> Optional[UnreadableImageError]:
    """The UnreadableImageError behind a failure to decode a sample of WebDataset shards, when DALI names it
    (`SHARD.tar:OFFSET:KEY`, as its CPU decoder does), else None: a sample the listing check passed
    (`file_check.check_shard`) whose data is bad behind a good header and end."""
    failure = read_dali_error(error)
    if failure.kind != DECODE or failure.path is None:
        return None
    return UnreadableImageError(
        f"DALI could not decode a sample of the WebDataset shards:\n  {failure.path}: {failure.detail}\n"
        "Rewrite the shards from the source images with `dali-has prepare --webdataset` (it checks every image "
        "and leaves out the bad ones), or remove the sample from its shard and rebuild the shard's index.",
        [failure.path])


def explain(error: RuntimeError, options: PipelineOptions, paths: Sequence[str], *, data: str, root: str,
            image: Optional[ImageOptions] = None, pixels: bool = False,
            progress: bool = True) -> Optional[UnreadableImageError]:
    """The UnreadableImageError behind a failure of a pipeline (`options`, decoder settings of `image`) that read
    `paths` of the dataset `data` (its reader's `file_root`: `root`; pixels: it holds decoded pixels), or None
    when the error is not about a file, or no file fails on its own."""
    failure = read_dali_error(error)
    where = f"shard {options.shard_id} of {data}" if options.num_shards > 1 else data
    if failure.kind not in (MAPPING_FAILED, DECODE):
        return None
    if failure.path is not None:  # DALI's source info: relative to the reader's file_root unless absolute
        return unreadable_error([(os.path.join(root, failure.path), failure.detail)], where, data)
    bad = find_undecodable(paths, options, image, pixels=pixels, total=len(paths), progress=progress)
    return unreadable_error(bad, where, data) if bad else None
