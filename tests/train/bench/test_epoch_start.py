"""The epoch-start script on a small set: both ways draw every image each epoch, and every delay is recorded
(no wall-clock figure is asserted)."""
import json

from train.bench.epoch_start import main


def test_epoch_start_records_every_delay_of_both_ways(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DALI_HAS_CACHE", str(tmp_path / "cache"))
    assert main(["--images", "300", "--epochs", "3", "--batch-size", "32", "--num-threads", "1",
                 "--json", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["images"] == 300
    assert result["epoch_samples"] == {"per_epoch": [300] * 3, "one_loader": [300] * 3}
    assert all(len(d) == 3 and all(s > 0 for s in d) for d in result["delay_s"].values())
    assert set(result["later_epochs_median_delay_s"]) == {"per_epoch", "one_loader"}
    assert "median delay to the first batch" in capsys.readouterr().out
