"""The validation pipeline: shorter-side resize + centre crop, the paper's 10 crops, determinism, no HaS; from
encoded images and from decoded pixels (.npy).

The images are lossless PNG noise whose shorter side equals the resize target, so resizing is the identity and
every crop can be compared pixel for pixel with numpy slicing (a window off by one pixel would not match).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def
from PIL import Image

from pipelines import make_loader
from pipelines.val_pipeline import TEN_CROP_POSITIONS, eval_resize, resized_crop

DEVICES = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)]
HEIGHTS_WIDTHS = [(40, 60), (64, 40), (40, 40)]  # landscape, portrait, square; shorter side 40
RESIZE, CROP = 40, 24
RAW = dict(mean=(0, 0, 0), std=(1, 1, 1))  # normalization off: outputs are the pixel values


@pytest.fixture(scope="module")
def noise(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    root = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(1)
    pixels = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in HEIGHTS_WIDTHS]
    gray = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    for i, p in enumerate(pixels):
        Image.fromarray(p).save(root / f"{i}.png")
        np.save(root / f"{i}.npy", p)  # the same pixels stored decoded (`dali-has prepare --encoding npy`)
    Image.fromarray(gray).save(root / "gray.png")
    pixels.append(np.repeat(gray[..., None], 3, axis=2))  # decoded to RGB
    np.save(root / "gray.npy", pixels[-1])
    for suffix in ("png", "npy"):
        (root / f"{suffix}.txt").write_text("".join(f"{i}.{suffix} {i}\n" for i in range(3)) + f"gray.{suffix} 3\n")
    return root / "png.txt", pixels


def crop_of(pixels: np.ndarray, y: int, x: int) -> torch.Tensor:
    return torch.from_numpy(pixels[y:y + CROP, x:x + CROP].astype(np.float32)).permute(2, 0, 1)


def centre(pixels: np.ndarray) -> torch.Tensor:
    h, w, _ = pixels.shape
    return crop_of(pixels, round((h - CROP) / 2), round((w - CROP) / 2))


def val_batches(data, **kwargs):
    kwargs = {"train": False, "batch_size": 3, "crop": CROP, "resize": RESIZE, "num_threads": 1, **RAW, **kwargs}
    images, labels = zip(*make_loader(data, **kwargs))
    return torch.cat(images).cpu(), torch.cat(labels).cpu()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("stored", ["png", "npy"])
def test_centre_crop_of_the_resized_image_in_file_order(noise, device, stored):
    data, pixels = noise
    images, labels = val_batches(data.with_name(f"{stored}.txt"), device=device)
    assert labels.tolist() == [0, 1, 2, 3]
    for image, p in zip(images, pixels):
        assert torch.equal(image, centre(p))


def test_validation_is_deterministic_across_epochs_and_loaders(noise):
    data, _ = noise
    loader = make_loader(data, train=False, batch_size=3, crop=CROP, num_threads=1)  # default resize
    first = torch.cat([x for x, _ in loader])
    assert torch.equal(first, torch.cat([x for x, _ in loader]))
    again = make_loader(data, train=False, batch_size=3, crop=CROP, num_threads=2, seed=7)
    assert torch.equal(first, torch.cat([x for x, _ in again]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_ten_crops_are_corners_and_centre_then_their_mirror_images(noise, device, layout):
    data, pixels = noise
    images, _ = val_batches(data, ten_crop=True, device=device, layout=layout)
    assert images.shape == ((4, 10, 3, CROP, CROP) if layout == "NCHW" else (4, 10, CROP, CROP, 3))
    if layout == "NHWC":
        images = images.permute(0, 1, 4, 2, 3)
    for crops, p in zip(images, pixels):
        h, w, _ = p.shape
        corners = [(0, 0), (0, w - CROP), (h - CROP, 0), (h - CROP, w - CROP)]  # TL, TR, BL, BR as (y, x)
        expected = torch.stack([crop_of(p, y, x) for y, x in corners] + [centre(p)])
        assert torch.equal(crops[:5], expected)
        assert torch.equal(crops[5:], expected.flip(-1))


def test_hide_and_seek_never_runs_at_evaluation(noise):
    data, _ = noise
    with_has, _ = val_batches(data, has={"patch_sizes": [8], "p_hide": 1.0, "fill": -1.0})
    without, _ = val_batches(data)
    assert torch.equal(with_has, without)


def test_default_resize_keeps_the_usual_ratio():
    assert eval_resize(224) == 256
    assert eval_resize(64) == 73


@pytest.mark.parametrize("resize, message", [(200, "must be >= crop=224"), (10**6, "<= 8192"), (256.0, "256.0")])
def test_resize_is_checked_by_name(resize, message):
    """10**6 was accepted and died in std::bad_alloc when the pipeline was built."""
    with pytest.raises(ValueError, match=message):
        eval_resize(224, resize)


@pytest.mark.parametrize("pos", TEN_CROP_POSITIONS)
def test_each_crop_is_resized_from_its_source_region_as_if_the_whole_image_were_resized(pos):
    """The pipeline resizes only the region a crop covers (`resized_crop`); DALI resizing the whole image and
    cutting the crop out is the reference, on noise (any sub-pixel shift shows) of awkward sizes."""
    sizes = [(300, 457), (375, 500), (500, 333), (513, 512), (129, 128), (224, 900), (40, 4000), (3000, 2)]
    rng = np.random.default_rng(0)
    batch = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    resize, crop = 256, 224

    @pipeline_def(batch_size=len(batch), num_threads=1, device_id=None)
    def both():
        images = fn.external_source(source=lambda: batch, batch=True, layout="HWC")
        whole = fn.resize(images, resize_shorter=resize)
        reference = fn.crop(whole, crop=(crop, crop), crop_pos_x=pos[0], crop_pos_y=pos[1])
        return reference, resized_crop(images, resize, crop, pos)

    pipe = both()
    pipe.build()
    reference, ours = pipe.run()
    for i, size in enumerate(sizes):
        expected, got = np.array(reference[i]), np.array(ours[i])
        assert got.shape == expected.shape == (crop, crop, 3), size
        # uint8 rounding of values a float32 ROI moves by ~1e-4 pixel; noise changes by up to ~2.5 levels per
        # 0.01 pixel, so a real shift (scaling each axis by its rounded size moves up to 0.28 pixel) shows
        np.testing.assert_allclose(got.astype(int), expected, atol=1, err_msg=str(size))
