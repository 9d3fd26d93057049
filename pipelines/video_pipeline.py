"""Video-file pipeline for temporal Hide-and-Seek: encoded videos -> every frame decoded -> F_total frames
sampled uniformly -> temporal HaS (training only).

Codecs (DALI 2.4 `fn.decoders.video`): on the CPU VP8, VP9 and MJPEG (the libavcodec inside DALI's wheel has
no H.264 / HEVC decoder); with device="gpu" (NVDEC) also H.264, HEVC, AV1 and MPEG-4. Whole videos are decoded
before sampling, so memory grows with video length: cut long videos into clips first. A batch is one dense
tensor, so every video must have the same frame size (DALI stops with "IsDenseTensor" otherwise, naming no
file): resize videos to one size when preparing them.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Optional, Union

import nvidia.dali.fn as fn
from nvidia.dali import Pipeline, pipeline_def

from dali_has import TemporalHaSConfig, hide_and_seek_temporal
from pipelines.sequence_reader import check_name, read_rows
from pipelines.settings import PipelineOptions
from pipelines.temporal_sampling import sample_uniformly


def video_pipeline(paths: Sequence[str], options: PipelineOptions, *, frames: int, train: bool,
                   has: Union[None, TemporalHaSConfig, dict] = None) -> Pipeline:
    """A DALI pipeline (not built yet) with outputs (uint8 video [frames, H, W, 3] "FHWC", row of the file in
    `paths`); `pipelines.SequenceLoader(define, options, labels)` makes it a PyTorch iterable (DALI's video
    decoder has no checkpoints, so such a loader has no `state_dict`).

    has: temporal HaS settings (a TemporalHaSConfig or a dict of its settings) with the fill on the 0..255 pixel
        scale (e.g. the data set's mean RGB); applied when train=True, never when train=False.
    options.device="gpu" decodes with NVDEC.
    """
    if isinstance(paths, (str, bytes, os.PathLike)) or not paths:
        raise ValueError(f"paths={paths!r}; give a list of one or more video files")
    has = TemporalHaSConfig.given(has)
    if options.checkpointing:  # DALI failed in the constructor with "not implemented"
        raise ValueError("checkpointing=True: DALI's video decoder has no checkpoints, so a video loader cannot "
                         "save its state; leave checkpointing off")
    for path in paths:  # DALI said "File mapping failed: PATH" at the first batch, or nothing for an empty file
        check_name(path)
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            what = ("is empty" if os.path.isfile(path) else "is a folder" if os.path.isdir(path) else
                    "is not a regular file" if os.path.exists(path) else "does not exist")
            raise ValueError(f"video {path!r} {what}; give the paths of video files")
    return _video_graph(list(paths), options, frames, has if train else None, train,
                  **options.pipeline_kwargs(options.pipeline_seed))


@pipeline_def
def _video_graph(paths: list, options: PipelineOptions, frames: int, has: Optional[TemporalHaSConfig], train: bool):
    encoded, rows = read_rows(paths, options, shuffle=train)
    video = fn.decoders.video(encoded, device="mixed" if options.device == "gpu" else "cpu")
    video = sample_uniformly(video, frames)
    if has is not None:
        video = hide_and_seek_temporal(video, segment=has.segment, p_hide=has.p_hide, fill=has.fill)
    return video, rows
