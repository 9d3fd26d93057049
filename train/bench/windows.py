"""What the micro-benchmarks feed: ImageNet-like JPEGs (the originals, 400-500 px wide, and copies re-encoded to
a longest side of 256 px, as fast loaders store ImageNet) and random-resized-crop windows of them.

The originals are `dali-has bench`'s cached set (`train.bench.data`); the 256-px copies are written once beside
it. Windows follow torchvision's RandomResizedCrop.get_params (10 attempts, then the central crop clamped to
the ratio range), with the training pipeline's area and ratio ranges.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.settings import RANDOM_AREA, RANDOM_ASPECT_RATIO
from train.bench.data import bench_jpegs, cached
from train.bench.timing import SEED

LONGER_SIDE = 256
QUALITY = 90


def image_sets(images: int, cache_dir: os.PathLike | str | None = None) -> dict[str, list[Path]]:
    """{"originals": JPEG paths, "longer256": the same images at a longer side of 256 px}, sorted alike.

    cache_dir: where the sets live (default: `dali-has bench`'s cache, see train.bench.data).
    """
    root = bench_jpegs(images, cache_dir)
    originals = sorted(root.rglob("*.jpg"))

    def write(folder: Path) -> None:
        for path in originals:
            target = folder / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(path) as img:
                scale = LONGER_SIDE / max(img.size)
                size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
                img.convert("RGB").resize(size, Image.LANCZOS).save(target, quality=QUALITY)

    small_root = cached(f"{root.name}-longer{LONGER_SIDE}", write, cache_dir)
    return {"originals": originals, "longer256": [small_root / p.relative_to(root) for p in originals]}


def random_resized_crop_window(rng: np.random.Generator, height: int, width: int, area=RANDOM_AREA,
                               ratio=RANDOM_ASPECT_RATIO) -> tuple[int, int, int, int]:
    """(top, left, h, w) of one random-resized-crop window, torchvision's algorithm."""
    total = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = total * rng.uniform(*area)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def decoded_windows(paths: list[Path], seed: int = SEED) -> list[np.ndarray]:
    """One random-resized-crop window per image, decoded (uint8 HWC RGB), as the decoder hands them on."""
    rng = np.random.default_rng(seed)
    out = []
    for path in paths:
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGB"))
        top, left, h, w = random_resized_crop_window(rng, *pixels.shape[:2])
        out.append(np.ascontiguousarray(pixels[top:top + h, left:left + w]))
    return out
