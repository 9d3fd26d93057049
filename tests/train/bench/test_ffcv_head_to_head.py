"""The FFCV head-to-head script: its per-round ratio, and its answer where FFCV is not installed (CI). The timing
itself needs ffcv, an optional extra; `tests/train/bench/test_run.py` covers the FFCV streams it reuses."""
from __future__ import annotations

import pytest

from train.bench import ffcv_head_to_head
from train.bench.run import ffcv_unavailable_reason
from train.bench.timing import Measurement


def test_ratios_pair_the_runs_of_each_round():
    a = Measurement(runs=(200.0, 300.0, 90.0), warmup=1, iters=1)
    b = Measurement(runs=(100.0, 100.0, 100.0), warmup=1, iters=1)
    assert ffcv_head_to_head.round_ratios(a, b) == {"median": 2.0, "min": 0.9, "max": 3.0}


def test_without_ffcv_it_says_what_to_install(tmp_path):
    if ffcv_unavailable_reason() is None:
        pytest.skip("ffcv is installed here")
    with pytest.raises(SystemExit, match="install ffcv"):
        ffcv_head_to_head.main(["--prepared", str(tmp_path)])
