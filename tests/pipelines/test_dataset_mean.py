"""`pipelines.dataset_mean` against numpy over the same pixels, decoded by PIL."""
import numpy as np
import pytest
from PIL import Image

from pipelines.dataset_mean import dataset_mean, stats_from_sums
from pipelines.files import list_folder, write_file_list
from tests.pipelines.bad_images import jpeg_bytes, undecodable_jpeg


def pil_pixels(root):
    """Every image of the tree as PIL decodes it to RGB, in DALI reader order."""
    return [np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) for p in list_folder(root).paths()]


def numpy_stats(images):
    flat = np.concatenate([im.reshape(-1, 3) for im in images])
    return flat.mean(axis=0), flat.std(axis=0)


@pytest.fixture(scope="module")
def png_tree(tmp_path_factory):
    """PNGs of different sizes and modes, 5 images so batches of 2 leave a padded last batch.

    PNG is lossless, so DALI and PIL must agree bit for bit. The last image in reader order is small
    and white: if the padded copies of it were counted, the mean would move by whole units.
    """
    root = tmp_path_factory.mktemp("mean") / "data"
    rng = np.random.default_rng(1)
    specs = {"a/0.png": ((17, 9), "RGB"), "a/1.png": ((64, 48), "RGB"), "a/2.png": ((5, 31), "L"),
             "b/0.png": ((33, 20), "RGB")}
    for name, ((w, h), mode) in specs.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode).save(root / name)
    Image.new("RGB", (6, 4), (255, 255, 255)).save(root / "b/1.png")
    return root


@pytest.mark.parametrize("batch_size", [2, 5, 64])
def test_png_mean_and_std_exact(png_tree, batch_size):
    stats = dataset_mean(png_tree, batch_size=batch_size, num_threads=2, progress=False)
    images = pil_pixels(png_tree)
    mean, std = numpy_stats(images)
    assert stats.images == 5
    assert stats.pixels == sum(im.shape[0] * im.shape[1] for im in images)
    np.testing.assert_allclose(stats.mean, mean, rtol=0, atol=1e-9)
    np.testing.assert_allclose(stats.std, std, rtol=0, atol=1e-9)
    unit = stats.scaled(255)
    np.testing.assert_allclose(unit.mean, mean / 255, rtol=0, atol=1e-12)
    # The test can tell: a mean of per-image means, or counting the padded white image again, differs.
    assert np.abs(np.mean([im.mean(axis=(0, 1)) for im in images], axis=0) - mean).max() > 1
    assert np.abs(numpy_stats(images + [images[-1]] * 3)[0] - mean).max() > 1


def test_file_list_gives_the_same(png_tree, tmp_path):
    dataset = list_folder(png_tree)
    write_file_list(tmp_path / "list.txt", [(png_tree / n, label) for n, label in dataset.samples])
    assert dataset_mean(tmp_path / "list.txt", progress=False) == dataset_mean(png_tree, progress=False)


def test_jpeg_close_to_pil(tmp_path):
    # DALI (no fancy chroma upsampling by default) and PIL (fancy upsampling) both use libjpeg-turbo but
    # may differ by 1 per pixel value, so per-channel means may differ by at most 1.
    rng = np.random.default_rng(2)
    for i, size in enumerate([(40, 30), (23, 51), (64, 64)]):
        (tmp_path / "c").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(tmp_path / f"c/{i}.jpg")
    stats = dataset_mean(tmp_path, batch_size=2, progress=False)
    mean, std = numpy_stats(pil_pixels(tmp_path))
    np.testing.assert_allclose(stats.mean, mean, atol=1.0)
    np.testing.assert_allclose(stats.std, std, atol=1.0)


def test_stats_from_sums_exact_for_huge_counts():
    # 10**12 pixels of value 200 and 10**12 of value 201: float64 accumulation of x² would lose the 0.5 std.
    n = 10**12
    stats = stats_from_sums([200 * n + 201 * n] * 3, [200**2 * n + 201**2 * n] * 3, 2 * n, images=1)
    assert stats.mean == (200.5,) * 3
    assert stats.std == (0.5,) * 3


def test_bad_images_are_named(tmp_path):
    (tmp_path / "c").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "c/fine.png")
    (tmp_path / "c/text.jpg").write_text("not an image")
    # Refused when listed, before DALI sees it (a batch of 64 of such files crashes DALI 2.4's decoder).
    with pytest.raises(RuntimeError, match=r"(?s)c/text\.jpg: is not an image file.*dali-has scan"):
        dataset_mean(tmp_path, batch_size=64, progress=False)
    (tmp_path / "c/text.jpg").unlink()
    # A JPEG without quantization tables passes the listing check; DALI's decode fails and the file is found.
    (tmp_path / "c/undecodable.jpg").write_bytes(undecodable_jpeg(jpeg_bytes()))
    with pytest.raises(RuntimeError, match=r"(?s)c/undecodable\.jpg: corrupt or truncated.*dali-has scan"):
        dataset_mean(tmp_path, batch_size=64, progress=False)


@pytest.mark.parametrize("args, message", [
    ({"device": "tpu"}, "device='tpu'"), ({"batch_size": 0}, "batch_size"),
    ({"num_threads": -1}, "num_threads"),
])
def test_validates_parameters(png_tree, args, message):
    with pytest.raises(ValueError, match=message):
        dataset_mean(png_tree, progress=False, **args)


@pytest.mark.gpu
def test_gpu_matches_cpu_on_png(png_tree):
    # PNG is decoded on the host in `mixed` too, so the sums must match exactly.
    assert dataset_mean(png_tree, device="gpu", progress=False) == dataset_mean(png_tree, progress=False)
