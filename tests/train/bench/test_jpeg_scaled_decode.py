"""`python -m train.bench.jpeg_scaled_decode`: which scale a window may be decoded at, and a tiny run. Nothing
here asserts a speed: the script reports speeds, the tests check what it computes and writes."""
import json
import math

import pytest
from PIL import Image

from train.bench import jpeg_scaled_decode


@pytest.mark.parametrize("window, scales, expected", [
    ((500, 460), jpeg_scaled_decode.POWER_OF_TWO, 0.5),
    ((447, 1000), jpeg_scaled_decode.POWER_OF_TWO, 1.0),
    ((300, 300), [m / 8 for m in range(1, 8)], 0.75),  # 300 * 5/8 = 187.5 < 224 <= 300 * 6/8
    ((224, 5000), [m / 8 for m in range(1, 8)], 1.0),
])
def test_the_reduced_scale_keeps_the_window_at_least_224(window, scales, expected):
    assert jpeg_scaled_decode.reduced_scale(*window, scales) == expected


def test_pil_draft_decodes_at_half_size(tiny_sets):
    path = tiny_sets["originals"][0]
    with Image.open(path) as img:
        size = img.size
    assert jpeg_scaled_decode.pil_decode(path.read_bytes(), 0.5) == tuple(math.ceil(s / 2) for s in size)


def test_the_scaled_decode_research_writes_its_answer(tiny_sets, tmp_path, monkeypatch):
    monkeypatch.setattr(jpeg_scaled_decode, "image_sets", lambda images: tiny_sets)
    out = tmp_path / "r.json"
    jpeg_scaled_decode.main(["--images", "8", "--windows-per-image", "3", "--repeats", "1", "--json", str(out)])
    report = json.loads(out.read_text())
    for entry in report["sets"].values():
        assert entry["windows"] == 24 and 0 <= entry["share_half_or_less_applies"] <= 1
    assert report["sets"]["longer256"]["share_half_or_less_applies"] == 0  # a 256-px image has no 448-px window
    assert report["dali_exposes_scaled_decoding"] is False
