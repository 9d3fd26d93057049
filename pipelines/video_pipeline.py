"""Video-file pipeline for temporal Hide-and-Seek: encoded videos -> every frame decoded -> F_total frames
sampled uniformly -> temporal HaS (training only).

Codecs (DALI 2.4 `fn.decoders.video`): on the CPU VP8, VP9 and MJPEG (the libavcodec inside DALI's wheel has
no H.264 / HEVC decoder); with device="gpu" (NVDEC) also H.264, HEVC, AV1 and MPEG-4. Whole videos are decoded
before sampling, so memory grows with video length: cut long videos into clips first.
"""
from __future__ import annotations

from typing import Optional, Sequence

import nvidia.dali.fn as fn
from nvidia.dali import Pipeline, pipeline_def

from dali_has import TemporalHaSConfig, hide_and_seek_temporal
from pipelines.options import dali_device_id
from pipelines.sequence_reader import read_rows
from pipelines.temporal_sampling import sample_uniformly


def video_pipeline(paths: Sequence[str], *, frames: int, batch_size: int, train: bool,
                   has: Optional[TemporalHaSConfig] = None, seed: Optional[int] = None, shard_id: int = 0,
                   num_shards: int = 1, num_threads: int = 1, device: str = "cpu",
                   device_id: Optional[int] = None) -> Pipeline:
    """A DALI pipeline with outputs (uint8 video [frames, H, W, 3] "FHWC", row of the file in `paths`);
    `pipelines.SequenceLoader(pipeline, labels)` makes it a PyTorch iterable.

    has: temporal HaS settings with the fill on the 0..255 pixel scale (e.g. the data set's mean RGB);
        applied when train=True, never when train=False. device="gpu" decodes with NVDEC.
    """
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device={device!r}; expected 'cpu' or 'gpu'")
    if not paths:
        raise ValueError("paths is empty; give at least one video file")
    return _graph(list(paths), frames, train, has if train else None, shard_id, num_shards, device,
                  batch_size=batch_size, num_threads=num_threads, seed=seed,
                  device_id=dali_device_id(device, device_id))


@pipeline_def
def _graph(paths: list, frames: int, train: bool, has: Optional[TemporalHaSConfig], shard_id: int,
           num_shards: int, device: str):
    encoded, rows = read_rows(paths, shuffle=train, shard_id=shard_id, num_shards=num_shards)
    video = fn.decoders.video(encoded, device="mixed" if device == "gpu" else "cpu")
    video = sample_uniformly(video, frames)
    if has is not None:
        video = hide_and_seek_temporal(video, segment=has.segment, p_hide=has.p_hide, fill=has.fill)
    return video, rows
