"""Video files through DALI's decoder, uniform frame sampling and temporal Hide-and-Seek (CPU; GPU under `gpu`).

CPU tests use raw MJPEG streams (JPEG frames back to back, written with Pillow), which DALI 2.4's CPU decoder
reads with no encoder package needed. The GPU (NVDEC) test uses data/grey16_128x96_h264.mp4: 16 frames, 128x96,
H.264 baseline, frame i flat grey 10 * i + 20, made with ffmpeg (one PNG per frame, then
`ffmpeg -framerate 8 -i f%02d.png -c:v libx264 -pix_fmt yuv420p -profile:v baseline -g 16 -bf 0`). H.264 is a
codec every NVDEC decodes and 128x96 is above its minimum frame size; DALI's CPU decoder cannot read H.264.
"""
import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dali_has import TemporalHaSConfig, reference
from pipelines.sequence_loader import SequenceLoader
from pipelines.settings import PipelineOptions
from pipelines.video_pipeline import video_pipeline
from tests.pipelines.frame_sampling import uniform_frame_indices

FILL = (1, 2, 3)
H264 = Path(__file__).parent / "data" / "grey16_128x96_h264.mp4"


def write_mjpeg(path, frames, height=24, width=32):
    """Frame i is flat grey 10 * i + 20, so a decoded frame tells its index despite JPEG rounding."""
    with open(path, "wb") as f:
        for i in range(frames):
            buf = io.BytesIO()
            Image.new("RGB", (width, height), (10 * i + 20,) * 3).save(buf, format="JPEG", quality=95)
            f.write(buf.getvalue())


def test_video_frames_are_sampled_uniformly_and_hidden_by_segment(tmp_path):
    lengths = [9, 17, 12]
    paths = []
    for i, length in enumerate(lengths):
        paths.append(str(tmp_path / f"v{i}.mjpeg"))
        write_mjpeg(paths[-1], length)
    has = TemporalHaSConfig(segment=2, p_hide=0.5, fill=FILL)
    hidden_seen = 0
    loader = SequenceLoader(lambda o: video_pipeline(paths, o, frames=6, train=True, has=has),
                            PipelineOptions(batch_size=3, seed=2), labels=np.arange(3))
    for _ in range(3):
        for batch in loader:
            assert batch.sequences.shape[1:] == (6, 24, 32, 3) and batch.sequences.dtype == torch.uint8
            for row, video in zip(batch.rows.tolist(), batch.sequences.cpu().numpy()):
                hidden = (video == FILL).all(axis=(1, 2, 3))
                reference.infer_segments(hidden, 2)
                hidden_seen += hidden.sum()
                grey = video[~hidden].mean(axis=(1, 2, 3))
                expected = 10 * uniform_frame_indices(lengths[row], 6)[~hidden] + 20
                np.testing.assert_allclose(grey, expected, atol=3)
    assert 0 < hidden_seen < 3 * 3 * 6


def test_evaluation_never_hides(tmp_path):
    path = str(tmp_path / "v.mjpeg")
    write_mjpeg(path, 10)
    has = TemporalHaSConfig(1, p_hide=1.0, fill=FILL)
    loader = SequenceLoader(lambda o: video_pipeline([path], o, frames=10, train=False, has=has),
                            PipelineOptions(batch_size=1), labels=[0])
    (batch,) = list(loader)
    np.testing.assert_allclose(batch.sequences[0].float().mean(dim=(1, 2, 3)).numpy(),
                               10 * np.arange(10) + 20, atol=3)


@pytest.mark.parametrize("paths, has, said", [
    ("v.mjpeg", None, "give a list"),  # a string was split into one-letter paths
    ([], None, "give a list"),
    (["v.mjpeg"], [2], r"has=\[2\]; expected None, a dali_has.TemporalHaSConfig or a dict of its settings"),
    (["v.mjpeg"], {"segments": 2}, r"unknown temporal Hide-and-Seek option\(s\) \['segments'\]"),
    ([b"caf\xe9.mjpeg".decode("utf-8", "surrogateescape")], None, "is not UTF-8"),
])
def test_video_pipeline_refuses_a_path_string_and_settings_of_the_wrong_kind(paths, has, said):
    with pytest.raises(ValueError, match=said):
        video_pipeline(paths, PipelineOptions(batch_size=1), frames=4, train=True, has=has)


@pytest.mark.parametrize("make, said", [(lambda path: None, "does not exist"), (Path.mkdir, "is a folder"),
                                         (Path.touch, "is empty"), (os.mkfifo, "is not a regular file")])
def test_a_path_that_is_not_a_video_file_is_named_when_the_pipeline_is_defined(tmp_path, make, said):
    """DALI said "File mapping failed: PATH" at the first batch, or nothing at all for an empty file."""
    make(tmp_path / "v.mjpeg")
    with pytest.raises(ValueError, match=f"video '.*v.mjpeg' {said}; give the paths of video files"):
        video_pipeline([str(tmp_path / "v.mjpeg")], PipelineOptions(batch_size=1), frames=4, train=True)


def test_a_video_loader_with_checkpointing_is_refused_saying_why(tmp_path):
    write_mjpeg(str(tmp_path / "v.mjpeg"), 2)  # DALI failed in the constructor with "not implemented"
    with pytest.raises(ValueError, match="DALI's video decoder has no checkpoints"):
        video_pipeline([str(tmp_path / "v.mjpeg")], PipelineOptions(batch_size=1, checkpointing=True), frames=2,
                       train=True)


def test_labels_must_be_one_class_per_file(tmp_path):
    path = str(tmp_path / "v.mjpeg")
    write_mjpeg(path, 2)
    for labels, said in [([0, 1], "2 labels for 1 files"), ([[0, 1]], "one whole-number class per file"),
                         ([0.5], "one whole-number class per file")]:
        with pytest.raises(ValueError, match=said):
            SequenceLoader(lambda o: video_pipeline([path], o, frames=2, train=False), PipelineOptions(batch_size=1),
                           labels)


@pytest.mark.gpu
def test_nvdec_decodes_h264_and_temporal_hide_and_seek_keeps_uint8():
    has = TemporalHaSConfig(segment=2, p_hide=0.5, fill=(1.5, 2.5, 3.0))
    loader = SequenceLoader(lambda o: video_pipeline([str(H264)], o, frames=8, train=True, has=has),
                            PipelineOptions(batch_size=1, seed=3, device="gpu"), labels=[0])
    hidden_seen = 0
    for _ in range(4):
        (batch,) = list(loader)
        video = batch.sequences
        assert video.is_cuda and video.dtype == torch.uint8 and video.shape == (1, 8, 96, 128, 3)
        video = video[0].cpu().numpy()
        hidden = (video == (2, 2, 3)).all(axis=(1, 2, 3))  # the fill rounded half-to-even
        reference.infer_segments(hidden, 2)
        hidden_seen += hidden.sum()
        grey = video[~hidden].mean(axis=(1, 2, 3))
        np.testing.assert_allclose(grey, 10 * uniform_frame_indices(16, 8)[~hidden] + 20, atol=3)
    assert 0 < hidden_seen < 4 * 8
