"""Uniform temporal sampling: F_total frames (or features) from a sequence of any length (paper §3.2).

Sampled position j stands for the stretch [j, j + 1) * T / F_total of the original sequence and takes its
middle frame, floor((j + 0.5) * T / F_total) = ((2j + 1) * T) // (2 * F_total) in exact integer arithmetic.
Shorter sequences repeat frames, longer ones skip frames.
"""
from __future__ import annotations

import numpy as np
import nvidia.dali.fn as fn
import nvidia.dali.types as types

from dali_has import validate

# The frames sampled per sequence, at most: the indices are a constant of the graph and every sample becomes
# [count, ...] (10**8 ran out of memory building the constant); 65,536 is MAX_SEGMENT, beyond any clip a network
# is trained on.
MAX_COUNT = 1 << 16


def sample_uniformly(sequences, count: int):
    """Resample every sequence of a DALI batch to `count` frames along its leading axis.

    sequences: samples with the frame axis first and a layout starting with `F` (or none), e.g. FC or FHWC.
    """
    _check_count(count)
    length = sequences.shape()[0]  # int64: (2 * count) * length cannot overflow
    odd = types.Constant(2 * np.arange(count, dtype=np.int64) + 1, device="cpu")
    indices = fn.cast(odd * length // (2 * count), dtype=types.INT32)
    return fn.sequence_rearrange(sequences, new_order=indices)


def _check_count(count) -> None:
    validate.whole_number("count", count, minimum=1, maximum=MAX_COUNT)
