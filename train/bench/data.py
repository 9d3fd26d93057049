"""An ImageNet-like JPEG set for `dali-has bench`, generated once and cached.

What matters for input-pipeline speed is the decoder's work, so the files look like ImageNet's to a JPEG
decoder: 400-500 pixels wide, aspect ratios from 3:4 to 16:10, smooth shapes plus fine texture, quality 90,
40-150 KB each, ~80 KB on average (ImageNet's training JPEGs average ~110 KB at ~400×350). `train.wsol.synth`'s 64-pixel
images are far too cheap to decode to stand in for them. The content is meaningless: nothing is trained on it.

`bench_prepared` is that set after `dali-has prepare` (the same code users run), cached beside it
(`bench_prepared_shards`: as WebDataset shards); `tiny_jpegs`
is a large set of tiny files, for costs that grow with the number of files rather than their pixels (listing).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from dali_has import validate
from dali_has.cache import cache_root

VERSION = 1  # bump when the generator changes, so caches of older sets are not reused
CLASSES = 8
# 512 = a multiple of every power-of-two batch up to 512, so no epoch ends in a padded, partly wasted batch.
DEFAULT_IMAGES = 512
PREPARED_MAX_SIDE = 256


def bench_jpegs(images: int = DEFAULT_IMAGES, cache_dir: os.PathLike | str | None = None) -> Path:
    """The folder `<cache>/bench-jpegs-v<VERSION>-<images>/<class>/<nnnnn>.jpg`, generated if missing.

    Deterministic: image i is drawn from seed i.
    """
    validate.whole_number("images", images, minimum=CLASSES)  # one per class folder at least

    def write(folder: Path) -> None:
        for i in range(images):
            imagenet_like_image(np.random.default_rng(i)).save(_class_folder(folder, i, CLASSES) / f"{i:05d}.jpg",
                                                               quality=90)

    return cached(f"bench-jpegs-v{VERSION}-{images}", write, cache_dir)


def bench_prepared(images: int = DEFAULT_IMAGES, max_side: int = PREPARED_MAX_SIDE,
                   cache_dir: os.PathLike | str | None = None, encoding: str = "jpeg") -> Path:
    """`bench_jpegs(images)` after `dali-has prepare --max-side max_side --encoding encoding` (default settings
    otherwise), cached: the folder of the prepared images (same class folders and names)."""
    from pipelines.prepare import FORMAT_VERSION, PrepareSettings, prepare

    source = bench_jpegs(images, cache_dir)
    settings = PrepareSettings(max_side=max_side, encoding=encoding)
    name = f"{source.name}-prepared-v{FORMAT_VERSION}-{max_side}" + ("" if encoding == "jpeg" else f"-{encoding}")
    return cached(name, lambda folder: prepare(source, folder, settings, progress=False),  # a changed prepare is
                  cache_dir)                                                             # not reused


def bench_prepared_shards(images: int = DEFAULT_IMAGES, max_side: int = PREPARED_MAX_SIDE,
                          cache_dir: os.PathLike | str | None = None) -> Path:
    """The same as `bench_prepared`, written as WebDataset shards (`--webdataset`): the folder of the shards."""
    from pipelines.prepare import FORMAT_VERSION, PrepareSettings, prepare

    source = bench_jpegs(images, cache_dir)
    return cached(f"{source.name}-shards-v{FORMAT_VERSION}-{max_side}",
                  lambda folder: prepare(source, folder, PrepareSettings(max_side=max_side, webdataset=True),
                                         progress=False),
                  cache_dir)


def tiny_jpegs(images: int, side: int = 16, classes: int = 100, cache_dir: os.PathLike | str | None = None) -> Path:
    """`<cache>/tiny-jpegs-v<VERSION>-<images>x<side>/<class>/<nnnnnnn>.jpg`: `images` JPEGs of side×side
    pixels (random colours, each file a few hundred bytes) in `classes` class folders, generated if missing."""
    validate.whole_number("images", images, minimum=classes)
    rng = np.random.default_rng(0)

    def write(folder: Path) -> None:
        for i in range(images):
            pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(_class_folder(folder, i, classes) / f"{i:07d}.jpg", quality=90)

    return cached(f"tiny-jpegs-v{VERSION}-{images}x{side}", write, cache_dir)


def _class_folder(root: Path, i: int, classes: int) -> Path:
    folder = root / f"class_{i % classes}"
    folder.mkdir(exist_ok=True)
    return folder


def cached(name: str, write, cache_dir: os.PathLike | str | None) -> Path:
    """`<cache>/<name>`, made by `write(folder)` if missing. Written into a temporary folder and renamed into
    place when complete, so an interrupted run never leaves a partial set that later runs would trust."""
    cache = Path(cache_dir) if cache_dir is not None else cache_root()  # beside the compiled plugin
    target = cache / name
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=cache))
    try:
        write(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():  # else another process finished the same set first: use theirs
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def imagenet_like_image(rng: np.random.Generator) -> Image.Image:
    """Smooth colour shapes (a few random colours, bicubically enlarged), mid-scale blotches and grain."""
    width = int(rng.integers(400, 501))
    height = int(round(width / rng.uniform(0.75, 1.6)))
    coarse = rng.integers(0, 256, (int(rng.integers(3, 7)), int(rng.integers(3, 7)), 3), dtype=np.uint8)
    middle = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    pixels = (0.7 * _enlarge(coarse, width, height, Image.BICUBIC)
              + 0.3 * _enlarge(middle, width, height, Image.BILINEAR)
              + rng.normal(0.0, rng.uniform(7.0, 14.0), (height, width, 1)))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _enlarge(pixels: np.ndarray, width: int, height: int, resample) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize((width, height), resample), dtype=np.float32)
