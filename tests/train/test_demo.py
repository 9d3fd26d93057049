import json

from train.cli import main


def test_demo_writes_the_promised_results(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n-train", "40", "--n-test", "10", "--epochs", "1"]) == 0
    results = json.loads((out / "results.json").read_text())
    for run in ("baseline", "has"):
        metrics = ("top1", "gt_known_loc", "top1_loc", "maxboxacc_v2", "part_hidden_top1")
        assert set(results[run]) == {*metrics, "seed", "maxboxacc_by_iou"}
        assert all(0 <= results[run][k] <= 100 for k in metrics)
    assert results["wall_s"] > 0 and results["device"].startswith("cpu")
    assert (out / "cams.png").stat().st_size > 0
    assert json.loads((out / "runs" / "has" / "config.json").read_text())["augment"]["has"] is not None
    assert json.loads((out / "runs" / "baseline" / "config.json").read_text())["augment"]["has"] is None
    assert "GT-known Loc" in (printed := capsys.readouterr().out) and "top-1, head hidden" in printed
    # A second run reuses the generated set.
    stamp = (out / "data" / "dataset.json").stat().st_mtime_ns
    assert main(["demo", "--out", str(out), "--n-train", "40", "--n-test", "10", "--epochs", "1"]) == 0
    assert (out / "data" / "dataset.json").stat().st_mtime_ns == stamp
