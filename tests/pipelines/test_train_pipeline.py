"""The training pipeline's augmentations: normalization, dtype/layout, flips, Hide-and-Seek last."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dali_has import fused
from pipelines import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageOptions,
    PipelineOptions,
    TrainAugment,
    has_fill,
    make_loader,
    train_pipeline,
)

DEVICES = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)]
COLOUR = (200, 100, 50)
MEAN, STD = (100.0, 100.0, 100.0), (50.0, 25.0, 10.0)
EXPECTED = torch.tensor([(c - m) / s for c, m, s in zip(COLOUR, MEAN, STD)])  # (2, 0, -5)
TOLERANCE = torch.tensor([2.5 / s for s in STD])  # JPEG may shift a constant colour by a level or two


def write_copies(folder: Path, image: Image.Image, copies: int) -> Path:
    """One image listed `copies` times with labels 0..copies-1: a file list of identical samples."""
    folder.mkdir(parents=True, exist_ok=True)
    image.save(folder / "image.jpg", quality=100)
    (folder / "list.txt").write_text("".join(f"image.jpg {i}\n" for i in range(copies)))
    return folder / "list.txt"


@pytest.fixture(scope="module")
def constant(tmp_path_factory) -> Path:
    return write_copies(tmp_path_factory.mktemp("constant"), Image.new("RGB", (30, 20), COLOUR), 5)


@pytest.fixture(scope="module")
def half_black_half_white(tmp_path_factory) -> Path:
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    pixels[:, 16:] = 255
    return write_copies(tmp_path_factory.mktemp("halves"), Image.fromarray(pixels), 24)


def batches(data, **kwargs):
    kwargs = {"train": True, "batch_size": 4, "crop": 16, "num_threads": 1, "seed": 0, **kwargs}
    images = [x for x, _ in make_loader(data, **kwargs)]
    return torch.cat(images).cpu().float()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_constant_colour_normalizes_to_the_expected_value_in_every_dtype_and_layout(constant, device, dtype,
                                                                                    layout):
    loader = make_loader(constant, train=True, batch_size=4, crop=12, mean=MEAN, std=STD, dtype=dtype,
                         layout=layout, device=device, num_threads=1)
    images = torch.cat([x for x, _ in loader])
    assert images.dtype == dtype
    assert images.shape == ((5, 3, 12, 12) if layout == "NCHW" else (5, 12, 12, 3))
    channels_last = images.float().cpu() if layout == "NHWC" else images.float().cpu().permute(0, 2, 3, 1)
    assert torch.all((channels_last - EXPECTED).abs() <= TOLERANCE)


@pytest.mark.gpu
@pytest.mark.untried_kernel
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_the_fused_operator_as_the_gpu_tail_normalizes_and_hides(constant, layout):
    if not fused.gpu_available():
        pytest.skip(f"the plugin's CUDA kernels cannot run here: {fused.gpu_unavailable_reason()}")
    fill = (9.0, -9.0, 9.0)  # outside what the normalized colour can become
    augment = TrainAugment(has={"patch_sizes": [4], "p_hide": 0.5, "fill": fill}, resize_impl="fused")
    loader = make_loader(constant, train=True, batch_size=4, crop=12, mean=MEAN, std=STD, dtype=torch.float16,
                         layout=layout, device="gpu", num_threads=1, augment=augment)
    assert b"dali_has__ResizeMirrorNormalizeHide" in loader.pipeline.serialize()
    images = torch.cat([x for x, _ in loader]).float().cpu()
    channels_last = images if layout == "NHWC" else images.permute(0, 2, 3, 1)
    hidden = (channels_last == torch.tensor(fill)).all(dim=-1)
    assert 0 < hidden.float().mean() < 1
    assert torch.all((channels_last[~hidden] - EXPECTED).abs() <= TOLERANCE)


def test_flip_happens_about_half_the_time(half_black_half_white):
    # The crop covers the whole image, so a sample is the image or its mirror image, nothing in between.
    loader = make_loader(half_black_half_white, train=True, batch_size=8, crop=32,
                         augment=TrainAugment(random_area=(1.0, 1.0), random_aspect_ratio=(1.0, 1.0)),
                         mean=(0, 0, 0), std=(255, 255, 255), seed=0,
                         num_threads=1)
    images = torch.cat([x for _ in range(2) for x, _ in loader])  # 48 samples over two epochs
    left, right = images[..., :16], images[..., 16:]
    flipped = (left > 0.9).all(dim=(1, 2, 3)) & (right < 0.1).all(dim=(1, 2, 3))
    unflipped = (left < 0.1).all(dim=(1, 2, 3)) & (right > 0.9).all(dim=(1, 2, 3))
    assert torch.all(flipped ^ unflipped)
    assert 12 <= int(flipped.sum()) <= 36  # Binomial(48, 1/2): mean 24, sd 3.5


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_hide_and_seek_with_p_hide_1_fills_every_pixel(constant, device, layout):
    fill = (0.25, -0.5, 1.0)
    images = batches(constant, device=device, layout=layout, has={"patch_sizes": [8], "p_hide": 1.0, "fill": fill})
    channel_axis = 1 if layout == "NCHW" else -1
    shape = [1, 1, 1, 1]
    shape[channel_axis] = 3
    assert torch.equal(images, torch.tensor(fill).view(shape).expand_as(images))


def test_hide_and_seek_runs_last_on_the_normalized_image(constant):
    # The fill for the data set's mean colour, after ImageNet normalization, equals the normalized colour
    # itself: on an image of that colour, hidden and visible pixels must be indistinguishable.
    fill = has_fill(COLOUR, IMAGENET_MEAN, IMAGENET_STD)
    hidden = batches(constant, has={"patch_sizes": [4], "p_hide": 0.5, "fill": fill})
    plain = batches(constant)
    assert torch.allclose(hidden, plain, atol=3 / 57)
    missed = batches(constant, has={"patch_sizes": [4], "p_hide": 0.5, "fill": 0.0})  # a wrong fill shows
    assert (missed == 0).float().mean() > 0.25


def test_has_fill_is_the_data_mean_in_normalized_units():
    assert has_fill(IMAGENET_MEAN) == pytest.approx((0.0, 0.0, 0.0))
    assert has_fill((120, 110, 100), mean=(100, 100, 100), std=(10, 20, 50)) == pytest.approx((2.0, 0.5, 0.0))
    with pytest.raises(ValueError, match="std="):
        has_fill((1, 2, 3), std=(1, 0, 1))


def test_train_pipeline_is_a_dali_pipeline_with_chw_images_and_scalar_int64_labels(constant):
    pipe = train_pipeline(PipelineOptions(batch_size=2, num_threads=1, seed=0), ImageOptions(data=constant, crop=8))
    pipe.build()
    images, labels = pipe.run()
    assert images.layout() == "CHW" and images.as_tensor().shape() == [2, 3, 8, 8]
    assert np.array(labels.as_tensor()).dtype == np.int64 and labels.as_tensor().shape() == [2]


def test_augment_may_be_a_dict_of_its_settings(constant):
    """A dict failed deep inside the graph with AttributeError: 'dict' object has no attribute 'shuffle_buffer'."""
    def graph(augment):
        options = PipelineOptions(batch_size=2, num_threads=1, seed=0)
        return train_pipeline(options, ImageOptions(data=constant, crop=8), augment).serialize()

    settings = {"has": {"patch_sizes": [4], "p_hide": 0.5}, "flip_probability": 0.0}
    assert graph(settings) == graph(TrainAugment.from_dict(settings)) != graph(None) == graph(TrainAugment())
    with pytest.raises(ValueError, match="augment=0.5; expected a pipelines.TrainAugment or a dict"):
        graph(0.5)


@pytest.mark.parametrize("resize_impl, has_impl, plugin_op", [
    ("builtin", "composed", None), ("builtin", "fused", b"dali_has__HideAndSeek"),
    ("auto", "composed", None),  # asking for the composition keeps the built-in chain
    ("auto", "auto", b"dali_has__ResizeMirrorNormalizeHide"), ("fused", "auto", b"dali_has__ResizeMirrorNormalizeHide"),
])
def test_resize_and_has_impl_pick_the_operators(constant, resize_impl, has_impl, plugin_op):
    if plugin_op is not None and not fused.load():
        pytest.skip(f"fused plugin cannot be built here: {fused.unavailable_reason()}")
    has = {"patch_sizes": [4], "p_hide": 1.0, "fill": 0.5}
    loader = make_loader(constant, train=True, batch_size=4, crop=8, num_threads=1, seed=0,
                         augment=TrainAugment(has=has, has_impl=has_impl, resize_impl=resize_impl))
    graph = loader.pipeline.serialize()
    assert [op for op in (b"dali_has__HideAndSeek", b"dali_has__ResizeMirrorNormalizeHide") if op in graph] == \
        ([plugin_op] if plugin_op else [])
    assert torch.all(torch.cat([x for x, _ in loader]) == 0.5)
    with pytest.raises(ValueError, match="has_impl='fast'"):
        make_loader(constant, train=True, batch_size=4, augment={"has": has, "has_impl": "fast"})


def test_flip_probability_zero_never_mirrors_and_bad_values_are_named(tmp_path):
    import numpy as np
    from PIL import Image

    from pipelines import make_loader

    (tmp_path / "a").mkdir()
    img = np.zeros((32, 32, 3), np.uint8)
    img[:, :16] = 255  # left half white: a mirror puts it on the right
    for i in range(6):
        Image.fromarray(img).save(tmp_path / "a" / f"{i}.png")
    loader = make_loader(str(tmp_path), train=True, batch_size=6, crop=32, mean=(0, 0, 0), std=(1, 1, 1),
                         augment=TrainAugment(random_area=(1.0, 1.0), random_aspect_ratio=(1.0, 1.0),
                                              flip_probability=0.0))
    for _ in range(3):
        images, _ = next(iter(loader))
        assert (images[:, :, :, :8] > 200).all() and (images[:, :, :, 24:] < 50).all()
    with pytest.raises(ValueError, match="flip_probability=1.5"):
        make_loader(str(tmp_path), train=True, batch_size=2, augment={"flip_probability": 1.5})


@pytest.fixture(scope="module")
def noise_png_and_npy(tmp_path_factory) -> tuple[Path, Path]:
    """The same 40x60 noise images as lossless PNGs and as decoded pixels (.npy), one file list each."""
    root = tmp_path_factory.mktemp("stored")
    rng = np.random.default_rng(0)
    for i in range(4):
        pixels = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{i}.png")
        np.save(root / f"{i}.npy", pixels)
    for suffix in ("png", "npy"):
        (root / f"{suffix}.txt").write_text("".join(f"{i}.{suffix} {i}\n" for i in range(4)))
    return root / "png.txt", root / "npy.txt"


@pytest.mark.parametrize("device", DEVICES)
def test_decoded_pixels_train_like_the_same_pixels_decoded_from_png(noise_png_and_npy, device):
    # A crop window of the whole image (area 1, the image's aspect ratio) and no flip: only the source differs.
    whole = TrainAugment(random_area=(1.0, 1.0), random_aspect_ratio=(1.5, 1.5), flip_probability=0.0)
    png, npy = (batches(data, augment=whole, device=device, crop=24) for data in noise_png_and_npy)
    assert png.shape == (4, 3, 24, 24) and torch.equal(png, npy)
