"""`dali-has demo` on a tiny set: results.json's promised keys, several seeds, repeatability, dataset reuse."""
import json
import statistics
from pathlib import Path

import pytest
import torch

from train.checkpoint import CHECKPOINT
from train.cli import main
from train.models import build_model
from train.wsol.demo import DEMO_MODEL, METRICS

TINY = ["--n-train", "40", "--n-test", "10", "--epochs", "2"]


def _weights(run_dir):
    return torch.load(run_dir / CHECKPOINT, weights_only=False)["model"]


def test_demo_writes_the_promised_results_and_repeats_them_exactly(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--seeds", "0", "1", *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    assert "alexnet_convs=2, added_convs=1" in results["model"]
    assert f"sees {build_model('alexnet_gap', 2, **DEMO_MODEL).receptive_field} px" in results["model"]
    for run in ("baseline", "has"):
        summary = results[run]
        assert set(summary) == {*METRICS, "seed", "maxboxacc_by_iou", "std", "per_seed"}
        assert summary["seed"] == [0, 1] and [row["seed"] for row in summary["per_seed"]] == [0, 1]
        for key in METRICS:
            values = [row[key] for row in summary["per_seed"]]
            assert all(0 <= v <= 100 for v in values)
            assert summary[key] == pytest.approx(statistics.fmean(values))
            assert summary["std"][key] == pytest.approx(statistics.stdev(values))
    assert results["has_minus_baseline"]["gt_known_loc"] == pytest.approx(
        results["has"]["gt_known_loc"] - results["baseline"]["gt_known_loc"])
    assert results["wall_s"] > 0 and results["device"].startswith("cpu") and results["data_seed"] == 0
    assert (out / "cams.png").stat().st_size > 0
    runs = out / "runs"
    assert json.loads((runs / "seed1" / "has" / "config.json").read_text())["augment"]["has"] is not None
    assert json.loads((runs / "seed1" / "baseline" / "config.json").read_text())["augment"]["has"] is None
    printed = capsys.readouterr().out
    assert "GT-known Loc" in printed and "top-1, head hidden" in printed and "Hide-and-Seek mean" in printed
    first = {seed: _weights(runs / f"seed{seed}" / "has") for seed in (0, 1)}
    assert any(not torch.equal(first[0][k], v) for k, v in first[1].items() if v.is_floating_point())

    # Again: the generated set is reused, and the same seeds give the same weights and numbers to the last bit
    # (same machine, same number of jobs and threads).
    stamp = (out / "data" / "dataset.json").stat().st_mtime_ns
    assert main(["demo", "--out", str(out), "--seeds", "0", "1", *TINY]) == 0
    assert (out / "data" / "dataset.json").stat().st_mtime_ns == stamp
    again = json.loads((out / "results.json").read_text())
    for run in ("baseline", "has"):
        assert again[run]["per_seed"] == results[run]["per_seed"]
    for seed in (0, 1):
        for key, value in _weights(runs / f"seed{seed}" / "has").items():
            assert torch.equal(value, first[seed][key]), key
    assert len((runs / "seed0" / "has" / "metrics.jsonl").read_text().splitlines()) == 2  # a fresh run, not appended


def test_one_seed_keeps_the_single_run_layout_and_bad_options_are_named(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--seeds", "3", "--jobs", "1", "--no-progress", *TINY]) == 0
    assert "%|" not in capsys.readouterr().err  # no bar: the set's generation and mean draw one without the flag
    results = json.loads((out / "results.json").read_text())
    assert set(results["has"]) == {*METRICS, "seed", "maxboxacc_by_iou"} and results["has"]["seed"] == 3
    assert main(["demo", "--out", str(out), "--seeds", "1", "1", *TINY]) == 2
    assert "seeds=[1, 1]" in capsys.readouterr().err
    assert main(["demo", "--out", str(out), "--jobs", "0", *TINY]) == 2
    assert "jobs=0" in capsys.readouterr().err


def test_a_folder_holding_other_files_is_refused_before_anything_is_written(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["demo", "--out", str(tmp_path), *TINY]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert main(["demo", "--out", str(tmp_path / "notes.txt"), *TINY]) == 2
    assert "is a file" in capsys.readouterr().err
    for name, make in (("results.json", lambda p: p.write_text('{"mine": 1}')), ("cams.png", Path.mkdir),
                       ("runs", lambda p: p.symlink_to(tmp_path))):
        out = tmp_path / f"with_{name}"
        out.mkdir()
        make(out / name)
        assert main(["demo", "--out", str(out), *TINY]) == 2
        assert f"({name})" in capsys.readouterr().err
    assert json.loads((tmp_path / "with_results.json" / "results.json").read_text()) == {"mine": 1}


@pytest.mark.gpu
def test_the_demo_runs_on_the_gpu(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--seeds", "0", "--jobs", "1", "--device", "gpu", *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["device"] == torch.cuda.get_device_name(0)
    for run in ("baseline", "has"):
        assert all(0 <= results[run][key] <= 100 for key in METRICS)
    assert (out / "cams.png").stat().st_size > 0


@pytest.mark.parametrize("content", ["[1]", '{"config": ', "\xff"])
def test_a_damaged_dataset_json_makes_the_data_generated_again(tmp_path, content):
    """It raised AttributeError (a list) or "Expecting value" naming no file."""
    from train.wsol.demo import _same_dataset
    from train.wsol.synth import SynthConfig

    (tmp_path / "dataset.json").write_text(content, encoding="latin-1")
    assert _same_dataset(tmp_path, SynthConfig()) is False
