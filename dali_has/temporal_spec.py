"""Temporal Hide-and-Seek settings (paper §3.2, Video-HaS): one validated, immutable value.

The rule: cut a sequence of F frames (or features) into segments of `segment` frames anchored at frame 0
(ceil(F / segment) segments, the last one clipped), hide each segment independently iff u < p_hide with
u ~ U[0, 1), and give every value of a hidden frame the fill (the dataset-mean frame/feature).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dali_has import validate
from dali_has.spec import PAPER_P_HIDE, Fill, SettingsRecord

# The composition builds a [segments, segment] mask per sample, so its memory grows with `segment` (2**30 took
# 22 GB and the process); a segment at least as long as the sequence hides it whole or not at all, and 65,536
# frames (36 minutes at 30 fps) is beyond any clip a network is trained on.
MAX_SEGMENT = 1 << 16


@dataclass(frozen=True, repr=False)
class TemporalHaSConfig(SettingsRecord):
    """Validated temporal Hide-and-Seek parameters.

    segment: frames per segment (F_segment), a whole number from 1 to MAX_SEGMENT.
    p_hide: probability that one segment is hidden, in [0, 1].
    fill: value of hidden frames, a scalar or one value per channel / feature (the layout's `C` axis);
        the dataset mean, or 0.0 for sequences normalized with that mean.
    """

    WHAT: ClassVar[str] = "temporal Hide-and-Seek"
    segment: int
    p_hide: float = PAPER_P_HIDE
    fill: tuple[float, ...] = (0.0,)

    def __init__(self, segment: int, p_hide: float = PAPER_P_HIDE, fill: Fill = 0.0):
        object.__setattr__(self, "segment", validate.whole_number("segment", segment, minimum=1,
                                                                   maximum=MAX_SEGMENT))
        object.__setattr__(self, "p_hide", validate.probability("p_hide", p_hide))
        object.__setattr__(self, "fill", validate.numbers("fill", fill))

