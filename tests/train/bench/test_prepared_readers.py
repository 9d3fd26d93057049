"""The prepared-readers script on a tiny run: every stream measured, nothing about its speed asserted."""
import json

from train.bench import prepared_readers


def test_prepared_readers_times_folder_shards_and_checkpointing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DALI_HAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(prepared_readers, "bench_prepared", lambda: _tiny("bench_prepared"))
    monkeypatch.setattr(prepared_readers, "bench_prepared_shards", lambda: _tiny("bench_prepared_shards"))
    assert prepared_readers.main(["--batch-size", "4", "--iters", "2", "--runs", "1", "--num-threads", "1",
                                  "--json", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert set(result["img_s"]) == {"folder", "webdataset", "folder, checkpointing"}
    assert all(m["timed_batches_per_run"] == 2 and len(m["runs"]) == 1 for m in result["runs"].values())
    assert "webdataset: " in capsys.readouterr().out


def _tiny(name):
    from train.bench import data

    return getattr(data, name)(16, max_side=64)
