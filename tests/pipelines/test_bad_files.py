"""Locating the files DALI failed on: each is decoded as its pipeline decodes it (encoded images or pixels)."""
import numpy as np

from pipelines import PipelineOptions
from pipelines.bad_files import find_undecodable
from tests.pipelines.bad_images import jpeg_bytes, undecodable_jpeg

OPTIONS = PipelineOptions(batch_size=4, num_threads=1)


def test_the_failing_images_are_named_and_the_good_ones_are_not(tmp_path):
    paths = []
    for i in range(5):
        paths.append(str(tmp_path / f"{i}.jpg"))
        (tmp_path / f"{i}.jpg").write_bytes(undecodable_jpeg(jpeg_bytes()) if i == 3 else jpeg_bytes())
    assert [path for path, _ in find_undecodable(paths, OPTIONS, progress=False)] == [paths[3]]


def test_decoded_pixels_are_read_as_pixels_not_as_images(tmp_path):
    paths = [str(tmp_path / f"{i}.npy") for i in range(3)]
    for path in paths:
        np.save(path, np.zeros((4, 5, 3), np.uint8))
    assert find_undecodable(paths, OPTIONS, pixels=True, progress=False) == []
