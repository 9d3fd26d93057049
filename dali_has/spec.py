"""Hide-and-Seek settings: one validated, immutable value shared by every implementation.

The rule (Singh et al., arXiv 1811.02545, §3.1): per sample draw a patch size S from `patch_sizes`
(S = 0: hide nothing), lay an S×S grid anchored at the top-left corner (edge cells clipped), hide each
cell independently iff u < p_hide with u ~ U[0, 1), and give hidden pixels the fill value on every channel.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields
from numbers import Real
from typing import ClassVar, Union

from dali_has import validate

Fill = Union[float, Sequence[float]]

PAPER_PATCH_SIZES = (0, 16, 32, 44, 56)  # paper's HaS-Mixed set for 224-pixel crops
PAPER_P_HIDE = 0.5
# Cells larger than any image (the listing check refuses images over 65,500 pixels a side) all hide alike, as one
# cell; the bound keeps every size and grid computation inside int32 in the operators.
MAX_PATCH_SIZE = 1 << 24


def grid_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """Cells of a top-left-anchored size×size grid: ceil(H/S) × ceil(W/S), edge cells clipped; (0, 0) for S = 0."""
    if size <= 0:
        return (0, 0)
    return (math.ceil(height / size), math.ceil(width / size))


class SettingsRecord:
    """What a frozen settings dataclass of this package shares: a dict form (JSON configs hold it), being given as
    one, and a repr with a single fill shown as the number it is."""

    WHAT: ClassVar[str]  # the settings' name in messages

    @classmethod
    def from_dict(cls, d: dict):
        """Build from a mapping (e.g. a JSON config); unknown keys are errors, and so are missing required ones."""
        given = validate.known_fields(cls.WHAT, d, cls)
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in given]
        if missing:  # Python's TypeError ("missing 1 required positional argument") named no settings
            raise ValueError(f"{cls.WHAT} settings {given!r} lack {missing}")
        return cls(**given)

    def to_dict(self) -> dict:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}

    @classmethod
    def given(cls, value):
        """What a `has=` argument may be: None (no hiding), one of these, or a dict of its settings."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls.from_dict(value)
        raise ValueError(f"has={value!r}; expected None, a dali_has.{cls.__name__} or a dict of its settings")

    def __repr__(self) -> str:
        shown = {key: value[0] if key == "fill" and len(value) == 1 else value for key, value in self.to_dict().items()}
        return f"{type(self).__name__}({', '.join(f'{key}={value}' for key, value in shown.items())})"


@dataclass(frozen=True, repr=False)
class HaSConfig(SettingsRecord):
    """Validated, immutable Hide-and-Seek parameters, shared by every implementation.

    Args:
        patch_sizes: non-empty set of grid cell sizes in pixels of the tensor being masked (a single size is
            allowed); 0 means "no hiding" for the samples that draw it.
        p_hide: probability that one cell is hidden, in [0, 1].
        fill: value of hidden pixels, a scalar or one value per channel (0.0 = the dataset mean after
            normalizing with that mean, see `pipelines.has_fill`).

    Raises:
        ValueError: a value is invalid; the message names it (NaN and infinite fills are refused).
    """

    WHAT: ClassVar[str] = "Hide-and-Seek"
    patch_sizes: tuple[int, ...] = PAPER_PATCH_SIZES
    p_hide: float = PAPER_P_HIDE
    fill: tuple[float, ...] = (0.0,)

    def __init__(self, patch_sizes: Sequence[int] | int = PAPER_PATCH_SIZES,
                 p_hide: float = PAPER_P_HIDE, fill: Fill = 0.0):
        object.__setattr__(self, "patch_sizes", _check_patch_sizes(patch_sizes))
        object.__setattr__(self, "p_hide", validate.probability("p_hide", p_hide))
        object.__setattr__(self, "fill", validate.numbers("fill", fill))

    def for_channels(self, channels: int) -> HaSConfig:
        """These settings with the fill given per channel (a scalar fill repeated)."""
        return HaSConfig(self.patch_sizes, self.p_hide, self.fill_for(channels))

    def fill_for(self, channels: int) -> tuple[float, ...]:
        """The fill as one value per channel; a scalar fill is repeated."""
        if len(self.fill) == 1:
            return self.fill * channels
        if len(self.fill) != channels:
            raise ValueError(f"fill has {len(self.fill)} values but the images have {channels} channels; "
                             "give a scalar or one value per channel")
        return self.fill


def _check_patch_sizes(patch_sizes) -> tuple[int, ...]:
    # Sizes may come as 16.0 from a JSON config or numpy: any whole number of pixels is accepted.
    sizes = validate.as_values(patch_sizes)
    if not sizes:
        raise ValueError(f"patch_sizes={patch_sizes!r}; give one size or a sequence of sizes, e.g. {PAPER_PATCH_SIZES}")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, Real) or not math.isfinite(s) or int(s) != s or not (
                0 <= s <= MAX_PATCH_SIZE):
            raise ValueError(f"patch_sizes contains {s!r}; sizes must be whole numbers of pixels from 0 (no "
                             f"hiding) to {MAX_PATCH_SIZE:,} (larger than any image: one cell)")
    return tuple(int(s) for s in sizes)
