"""PNG pictures people would rather look at than numbers: sample grids and CAM overlays with boxes."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dali_has import validate
from pipelines.own_files import open_own
from train.wsol.localization import LOC_IOU, box_iou

GREEN, RED = (40, 220, 40), (235, 40, 40)
MAX_PICTURE_PIXELS = 100_000_000  # 300 MB of RGB: far beyond a picture to look at
CAPTION_SIZE, TITLE_SIZE = 14, 16  # font pixels
COMPARISON_SCALE = 4  # cam_comparison enlarges each image this many times
CAM_PICTURE = "cams.png"  # where eval (in the run folder) and the demo write it


def to_uint8_images(batch, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo normalization of a [N, 3, H, W] batch (torch or numpy) -> uint8 [N, H, W, 3]."""
    x = np.asarray(batch.float().cpu() if hasattr(batch, "float") else batch, dtype=np.float32)
    x = x * np.asarray(std, np.float32)[None, :, None, None] + np.asarray(mean, np.float32)[None, :, None, None]
    return np.clip(np.rint(x), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def heatmap(cam: np.ndarray) -> np.ndarray:
    """A [H, W] map in [0, 1] -> uint8 RGB with a blue-cyan-yellow-red ramp (no plotting library needed)."""
    stops = np.array([[0, 0, 128], [0, 128, 255], [0, 230, 230], [255, 230, 0], [230, 0, 0]], np.float32)
    pos = np.clip(cam, 0, 1) * (len(stops) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    frac = (pos - lo)[..., None]
    return (stops[lo] * (1 - frac) + stops[lo + 1] * frac).astype(np.uint8)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    return (image.astype(np.float32) * (1 - alpha) + heatmap(cam).astype(np.float32) * alpha).astype(np.uint8)


def grid(tiles: Sequence[np.ndarray], columns: int, scale: int = 1, pad: int = 2) -> Image.Image:
    """Tile equally sized uint8 [H, W, 3] images into one picture, each enlarged `scale` times."""
    validate.positive_int("columns", columns)
    validate.positive_int("scale", scale)
    h, w = tiles[0].shape[:2]
    width, height = _grid_size(len(tiles), columns, h * scale, w * scale, pad)
    if width * height > MAX_PICTURE_PIXELS:  # scale=1000 ran out of memory
        raise ValueError(f"the picture would be {width} x {height} pixels; lower scale={scale} or columns={columns}")
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    for i, tile in enumerate(tiles):
        img = Image.fromarray(tile).resize((w * scale, h * scale), Image.NEAREST)
        sheet.paste(img, (pad + (i % columns) * (w * scale + pad), pad + (i // columns) * (h * scale + pad)))
    return sheet


def _grid_size(count: int, columns: int, tile_h: int, tile_w: int, pad: int) -> tuple[int, int]:
    """(width, height) of `grid`'s picture of `count` tiles."""
    return columns * (tile_w + pad) + pad, -(-count // columns) * (tile_h + pad) + pad


def check_comparison_size(examples: int, runs: int, side: int, scale: int = COMPARISON_SCALE) -> None:
    """Refuse, before an evaluation, a `cam_comparison` of `examples` images of `side` pixels for `runs` runs
    that `grid` would refuse only once they are drawn (ValueError naming `examples`)."""
    tile = side * scale
    width, height = _grid_size(examples * (1 + runs), 1 + runs, tile, tile, 2)
    if width * height > MAX_PICTURE_PIXELS:
        most = (MAX_PICTURE_PIXELS // width - 2) // (tile + 2)
        raise ValueError(f"examples={examples}: the picture of {runs} run(s) at {side}-pixel crops would be {width} x "
                         f"{height} pixels; give at most {most}")


def draw_boxes(tile: np.ndarray, boxes_and_colors, scale: int) -> np.ndarray:
    """Enlarge a tile and draw [x0, y0, x1, y1] boxes (in tile pixels) on it."""
    h, w = tile.shape[:2]
    img = Image.fromarray(tile).resize((w * scale, h * scale), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    for box, color in boxes_and_colors:
        x0, y0, x1, y1 = (float(v) * scale for v in box)
        draw.rectangle([x0, y0, x1 + scale - 1, y1 + scale - 1], outline=color, width=max(1, scale // 2))
    return np.asarray(img)


def save_png(image: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_own(path) as file:  # RUN/cams.png as a link overwrote the file it pointed to
        image.save(file, format="PNG")
    return path


def cam_comparison(examples_by_run: dict[str, list], path: str | Path, scale: int = COMPARISON_SCALE) -> Path:
    """One row per image: the input, then for each run its CAM overlay with the predicted box (red) and the
    true boxes (green), and the predicted box's IoU with the best-matching true box written on it (green when it
    counts as localized, IoU >= 0.5). A header row names the columns: "input", then the runs' names.
    Runs must hold examples of the same images in the same order."""
    runs = list(examples_by_run.values())
    tiles = []
    for row in zip(*runs):
        tiles.append(draw_boxes(row[0].image, [(b, GREEN) for b in row[0].true_boxes], scale))
        for ex in row:
            boxes = [(b, GREEN) for b in ex.true_boxes] + [(ex.predicted_box, RED)]
            ious = box_iou(ex.predicted_box, ex.true_boxes)  # no true box: the object lies outside the crop
            iou = float(ious.max()) if ious.numel() else 0.0
            tiles.append(_caption(draw_boxes(overlay(ex.image, ex.cam), boxes, scale), f"IoU {iou:.2f}",
                                  GREEN if iou >= LOC_IOU else RED))
    sheet = grid(tiles, columns=1 + len(runs))
    return save_png(_with_header(sheet, ["input", *examples_by_run], tile_width=tiles[0].shape[1]), path)


def _caption(tile: np.ndarray, text: str, color) -> np.ndarray:
    """`text` in `color` on a black band at the tile's top-left corner."""
    img = Image.fromarray(tile)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=CAPTION_SIZE)
    x0, y0, x1, y1 = draw.textbbox((3, 2), text, font=font)
    draw.rectangle([0, 0, x1 + 3, y1 + 2], fill=(0, 0, 0))
    draw.text((3, 2), text, fill=color, font=font)
    return np.asarray(img)


def _with_header(sheet: Image.Image, titles: Sequence[str], tile_width: int, pad: int = 2) -> Image.Image:
    """The sheet under a white band with one centred title per column (the layout of `grid`)."""
    font = ImageFont.load_default(size=TITLE_SIZE)
    probe = ImageDraw.Draw(sheet)
    height = max(probe.textbbox((0, 0), t, font=font)[3] for t in titles) + 8
    out = Image.new("RGB", (sheet.width, sheet.height + height), (255, 255, 255))
    out.paste(sheet, (0, height))
    draw = ImageDraw.Draw(out)
    for i, title in enumerate(titles):
        width = draw.textbbox((0, 0), title, font=font)[2]
        draw.text((pad + i * (tile_width + pad) + (tile_width - width) // 2, 4), title, fill=(0, 0, 0), font=font)
    return out
