"""EXIF orientation as DALI's image decoders apply it: the stored pixels are turned upright before anything else
sees them (`adjust_orientation`'s default; DALI 2.4 does so for JPEG, PNG, WebP and TIFF alike, and reports the
upright shape). Shared by `dali-has prepare`, which stores the upright pixels, `dali-has scan`, which notes
rotated files, and evaluation, which turns boxes drawn on the stored pixels with their image."""
from __future__ import annotations

from collections.abc import Iterable

from PIL import Image

ORIENTATION = 0x0112  # EXIF tag
# PIL transpositions that turn an image stored with orientation N upright (as ImageOps.exif_transpose); 1 = as
# stored, and so is any value outside 1-8.
UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}
SWAPS_AXES = frozenset({5, 6, 7, 8})


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation of an opened image (its header only is read): 2-8, or 1 for none or an invalid one."""
    value = image.getexif().get(ORIENTATION, 1)
    return value if value in UPRIGHT else 1


def upright_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """(width, height) of a stored `size` image once turned upright."""
    return size[::-1] if orientation in SWAPS_AXES else size


def upright_boxes(boxes: Iterable[tuple[float, float, float, float]], size: tuple[int, int],
                  orientation: int) -> list[tuple[float, float, float, float]]:
    """Boxes (x0, y0, x1, y1) on the stored pixels of a (width, height) = `size` image, on the image turned
    upright. Coordinates run along pixel edges (0..width), so a flip takes x to width - x."""
    width, height = size
    turn = {1: lambda x, y: (x, y), 2: lambda x, y: (width - x, y), 3: lambda x, y: (width - x, height - y),
            4: lambda x, y: (x, height - y), 5: lambda x, y: (y, x), 6: lambda x, y: (height - y, x),
            7: lambda x, y: (height - y, width - x), 8: lambda x, y: (y, width - x)}[orientation]
    out = []
    for x0, y0, x1, y1 in boxes:
        (a, b), (c, d) = turn(x0, y0), turn(x1, y1)
        out.append((min(a, c), min(b, d), max(a, c), max(b, d)))
    return out
