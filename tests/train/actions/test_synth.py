"""The generated action feature set and the `synth-actions` / `action-demo` commands end to end (tiny sizes)."""
import json

import numpy as np
import pytest

from pipelines.feature_pipeline import FeatureIndex
from train.actions.synth import SynthActionsConfig, generate
from train.cli import main


def test_videos_hold_one_action_whose_extent_carries_the_class_cue(tmp_path):
    cfg = SynthActionsConfig(dim=10, train_videos=100, test_videos=5, weak_reliability=1.0, seed=1)
    paths = generate(str(tmp_path), cfg, progress=False)
    index = FeatureIndex.load(paths["train"])
    assert len(index.videos) == 100 and index.classes == tuple(f"action{c}" for c in range(cfg.classes))
    inside = {c: [] for c in range(cfg.classes)}
    outside = []
    for video in index.videos:
        features = np.load(video.features)
        assert features.shape == (video.frames, cfg.dim) and features.dtype == np.float32
        assert cfg.frames[0] <= video.frames <= cfg.frames[1]
        ((start, end),) = video.segments
        assert cfg.extent[0] * video.frames - 1 <= end - start <= cfg.extent[1] * video.frames + 1
        inside[video.label].append(features[int(start):int(end)])
        outside.append(np.delete(features, np.arange(int(start), int(end)), axis=0))
    # Within the extent, a class's features share a direction (norm of the mean ~ the cue amplitude);
    # outside they are zero-mean noise (norm of the mean ~ 0.1 for these sizes).
    for c, parts in inside.items():
        assert np.linalg.norm(np.concatenate(parts).mean(axis=0)) > 0.6 * cfg.weak_amplitude, c
    assert np.linalg.norm(np.concatenate(outside).mean(axis=0)) < 0.2


@pytest.mark.parametrize("bad, message", [(dict(classes=1), "classes=1"), (dict(seed=-1), "seed=-1"),
                                          (dict(classes=17), "need 2 <= classes <= dim / 2"),
                                          (dict(weak_reliability=1.5),
                                                                            "weak_reliability=1.5"),
                                          (dict(burst=(30, 40)), "burst=")])
def test_settings_are_validated(bad, message):
    with pytest.raises(ValueError, match=message):
        SynthActionsConfig(**bad)


def test_commands_run_end_to_end(tmp_path, capsys):
    data, results = tmp_path / "data", tmp_path / "results.json"
    assert main(["synth-actions", "--out", str(data), "--train-videos", "16", "--test-videos", "6",
                 "--no-progress"]) == 0
    assert main(["synth-actions", "--out", str(data)]) == 2  # not empty: refused
    assert main(["action-demo", "--data", str(data), "--seeds", "4", "--epochs", "1", "--frames", "16",
                 "--has-segment", "4", "--json", str(results), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "baseline" in table and "temporal HaS" in table and "0.5" in table
    saved = json.loads(results.read_text())
    assert set(saved["results"]) == {"baseline", "temporal HaS"}
    assert set(saved["results"]["baseline"][0]["mAP"]) == {"0.1", "0.2", "0.3", "0.4", "0.5"}
    assert saved["settings"]["seeds"] == [4]  # a list of seeds, as `dali-has demo --seeds` takes
    assert [len(runs) for runs in saved["results"].values()] == [1, 1]
    assert main(["action-demo", "--data", str(data), "--seeds", "1", "1"]) == 2  # the same seed twice: refused


@pytest.mark.parametrize("change, said", [
    (lambda raw: {**raw, "classes": raw["classes"][::-1]}, "lists other classes"),  # top-1 fell to chance, silently
    (lambda raw: {**raw, "videos": [{**v, "segments": []} for v in raw["videos"]]}, "marks no action segments"),
])
def test_action_demo_refuses_a_test_index_it_cannot_score_before_training(tmp_path, monkeypatch, capsys, change,
                                                                          said):
    generate(str(tmp_path), SynthActionsConfig(train_videos=6, test_videos=3), progress=False)
    test = tmp_path / "test.json"
    test.write_text(json.dumps(change(json.loads(test.read_text()))))
    monkeypatch.setattr("train.actions.demo.train_action_model", lambda *a, **k: pytest.fail("trained"))
    assert main(["action-demo", "--data", str(tmp_path), "--seeds", "0", "--no-progress"]) == 2
    assert said in capsys.readouterr().err


def test_action_demo_refuses_test_features_of_another_width(tmp_path, monkeypatch, capsys):
    generate(str(tmp_path), SynthActionsConfig(train_videos=6, test_videos=3), progress=False)
    for video in FeatureIndex.load(str(tmp_path / "test.json")).videos:
        np.save(video.features, np.load(video.features)[:, :5])
    monkeypatch.setattr("train.actions.demo.train_action_model", lambda *a, **k: pytest.fail("trained"))
    assert main(["action-demo", "--data", str(tmp_path), "--seeds", "0", "--no-progress"]) == 2
    assert "features have 5 values per step" in capsys.readouterr().err
