"""Temporal Hide-and-Seek (paper §3.2) composed of DALI built-in operators.

For sequences whose leading axis is the frame axis (`FHWC` / `FCHW` video, `FC` / `TC` feature sequences).
DALI 2.4 data nodes carry no static layout, dtype or rank, so everything that depends on them is computed in
the graph at run time from the sequence's shape and `layout` property (both CPU nodes, also for GPU input:
mask and fill shapes are small and shape arguments must live on the CPU).

Per sample: ceil(F / segment) coin flips shaped [n, 1] -> broadcast against a [1, segment] row of ones ->
[n, segment], flattened: frame f gets the coin of segment f // segment -> cut to F frames (last segment
clipped) -> reshaped to [F, 1, ..., 1] so it broadcasts over every other axis -> blend
`x * (1 - m) + fill * m` (exact: 0 * x + fill == fill, 1 * x + 0 == x).
"""
from __future__ import annotations

import numpy as np
import nvidia.dali.fn as fn
import nvidia.dali.types as types

from dali_has.blend import blend
from dali_has.spec import PAPER_P_HIDE, Fill
from dali_has.temporal_spec import TemporalHaSConfig


def hide_and_seek_temporal(sequences, *, segment: int, p_hide: float = PAPER_P_HIDE, fill: Fill = 0.0):
    """Hide random segments of `segment` frames in every sequence of a DALI batch (training only).

    sequences: a DALI node whose samples have the frame axis first, e.g. FHWC video from
        `fn.decoders.video` or FC / TC features; on the CPU or the GPU; any numeric dtype, blended in float64
        (so 64-bit integers beyond 2**53 come back rounded to the nearest float64).
    segment: frames per segment, anchored at frame 0; the last segment is clipped to the sequence.
    p_hide: probability that a segment is hidden.
    fill: value of hidden frames, a scalar or one per entry of the layout's `C` axis (channels of video,
        features of FC / TC sequences): the dataset-mean frame / feature, applied at float32 precision. A fill
        per channel needs that `C` axis: on data without a layout DALI fails the batch in its multiplication,
        without naming the layout; with another count of values than the `C` axis has, in its reshape ("Input and
        output samples must occupy the same size in bytes"), without naming `fill`.
        Integer sequences get it rounded half-to-even, as the numpy oracle rounds it.

    Returns a node of the same shape, dtype and layout. Masks are new every iteration and reproducible for
    a fixed pipeline seed.
    """
    cfg = TemporalHaSConfig(segment, p_hide, fill)
    return apply_frame_mask(sequences, draw_frame_mask(sequences, cfg), cfg)


def draw_frame_mask(sequences, cfg: TemporalHaSConfig):
    """A CPU node of uint8 [F] frame masks (1 = hidden), constant within each `cfg.segment`-frame segment."""
    shape = sequences.shape(dtype=types.INT32)
    frames = shape[0:1]
    count = (frames + (cfg.segment - 1)) // cfg.segment
    coins = fn.random.coin_flip(probability=cfg.p_hide, shape=fn.cat(count, _int32([1])), dtype=types.UINT8)
    per_frame = coins * types.Constant(np.ones((1, cfg.segment), dtype=np.uint8), device="cpu")
    return fn.reshape(per_frame, shape=count * cfg.segment)[0:shape[0]]


def apply_frame_mask(sequences, frame_mask, cfg: TemporalHaSConfig):
    """Give every value of the frames where `frame_mask` (uint8 [F], 1 = hidden) is set `cfg.fill`."""
    shape = sequences.shape(dtype=types.INT32)
    layout = sequences.property("layout")
    # The frame axis must lead (F or T; data without a layout is taken as frames first): with CFHW or HWC the
    # mask hid channels or rows, silently. Another layout makes the frame count 0 in the reshape below, which
    # fails the batch ("Input and output samples must occupy the same size in bytes", from this reshape).
    leading = fn.cat(layout, types.Constant(np.array([ord("F")], dtype=np.uint8), device="cpu"))[0:1]
    frames_first = fn.cast((leading == ord("F")) | (leading == ord("T")), dtype=types.INT32)
    # [F, 1, ..., 1]: as many axes as the sequence, so the mask broadcasts over everything but frames.
    mask = fn.reshape(frame_mask, shape=fn.cat(shape[0:1] * frames_first, shape[1:] * 0 + 1))
    # float64 on the CPU: exact for every dtype that video and feature sequences come in (float32 would round
    # float64 and large int32 values).
    return blend(sequences, mask, cfg.fill, layout, compute_dtype=types.FLOAT64)


def _int32(values) -> types.Constant:
    return types.Constant(np.array(values, dtype=np.int32), device="cpu")
