"""Test helper: an ImageNet-style tree holding one file of every kind `dali-has scan` must recognise."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

_rng = np.random.default_rng(0)


def image(mode: str = "RGB", size: tuple[int, int] = (40, 30)) -> Image.Image:
    pixels = _rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def jpeg_bytes(im: Image.Image | None = None, **save_args) -> bytes:
    out = io.BytesIO()
    (im or image()).save(out, "JPEG", **save_args)
    return out.getvalue()


def patch_jpeg_size(data: bytes, height: int, width: int) -> bytes:
    """The same JPEG with its frame header (SOF0) saying height x width."""
    data = bytearray(data)
    i = 2
    while data[i + 1] != 0xC0:
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    data[i + 5:i + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def cut_in_image_data(data: bytes) -> bytes:
    """A JPEG cut halfway through its entropy-coded data: headers intact, no end-of-image marker."""
    scan = data.index(b"\xff\xda")
    return data[:scan + (len(data) - scan) // 2]


def undecodable_jpeg(data: bytes) -> bytes:
    """A complete JPEG without its quantization tables (DQT segments): its header parses and it ends in its
    end-of-image marker, so it passes the listing check, and only decoding fails ("Quantization table 0x00 was
    not defined")."""
    out, i = bytearray(data[:2]), 2
    while data[i + 1] != 0xDA:
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if data[i + 1] != 0xDB:
            out += data[i:i + 2 + length]
        i += 2 + length
    return bytes(out + data[i:])


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    return jpeg_bytes(exif=exif)


def _formatted(fmt: str, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    image(mode).save(out, fmt)
    return out.getvalue()


def make_bad_tree(root: Path) -> dict[str, set[tuple[str, str]]]:
    """Write the files under `root/<class>/`; returns {relative path: {(severity, kind), ...}} expected of scan."""
    good = jpeg_bytes()
    files = {
        "good/plain.jpg": (good, set()),
        "good/plain2.JPEG": (jpeg_bytes(), set()),
        "good/gray.jpg": (jpeg_bytes(image("L")), {("note", "grayscale")}),
        "good/progressive.jpg": (jpeg_bytes(progressive=True), {("note", "progressive")}),
        "good/rotated.jpg": (_exif_rotated(), {("note", "exif-rotated")}),
        "good/cmyk.jpg": (jpeg_bytes(image("CMYK")), {("warning", "cmyk")}),
        "good/png.jpg": (_formatted("PNG"), {("warning", "wrong-extension")}),
        "bad/zero.jpg": (b"", {("error", "empty")}),
        "bad/cut-mid-scan.jpg": (good[: len(good) // 2], {("error", "truncated")}),
        "bad/no-eoi.jpg": (good[:-2], {("error", "truncated")}),
        "bad/no-quantization-table.jpg": (undecodable_jpeg(good), {("error", "undecodable")}),
        "bad/text.jpg": (b"hello, I am not an image\n", {("error", "not-an-image")}),
        "bad/gif.jpg": (_formatted("GIF"), {("error", "unsupported-format")}),
        "bad/height0.jpg": (patch_jpeg_size(good, 0, 40), {("error", "bad-dimensions")}),
        "bad/width0.jpg": (patch_jpeg_size(good, 30, 0), {("error", "bad-dimensions")}),
        "bad/side65535.jpg": (patch_jpeg_size(good, 65535, 65535), {("error", "bad-dimensions")}),
        "bad/bomb.jpg": (patch_jpeg_size(good, 30000, 30000), {("error", "too-large")}),
    }
    for name, (data, _) in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {name: expected for name, (_, expected) in files.items()}
