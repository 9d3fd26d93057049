"""The setting checks every package uses: what each accepts, what it returns, and the message of a refusal."""
from __future__ import annotations

import dataclasses
import re
from fractions import Fraction

import numpy as np
import pytest
import torch

from dali_has import validate


@pytest.mark.parametrize("value", [True, 2.0, "3", None, -1, 11, np.float64(4.0)])
def test_whole_number_refuses_bools_floats_text_and_values_out_of_bounds(value):
    with pytest.raises(ValueError, match=re.escape(f"n={value!r} must be a whole number >= 0 and <= 10")):
        validate.whole_number("n", value, maximum=10)


@pytest.mark.parametrize("value, kind", [(4.0, "float"), (np.float32(4.0), "float32"), (Fraction(8, 2), "Fraction")])
def test_whole_number_says_why_an_integral_non_int_is_refused(value, kind):
    with pytest.raises(ValueError, match=rf"must be a whole number >= 1 \(an int, not {kind}\)"):
        validate.whole_number("segment", value, minimum=1)
    with pytest.raises(ValueError, match=r"must be a whole number >= 1$"):  # no hint (it raised OverflowError)
        validate.whole_number("segment", Fraction(10**400), minimum=1)


def test_whole_number_takes_any_integral_type_and_returns_an_int():
    for value in (7, np.int64(7), np.uint8(7)):
        assert validate.whole_number("n", value) == 7 and type(validate.whole_number("n", value)) is int
    assert validate.positive_int("n", 1) == 1
    with pytest.raises(ValueError, match="n=0 must be a whole number >= 1"):
        validate.positive_int("n", 0)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 10**400, True, "1", None])
def test_number_refuses_what_is_not_a_finite_number(value):
    with pytest.raises(ValueError, match="must be a finite number"):
        validate.number("x", value)


def test_number_bounds_closed_and_open():
    assert validate.number("x", 1, low=1) == 1.0 and type(validate.number("x", 1)) is float
    with pytest.raises(ValueError, match=r"x=1 must be > 1 and <= 2 \(a finite number\)"):
        validate.number("x", 1, low=1, high=2, low_open=True)
    with pytest.raises(ValueError, match="x=2 must be >= 0 and < 2"):
        validate.number("x", 2, low=0, high=2, high_open=True)
    assert validate.probability("p", 0) == 0.0 and validate.probability("p", 1) == 1.0
    with pytest.raises(ValueError, match="p=1.5 must be >= 0 and <= 1"):
        validate.probability("p", 1.5)


@pytest.mark.parametrize("value", [(2, 1), (1,), (0, 1), "ab", 5, (1, float("nan"))])
def test_number_range_needs_an_ordered_pair_within_bounds(value):
    with pytest.raises(ValueError, match=r"r=.*; expected \(min, max\) with min <= max, each a finite number > 0"):
        validate.number_range("r", value)


def test_as_values_reads_scalars_sequences_arrays_and_tensors_but_not_text_or_bytes():
    assert validate.as_values(3) == (3,) and validate.as_values([1, 2]) == (1, 2)
    assert validate.as_values(np.array([1.5, 2.5])) == (1.5, 2.5) and validate.as_values(np.float32(2)) == (2.0,)
    assert validate.as_values(torch.tensor([4, 5])) == (4, 5)
    for other in ("16", b"\x10", {"a": 1}, {1, 2}, None):  # b"\x10" was taken as the size 16
        assert validate.as_values(other) is None


def test_numbers_counts_and_signs():
    assert validate.numbers("fill", 0.5) == (0.5,) and validate.numbers("mean", (1, 2, 3), count=3) == (1.0, 2.0, 3.0)
    for bad, said in (((), "one or more finite"), ((1, 2), "3 finite"), ((1, True, 3), "3 finite"),
                      ((1, 0, 1), "3 positive finite")):
        with pytest.raises(ValueError, match=f"expected {said} numbers"):
            validate.numbers("v", bad, count=3 if len(bad) != 0 else None, positive=said.startswith("3 positive"))


def test_distinct_seeds():
    assert validate.distinct_seeds("seeds", [0, 1, 2]) == (0, 1, 2)
    for bad in ([], [1, 1], "12", None):
        with pytest.raises(ValueError, match="expected one or more different seeds"):
            validate.distinct_seeds("seeds", bad)
    with pytest.raises(ValueError, match=f"must be a whole number >= 0 and <= {validate.MAX_SEED}"):
        validate.distinct_seeds("seeds", [validate.MAX_SEED + 1])


def test_one_of_and_boolean_do_not_mix_bools_with_numbers():
    assert validate.one_of("mode", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match="mirror=True; expected one of 0, 1"):
        validate.one_of("mirror", True, (0, 1))  # True == 1, but it is not a choice
    with pytest.raises(ValueError, match="flag=1; expected one of True, False"):
        validate.one_of("flag", 1, (True, False))
    assert validate.boolean("b", False) is False
    for bad in (0, 1, "true", None):
        with pytest.raises(ValueError, match="expected True or False"):
            validate.boolean("b", bad)


def test_known_fields():
    @dataclasses.dataclass
    class Settings:
        a: int = 0

    assert validate.known_fields("demo", {"a": 1}, Settings) == {"a": 1}
    with pytest.raises(ValueError, match=r"unknown demo option\(s\) \['b'\]; expected some of \['a'\]"):
        validate.known_fields("demo", {"b": 1}, Settings)
    with pytest.raises(ValueError, match=r"demo settings must be a mapping \(JSON object\), got \[1\]"):
        validate.known_fields("demo", [1], Settings)
