"""EXIF orientation: DALI's decoder turns every format upright as the UPRIGHT table says, and boxes turn with it."""
from __future__ import annotations

import io

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def, types
from PIL import Image

from pipelines.orientation import ORIENTATION, UPRIGHT, exif_orientation, upright_boxes, upright_size

ORIENTATIONS = range(1, 9)
STORED = np.zeros((32, 48, 3), dtype=np.uint8)  # stored 48 wide, 32 high; one block, asymmetric every way
STORED[3:11, 5:21] = (255, 128, 0)
BLOCK = (5, 3, 21, 11)  # (x0, y0, x1, y1) along pixel edges


def encoded(fmt: str, orientation: int, pixels: np.ndarray = STORED) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    options = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}.get(fmt, {})
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt, exif=exif.tobytes(), **options)
    return out.getvalue()


def upright_by_pil(orientation: int, pixels: np.ndarray = STORED) -> np.ndarray:
    image = Image.fromarray(pixels)
    return np.asarray(image.transpose(UPRIGHT[orientation]) if orientation in UPRIGHT else image)


def dali_decoded(data: list[bytes]) -> list[np.ndarray]:
    @pipeline_def(batch_size=len(data), num_threads=1, device_id=None)
    def decode():
        encoded_batch = fn.external_source(source=lambda: [np.frombuffer(d, np.uint8) for d in data], batch=True)
        return fn.decoders.image(encoded_batch, device="cpu", output_type=types.RGB)

    pipe = decode()
    pipe.build()
    (images,) = pipe.run()
    return [np.array(image) for image in images]


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP", "JPEG"])
def test_dali_decodes_each_format_upright_as_the_table_turns_it(fmt):
    values = [*ORIENTATIONS, 0, 9]  # outside 1-8: as stored, for DALI as for exif_orientation
    images = dali_decoded([encoded(fmt, o) for o in values])
    for orientation, image in zip(values, images):
        expected = upright_by_pil(orientation)
        assert image.shape == expected.shape, orientation
        if fmt == "JPEG":  # lossy: the block's place, not the bits
            assert np.abs(image.astype(int) - expected).mean() < 4, orientation
        else:
            np.testing.assert_array_equal(image, expected, err_msg=str(orientation))


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_boxes_turn_with_the_image(orientation):
    upright = upright_by_pil(orientation)
    rows, cols = np.nonzero(upright[..., 0])
    assert upright_boxes([BLOCK], (48, 32), orientation) == [(cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)]
    assert upright_size((48, 32), orientation) == (upright.shape[1], upright.shape[0])


@pytest.mark.parametrize("value, expected", [(6, 6), (1, 1), (0, 1), (9, 1), (None, 1)])
def test_orientation_outside_1_to_8_is_as_stored(value, expected):
    exif = Image.Exif()
    if value is not None:
        exif[ORIENTATION] = value
    out = io.BytesIO()
    Image.fromarray(STORED).save(out, "PNG", exif=exif.tobytes())
    with Image.open(out) as image:
        assert exif_orientation(image) == expected
