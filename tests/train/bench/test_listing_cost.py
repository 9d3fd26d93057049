"""The listing-cost benchmark (train.bench.listing_cost) writes what it promises."""
import json

import pytest

from train.bench import listing_cost


def test_listing_cost_benchmark_writes_its_json(tmp_path, capsys):
    out = tmp_path / "listing.json"
    assert listing_cost.main(["--files", "300", "--runs", "2", "--dir", str(tmp_path / "tree"),
                              "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["files"] == 300
    assert all(len(result["run_seconds"][k]) == 2 for k in ("listing", "cold", "cached", "again"))
    assert result["us_per_file"]["cold"] == pytest.approx(1e6 * result["median_s"]["cold"] / 300)
    assert result["cache_bytes"] > 0 and "listing_cost --files 300" in result["command"]
    assert "us per file" in capsys.readouterr().out
    assert listing_cost.main(["--files", "300", "--runs", "1", "--dir", str(tmp_path / "tree")]) == 0  # reused
    with pytest.raises(SystemExit):
        listing_cost.main(["--files", "0"])
