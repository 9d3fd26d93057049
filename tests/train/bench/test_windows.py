"""The micro-benchmarks' inputs: the image sets and random-resized-crop windows (`train.bench.windows`)."""
import numpy as np
from PIL import Image

from train.bench import windows as inputs


def test_the_small_set_is_the_same_images_at_a_longest_side_of_256(tiny_sets):
    assert len(tiny_sets["originals"]) == len(tiny_sets["longer256"]) == 8
    for original, small in zip(tiny_sets["originals"], tiny_sets["longer256"]):
        assert original.name == small.name
        with Image.open(original) as a, Image.open(small) as b:
            assert max(a.size) > 256 and max(b.size) == 256
            assert abs(a.width / a.height - b.width / b.height) < 0.01


def test_windows_follow_the_random_resized_crop_rule():
    rng = np.random.default_rng(0)
    height, width = 300, 450
    for _ in range(2000):
        top, left, h, w = inputs.random_resized_crop_window(rng, height, width)
        assert 0 <= top and top + h <= height and 0 <= left and left + w <= width
        assert 0.08 * height * width * 0.95 <= h * w <= height * width
        assert 3 / 4 * 0.95 <= w / h <= 4 / 3 * 1.05  # rounding to whole pixels


def test_a_window_that_never_fits_falls_back_to_the_clamped_centre():
    rng = np.random.default_rng(0)
    w = round(10 * 4 / 3)  # the widest allowed ratio, full height
    assert inputs.random_resized_crop_window(rng, 10, 1000) == (0, (1000 - w) // 2, 10, w)
