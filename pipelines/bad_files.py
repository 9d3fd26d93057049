"""Turn a DALI pipeline failure caused by an input file into an error that names the file.

DALI names the file when the *reader* fails (missing or zero-byte file: "File mapping failed: PATH"), but a
*decoder* failure only says e.g. "nvImageCodec failure: '#3'" and the pipeline is dead, so the loader cannot
ask which sample it was. We find it ourselves: list the shard's files with a reader-only copy of the pipeline's
reader, decode them in chunks with the same decoder, and split failing chunks in halves down to single files.
That is one decode pass over the shard, paid only on this error path, with a progress bar.
"""
from __future__ import annotations

import math
import os
import re
from typing import Optional

import numpy as np
from nvidia.dali import Pipeline, fn, pipeline_def
from tqdm import tqdm

from pipelines.decoder import decoder_kwargs
from pipelines.settings import ImageOptions, PipelineOptions
from pipelines.reader import READER_NAME

# nvimgcodecStatus_t values (nvimgcodec.h) that DALI's decoders report as "nvImageCodec failure: '#N'".
_CODEC_STATUS = {3: "corrupt or truncated image data", 4: "not an image format the decoder supports"}
_MAPPING_FAILED = re.compile(r"File mapping failed: (.+)")
_CODEC_FAILURE = re.compile(r"nvImageCodec failure: '#(\d+)'")
# Files decoded per check pipeline before bisecting. Small because DALI 2.4's CPU decoder can crash the process
# on a batch of ~32+ files that holds a file of an unknown format (seen with text and GIF named .jpg).
_CHUNK = 16


class UnreadableImageError(RuntimeError):
    """An input file could not be read or decoded; `paths` lists the culprits found."""

    def __init__(self, message: str, paths: list[str]):
        super().__init__(message)
        self.paths = paths


def explain(error: RuntimeError, options: PipelineOptions, image: ImageOptions,
            reader_kwargs: dict) -> Optional[UnreadableImageError]:
    """The UnreadableImageError behind a DALI pipeline error, or None when the error is not about a file
    (or no file of the shard fails on its own)."""
    message = str(error)
    named = _MAPPING_FAILED.search(message)
    if named:
        path = named.group(1).strip()
        return _error([(path, "missing, empty or unreadable file")], options, image)
    if "decoders." not in message:  # not a decoder failure (e.g. out of memory): nothing to locate
        return None
    bad = find_undecodable(shard_files(options, image, reader_kwargs), options, image)
    return _error(bad, options, image) if bad else None


def shard_files(options: PipelineOptions, image: ImageOptions, reader_kwargs: dict) -> list[str]:
    """Paths of the shard's files, as the pipeline's reader sees them (reading only, no decoding)."""
    pipe = _listing_graph(reader_kwargs, **options.pipeline_kwargs())
    pipe.build()
    shard_padded = pipe.reader_meta(READER_NAME)["epoch_size_padded"] // options.num_shards  # equal for all shards
    batches = math.ceil(shard_padded / options.batch_size)
    base = os.path.dirname(image.data) if image.is_file_list else image.data  # source_info is relative
    files: dict[str, None] = {}  # ordered set: the shard's padding repeats its last file
    for _ in range(batches):
        (sources,) = pipe.run()
        for source in sources:
            files[os.path.join(base, np.array(source).tobytes().decode())] = None
    return list(files)


def find_undecodable(paths: list[str], options: PipelineOptions, image: ImageOptions) -> list[tuple[str, str]]:
    """(path, reason) for each file the pipeline's decoder cannot decode."""
    bad = []
    chunks = [paths[i:i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    for chunk in tqdm(chunks, desc="DALI failed to decode a file; locating it", unit="chunk", leave=False):
        bad += _bisect(chunk, options, image)
    return bad


def _bisect(paths: list[str], options: PipelineOptions, image: ImageOptions) -> list[tuple[str, str]]:
    reason = _decode_error(paths, options, image)
    if reason is None:
        return []
    if len(paths) == 1:
        return [(paths[0], reason)]
    half = len(paths) // 2
    return _bisect(paths[:half], options, image) + _bisect(paths[half:], options, image)


def _decode_error(paths: list[str], options: PipelineOptions, image: ImageOptions) -> Optional[str]:
    """None if every file decodes, else DALI's reason in words."""
    pipe: Pipeline = _decode_graph(paths, options, image, **dict(options.pipeline_kwargs(), batch_size=len(paths)))
    try:
        pipe.build()
        pipe.run()
        return None
    except RuntimeError as error:
        return _reason(str(error))
    finally:
        del pipe


@pipeline_def
def _listing_graph(reader_kwargs: dict):
    encoded, _ = fn.readers.file(**reader_kwargs)
    return fn.get_property(encoded, key="source_info")


@pipeline_def
def _decode_graph(paths: list[str], options: PipelineOptions, image: ImageOptions):
    encoded, _ = fn.readers.file(files=paths)
    return fn.decoders.image(encoded, **decoder_kwargs(options.device, image))


def _reason(message: str) -> str:
    status = _CODEC_FAILURE.search(message)
    if status and int(status.group(1)) in _CODEC_STATUS:
        return _CODEC_STATUS[int(status.group(1))]
    # DALI's own wording: the line(s) after "encountered:", without the C++ context.
    detail = message.split("encountered:")[-1].split("C++ context")[0].strip()
    return detail.splitlines()[0] if detail else "decoding failed"


def _error(bad: list[tuple[str, str]], options: PipelineOptions, image: ImageOptions) -> UnreadableImageError:
    folder = os.path.dirname(image.data) if image.is_file_list else image.data
    listed = "\n".join(f"  {path}: {reason}" for path, reason in bad[:20])
    more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
    return UnreadableImageError(
        f"DALI could not use {len(bad)} input file(s) of shard {options.shard_id}:\n{listed}{more}\n"
        f"Run `dali-has scan {folder} --write-list FILE` to check every file and write a list of the usable "
        "ones, then pass FILE as the loader's data.",
        [path for path, _ in bad])
