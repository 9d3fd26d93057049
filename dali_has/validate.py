"""Checks of user-given settings, shared by every package: each returns the value normalized (int, float, tuple)
or raises a `ValueError` that names the parameter, shows the value and says what is expected.

Python's bool is an int, so True is never accepted as a number; NaN and infinities are never accepted as numbers
(a NaN learning rate or fill would train silently into NaN weights).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any, Optional

import numpy as np

# The widest type images and features reach a model in here: a fill or feature beyond it becomes inf.
FLOAT32_MAX = float(np.finfo(np.float32).max)
# DALI holds labels as 32-bit signed integers (its readers and this plugin's file_label): 2**31 would silently
# become -2**31, 2**32 become 0.
MAX_LABEL = 2**31 - 1
# DALI seeds are 64-bit, and torch's too: a pipeline's seed + shard_id + its rebuild offsets must stay below 2**63.
MAX_SEED = 2**62


def whole_number(name: str, value: Any, *, minimum: int = 0, maximum: Optional[int] = None) -> int:
    """An integer in [minimum, maximum]; integral floats such as 16.0 are not integers here."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum or (
            maximum is not None and value > maximum):
        upper = f" and <= {maximum}" if maximum is not None else ""
        integral = isinstance(value, Real) and not isinstance(value, (bool, Integral)) and _finite(value) and \
            float(value).is_integer()
        why = f" (an int, not {type(value).__name__})" if integral else ""
        raise ValueError(f"{name}={value!r} must be a whole number >= {minimum}{upper}{why}")
    return int(value)


def positive_int(name: str, value: Any) -> int:
    """An integer >= 1."""
    return whole_number(name, value, minimum=1)


def number(name: str, value: Any, *, low: Optional[float] = None, high: Optional[float] = None,
           low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number within the given bounds (closed unless `low_open` / `high_open`)."""
    ok = not isinstance(value, bool) and isinstance(value, Real) and _finite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        bounds = _bounds(low, high, low_open, high_open)
        raise ValueError(f"{name}={value!r} must be{bounds} (a finite number)" if bounds else
                         f"{name}={value!r} must be a finite number")
    return float(value)


def probability(name: str, value: Any) -> float:
    """A probability in [0, 1]."""
    return number(name, value, low=0.0, high=1.0)


def number_range(name: str, value: Any, *, low: float = 0.0, high: Optional[float] = None,
                 low_open: bool = True) -> tuple[float, float]:
    """A (low, high) pair of finite numbers with `low` < (or <=) first <= second (<= `high`)."""
    pair = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else None
    try:
        if pair is None or len(pair) != 2:
            raise ValueError
        first = number(name, pair[0], low=low, high=high, low_open=low_open)
        second = number(name, pair[1], low=low, high=high, low_open=low_open)
        if first > second:
            raise ValueError
    except ValueError:
        raise ValueError(f"{name}={value!r}; expected (min, max) with min <= max, each a finite number"
                         f"{_bounds(low, high, low_open, False)}") from None
    return first, second


def as_values(given: Any) -> Optional[tuple]:
    """The values of a scalar (one), a sequence, or a numpy array or torch tensor (its elements as Python
    numbers); None for anything else (a string, bytes, a mapping, a set)."""
    if isinstance(given, Real):
        return (given,)
    if hasattr(given, "tolist") and hasattr(given, "shape"):  # numpy arrays and scalars, torch tensors
        given = given.tolist()
        return (given,) if isinstance(given, Real) else tuple(given) if isinstance(given, list) else None
    # bytes are a Sequence of ints: b"\x10" was taken as patch size 16.
    return tuple(given) if isinstance(given, Sequence) and not isinstance(given, (str, bytes, bytearray)) else None


def numbers(name: str, values: Any, *, count: Optional[int] = None, positive: bool = False) -> tuple[float, ...]:
    """A non-empty sequence of finite numbers (a scalar counts as one value; `count` of them when given; numpy
    arrays and torch tensors give their elements)."""
    vals = as_values(values)
    ok = vals is not None and len(vals) > 0 and (count is None or len(vals) == count) and all(
        not isinstance(v, bool) and isinstance(v, Real) and _finite(v) and (not positive or v > 0)
        for v in vals)
    if not ok:
        what = f"{count} " if count is not None else "one or more "
        raise ValueError(f"{name}={values!r}; expected {what}{'positive ' if positive else ''}finite numbers")
    return tuple(float(v) for v in vals)


def distinct_seeds(name: str, values: Any) -> tuple[int, ...]:
    """One or more different whole numbers up to MAX_SEED (the seeds of repeated runs)."""
    vals = tuple(values) if isinstance(values, Sequence) and not isinstance(values, str) else ()
    if not vals or len(set(vals)) != len(vals):
        raise ValueError(f"{name}={values!r}; expected one or more different seeds, e.g. 0 1 2")
    return tuple(whole_number(name, v, maximum=MAX_SEED) for v in vals)


def one_of(name: str, value: Any, choices: Sequence) -> Any:
    """`value` if it is one of `choices`."""
    if isinstance(value, bool) != any(isinstance(c, bool) for c in choices) or value not in choices:
        raise ValueError(f"{name}={value!r}; expected one of {', '.join(repr(c) for c in choices)}")
    return value


def boolean(name: str, value: Any) -> bool:
    """True or False (not 0, 1 or a string)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r}; expected True or False")
    return value


def known_fields(what: str, mapping: Any, cls) -> dict:
    """`mapping` (e.g. from a JSON file) if all its keys are fields of the dataclass `cls`."""
    if not isinstance(mapping, dict):
        raise ValueError(f"{what} settings must be a mapping (JSON object), got {mapping!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - names)
    if unknown:
        raise ValueError(f"unknown {what} option(s) {unknown}; expected some of {sorted(names)}")
    return mapping


def _finite(value: Real) -> bool:
    """math.isfinite, False for an integer too large for a float (10**400 raised OverflowError)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _bounds(low, high, low_open, high_open) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " " + " and ".join(parts) if parts else ""
