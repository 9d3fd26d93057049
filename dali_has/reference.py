"""Plain numpy Hide-and-Seek: the oracle that the DALI operators are tested against.

Drawing the randomness (`draw_cells`) is kept apart from applying it (`apply_mask`), so the apply step can be
compared pixel for pixel and the sampler checked statistically.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dali_has.spec import HaSConfig, grid_shape
from dali_has.temporal_spec import TemporalHaSConfig


def hiding_share(cfg: HaSConfig) -> float:
    """Expected fraction of hidden pixels: p_hide times the share of non-zero sizes (what the statistical tests
    compare the operators' outputs with)."""
    return cfg.p_hide * sum(s > 0 for s in cfg.patch_sizes) / len(cfg.patch_sizes)


def draw_cells(rng: np.random.Generator, height: int, width: int, cfg: HaSConfig) -> tuple[int, np.ndarray]:
    """Draw one sample's patch size and its per-cell hide decisions (True = hidden)."""
    size = int(rng.choice(cfg.patch_sizes))
    gh, gw = grid_shape(height, width, size)
    return size, rng.random((gh, gw)) < cfg.p_hide


def cells_to_mask(cells: np.ndarray, size: int, height: int, width: int) -> np.ndarray:
    """Expand a cell grid to a [H, W] boolean pixel mask (True = hidden); size 0 hides nothing."""
    if size == 0:
        return np.zeros((height, width), dtype=bool)
    expected = grid_shape(height, width, size)
    if cells.shape != expected:
        raise ValueError(f"cells has shape {cells.shape}, a {size}-pixel grid on {height}x{width} needs {expected}")
    # Pixel (y, x) lies in cell (y // size, x // size): memory of the mask's size, whatever the cells' size.
    return cells[np.arange(height)[:, None] // size, np.arange(width)[None, :] // size]


def apply_mask(image: np.ndarray, mask: np.ndarray, fill: float | Sequence[float], layout: str = "HWC") -> np.ndarray:
    """Give hidden pixels the fill on every channel; the result keeps the image's dtype.

    Integer images get the fill rounded to the nearest value of their dtype.
    """
    if layout not in ("HWC", "CHW"):
        raise ValueError(f"layout={layout!r}; expected 'HWC' or 'CHW'")
    channels = image.shape[2] if layout == "HWC" else image.shape[0]
    values = HaSConfig(fill=fill).fill_for(channels)
    if np.issubdtype(image.dtype, np.integer):  # clamped as Python integers: float64 cannot hold int64's largest
        info = np.iinfo(image.dtype)
        values = [min(max(int(np.rint(v)), info.min), info.max) for v in values]
    fill_c = np.asarray(values, dtype=image.dtype)
    out = image.copy()
    if layout == "HWC":
        out[mask] = fill_c
    else:
        out[:, mask] = fill_c[:, None]
    return out


def hide_and_seek(image: np.ndarray, rng: np.random.Generator, cfg: HaSConfig, layout: str = "HWC") -> np.ndarray:
    """Hide-and-Seek on one image: draw, then apply."""
    h, w = (image.shape[0], image.shape[1]) if layout == "HWC" else (image.shape[1], image.shape[2])
    size, cells = draw_cells(rng, h, w, cfg)
    return apply_mask(image, cells_to_mask(cells, size, h, w), cfg.fill, layout)


def infer_cells(mask: np.ndarray, patch_sizes: Sequence[int]) -> tuple[int, np.ndarray]:
    """Recover (size, cells) from a pixel mask that some size in `patch_sizes` produced.

    Raises ValueError when no allowed grid explains the mask exactly: the check that an operator's output
    is a union of top-left-anchored grid cells. Where several sizes explain it, the likeliest: 0 for an
    all-clear mask where allowed, else the largest (fewest cells drawn). Smallest first read every mask of
    size 32 as one of size 16 with the paper's sizes (a 32-cell is four 16-cells).
    """
    h, w = mask.shape
    if 0 in patch_sizes and not mask.any():
        return 0, np.zeros((0, 0), dtype=bool)
    for size in sorted(set(patch_sizes) - {0}, reverse=True):
        cells = mask[::size, ::size]  # each cell's top-left pixel decides the cell
        if np.array_equal(cells_to_mask(cells, size, h, w), mask):
            return size, cells
    raise ValueError(f"mask is not a union of grid cells for any size in {list(patch_sizes)}")


# Temporal Hide-and-Seek (paper §3.2): the image grid rule in one dimension, along the leading frame axis.

def draw_segments(rng: np.random.Generator, frames: int, cfg: TemporalHaSConfig) -> np.ndarray:
    """Draw one sequence's per-segment hide decisions (True = hidden): ceil(F / segment) segments."""
    count, _ = grid_shape(frames, 1, cfg.segment)
    return rng.random(count) < cfg.p_hide


def segments_to_frame_mask(hidden: np.ndarray, segment: int, frames: int) -> np.ndarray:
    """Expand per-segment decisions to a [F] frame mask (True = hidden); the last segment is clipped."""
    return cells_to_mask(np.asarray(hidden, dtype=bool)[:, None], segment, frames, 1)[:, 0]


def apply_frame_mask(sequence: np.ndarray, frame_mask: np.ndarray, fill: float | Sequence[float],
                     layout: str = "FC") -> np.ndarray:
    """Give every value of the hidden frames the fill; the result keeps the sequence's dtype.

    layout: one letter per axis, the frame axis first (e.g. "FC", "TC", "FHWC", "FCHW"); a per-channel fill
    runs along its `C` axis. Integer sequences get the fill rounded as `apply_mask` rounds it.
    """
    if len(layout) != sequence.ndim or layout[0] not in "FT":
        raise ValueError(f"layout={layout!r} must name the {sequence.ndim} axes of the sequence, "
                         "frames first ('F' or 'T')")
    if frame_mask.shape != sequence.shape[:1]:
        raise ValueError(f"frame_mask has shape {frame_mask.shape}, the sequence has {sequence.shape[0]} frames")
    fill = np.atleast_1d(np.asarray(fill, dtype=np.float64))
    if fill.size > 1 and "C" not in layout:
        raise ValueError(f"a fill with {fill.size} values needs a 'C' axis in layout={layout!r}")
    # Channels last, everything else flattened: [F, values per channel, C] is an HWC image whose rows are frames.
    channels_last = np.moveaxis(sequence, layout.index("C"), -1) if "C" in layout else sequence[..., None]
    rows = channels_last.reshape(len(frame_mask), -1, channels_last.shape[-1])
    pixel_mask = np.repeat(frame_mask[:, None], rows.shape[1], axis=1)
    out = apply_mask(rows, pixel_mask, tuple(fill), "HWC").reshape(channels_last.shape)
    return np.moveaxis(out, -1, layout.index("C")) if "C" in layout else out[..., 0]


def hide_and_seek_temporal(sequence: np.ndarray, rng: np.random.Generator, cfg: TemporalHaSConfig,
                           layout: str = "FC") -> np.ndarray:
    """Temporal Hide-and-Seek on one sequence: draw, then apply."""
    hidden = draw_segments(rng, sequence.shape[0], cfg)
    return apply_frame_mask(sequence, segments_to_frame_mask(hidden, cfg.segment, sequence.shape[0]),
                            cfg.fill, layout)


def infer_segments(frame_mask: np.ndarray, segment: int) -> np.ndarray:
    """Recover the per-segment decisions from a [F] frame mask.

    Raises ValueError when the mask is not a union of `segment`-frame segments anchored at frame 0.
    """
    try:
        _, cells = infer_cells(np.asarray(frame_mask, dtype=bool)[:, None], [segment])
    except ValueError:
        raise ValueError(f"frame mask is not a union of {segment}-frame segments anchored at frame 0") from None
    return cells[:, 0]
