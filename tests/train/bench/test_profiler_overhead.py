"""The InputProfiler overhead benchmark (train.bench.profiler_overhead) writes what it promises."""
import json

import pytest

from train.bench import profiler_overhead


def test_overhead_benchmark_command_writes_its_json(tmp_path, capsys):
    out = tmp_path / "overhead.json"
    assert profiler_overhead.main(["--batches", "200", "--runs", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert len(result["run_seconds"]["plain"]) == len(result["run_seconds"]["wrapped"]) == 2
    assert result["overhead_us_per_batch"] == result["wrapped_us_per_batch"] - result["plain_us_per_batch"]
    assert "us per batch" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        profiler_overhead.main(["--batches", "0"])
