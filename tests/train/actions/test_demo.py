"""The action demo's table: mean ± sample standard deviation over seeds, as the image demo reports."""
import statistics

import numpy as np
import pytest

from train.actions.demo import ActionDemoSettings, map_table
from train.cli import main


def _runs(values: list[float]) -> list[dict]:
    return [{"mAP": {0.1: v, 0.5: v / 2}, "top1": 1.0} for v in values]


def test_the_spread_is_the_sample_standard_deviation():
    """It was numpy's population std (ddof 0) while the image demo's table used the sample std."""
    table = map_table({"baseline": _runs([0.90, 0.95, 0.97])}, ActionDemoSettings(data="d"))
    spread = 100 * statistics.stdev([0.90, 0.95, 0.97])
    assert f"{100 * statistics.mean([0.90, 0.95, 0.97]):.1f} ±{spread:>4.1f}" in table  # 94.0 ± 3.6, not ± 2.9


def test_one_seed_gives_the_mean_alone():
    table = map_table({"baseline": _runs([0.9])}, ActionDemoSettings(data="d", seeds=(0,)))
    assert "90.0" in table and "±" not in table and "nan" not in table


def test_torch_threads_beyond_any_machine_are_refused():
    """100,000 made ~32,000 threads (1.1 GB) and died in a traceback."""
    with pytest.raises(ValueError, match="torch_threads=100000 must be a whole number >= 1 and <= 1024"):
        ActionDemoSettings(data="d", torch_threads=100000)


def test_a_test_feature_that_is_not_finite_is_named_before_any_training(tmp_path, capsys):
    """NaN in a test video's features: action-demo exited 0 and printed a wrong mAP."""
    data = tmp_path / "acts"
    assert main(["synth-actions", "--out", str(data), "--train-videos", "12", "--test-videos", "6",
                 "--classes", "3", "--no-progress"]) == 0
    victim = sorted((data / "features").glob("test_*.npy"))[0]
    features = np.load(victim)
    features[0, 0] = np.nan
    np.save(victim, features)
    assert main(["action-demo", "--data", str(data), "--seeds", "0", "--no-progress"]) == 2
    assert f"{victim.name} holds NaN" in capsys.readouterr().err
