"""Video files through DALI's decoder, uniform frame sampling and temporal Hide-and-Seek (CPU; GPU under `gpu`).

The test videos are raw MJPEG streams (JPEG frames back to back, written with Pillow): DALI 2.4 decodes MJPEG
on the CPU and the GPU, and no encoder package is needed.
"""
import io

import numpy as np
import pytest
from PIL import Image

from dali_has import TemporalHaSConfig, reference
from pipelines.sequence_loader import SequenceLoader
from pipelines.temporal_sampling import uniform_frame_indices
from pipelines.video_pipeline import video_pipeline

DEVICES = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)]
FILL = (1, 2, 3)


def write_mjpeg(path, frames, height=24, width=32):
    """Frame i is flat grey 10 * i + 20, so a decoded frame tells its index despite JPEG rounding."""
    with open(path, "wb") as f:
        for i in range(frames):
            buf = io.BytesIO()
            Image.new("RGB", (width, height), (10 * i + 20,) * 3).save(buf, format="JPEG", quality=95)
            f.write(buf.getvalue())


@pytest.mark.parametrize("device", DEVICES)
def test_video_frames_are_sampled_uniformly_and_hidden_by_segment(tmp_path, device):
    lengths = [9, 17, 12]
    paths = []
    for i, length in enumerate(lengths):
        paths.append(str(tmp_path / f"v{i}.mjpeg"))
        write_mjpeg(paths[-1], length)
    has = TemporalHaSConfig(segment=2, p_hide=0.5, fill=FILL)
    hidden_seen = 0
    loader = SequenceLoader(video_pipeline(paths, frames=6, batch_size=3, train=True, has=has, seed=2,
                                           device=device), labels=np.arange(3))
    for _ in range(3):
        for batch in loader:
            assert batch.sequences.shape[1:] == (6, 24, 32, 3)
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
    loader = SequenceLoader(video_pipeline([path], frames=10, batch_size=1, train=False,
                                           has=TemporalHaSConfig(1, p_hide=1.0, fill=FILL)), labels=[0])
    (batch,) = list(loader)
    np.testing.assert_allclose(batch.sequences[0].float().mean(dim=(1, 2, 3)).numpy(),
                               10 * np.arange(10) + 20, atol=3)
