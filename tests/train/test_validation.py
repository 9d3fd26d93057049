"""Validation while training: the numbers equal `dali-has eval`'s, best.pt follows the metric, resume keeps both."""
import json
import sys

import pytest
import torch

from tests.train.test_trainer import tiny_config
from train.checkpoint import BEST, CHECKPOINT, METRICS
from train.cli import main
from train.config import Validation
from train.trainer import fit
from train.wsol.evaluate import evaluate


def validation(tiny_synth, **kw):
    return Validation(data=str(tiny_synth / "test"), boxes=str(tiny_synth / "boxes.json"), resize=64, **kw)


def epochs(run):
    return [json.loads(line) for line in (run / METRICS).read_text().splitlines()]


def test_validation_equals_eval_of_the_same_checkpoint(tiny_synth, tmp_path):
    run = tmp_path / "run"
    fit(tiny_config(tiny_synth, run, epochs=1, val=validation(tiny_synth)))
    (logged,) = epochs(run)
    alone = evaluate(run, str(tiny_synth / "test"), str(tiny_synth / "boxes.json"), resize=64, progress=False)
    assert logged["val"] == json.loads(json.dumps(alone.metrics))
    assert logged["val"]["count"] == 12 and {"top1", "top5", "gt_known_loc", "maxboxacc_v2"} <= set(logged["val"])


def test_without_boxes_validation_is_classification_and_picks_by_top1(tiny_synth, tmp_path):
    run = tmp_path / "run"
    fit(tiny_config(tiny_synth, run, epochs=1, val=Validation(data=str(tiny_synth / "test"))))
    (logged,) = epochs(run)
    assert set(logged["val"]) == {"count", "top1", "top5"}
    assert logged["best"] == {"metric": "top1", "value": logged["val"]["top1"], "epoch": 1}


def test_best_follows_the_metric_and_resume_keeps_both(tiny_synth, tmp_path):
    cfg = dict(epochs=4, val=validation(tiny_synth, metric="maxboxacc_v2"))
    straight = tmp_path / "straight"
    fit(tiny_config(tiny_synth, straight, **cfg))
    lines = epochs(straight)
    values = [line["val"]["maxboxacc_v2"] for line in lines]
    best_epoch = values.index(max(values)) + 1  # the first epoch that reached the maximum
    best = torch.load(straight / BEST, weights_only=False)
    assert best["epoch"] == best_epoch and best["best"] == {"metric": "maxboxacc_v2", "value": max(values),
                                                             "epoch": best_epoch}
    assert [line["best"]["epoch"] for line in lines] == [values.index(max(values[:i + 1])) + 1 for i in range(4)]
    # best.pt holds that epoch's weights: evaluating it gives that epoch's numbers.
    again = evaluate(straight, cfg["val"].data, cfg["val"].boxes, checkpoint=BEST, resize=64, progress=False)
    assert again.metrics["maxboxacc_v2"] == max(values)

    resumed = tmp_path / "resumed"
    fit(tiny_config(tiny_synth, resumed, **{**cfg, "epochs": 2}))
    assert main(["train", "--resume", str(resumed), "--epochs", "4"]) == 0
    assert [line["val"] for line in epochs(resumed)] == [line["val"] for line in lines]
    assert [line["best"] for line in epochs(resumed)] == [line["best"] for line in lines]
    for name in (CHECKPOINT, BEST):
        a, b = (torch.load(run / name, weights_only=False) for run in (straight, resumed))
        assert a["epoch"] == b["epoch"] and a["best"] == b["best"]
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_validation_every_n_epochs_and_after_the_last(tiny_synth, tmp_path):
    run = tmp_path / "run"
    fit(tiny_config(tiny_synth, run, epochs=3, max_steps_per_epoch=1,
                    val=Validation(data=str(tiny_synth / "test"), every=2)))
    assert ["val" in line for line in epochs(run)] == [False, True, True]


def test_cli_validation_options(tiny_synth, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_synth / "train"), "--out", str(run), "--epochs", "1", "--crop", "64",
                 "--batch-size", "8", "--max-steps-per-epoch", "1", "--model-opt", "stem=small",
                 "--model-opt", "width=0.125", "--val-data", str(tiny_synth / "test"), "--val-boxes",
                 str(tiny_synth / "boxes.json"), "--val-resize", "64", "--val-metric", "top1_loc"]) == 0
    assert epochs(run)[0]["best"]["metric"] == "top1_loc" and (run / BEST).is_file()
    assert main(["eval", "--data", str(tiny_synth / "test"), "--boxes", str(tiny_synth / "boxes.json"),
                 "--checkpoint", str(run), "--best", "--resize", "64", "--examples", "0"]) == 0
    assert main(["train", "--data", "d", "--out", "o", "--val-boxes", "b.json"]) == 2
    assert "need --val-data" in capsys.readouterr().err
    with pytest.raises(ValueError, match="needs true boxes"):
        Validation(data=str(tiny_synth / "test"), metric="gt_known_loc")


def test_tensorboard_logs_every_epoch_or_says_what_to_install(tiny_synth, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    fit(tiny_config(tiny_synth, run, epochs=2, max_steps_per_epoch=1, tensorboard=True,
                    val=Validation(data=str(tiny_synth / "test"))))
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("val/top1")] == [1, 2]
    assert {"train_loss", "lr", "input/wait_fraction"} <= set(events.Tags()["scalars"])
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the package were missing
    with pytest.raises(ValueError, match=r"pip install 'dali-has\[tensorboard\]'"):
        fit(tiny_config(tiny_synth, tmp_path / "other", epochs=1, tensorboard=True))


def test_compile_wraps_the_training_model(tiny_synth, tmp_path, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model: compiled.append(model) or model)
    fit(tiny_config(tiny_synth, tmp_path / "run", epochs=1, max_steps_per_epoch=1, compile=True))
    assert len(compiled) == 1 and isinstance(compiled[0], torch.nn.Module)


@pytest.mark.gpu
def test_compiled_training_on_the_gpu(tiny_synth, tmp_path):
    last = fit(tiny_config(tiny_synth, tmp_path / "run", epochs=1, device="gpu", compile=True,
                           val=validation(tiny_synth)))
    assert last["samples"] == 37 and last["val"]["count"] == 12


@pytest.mark.parametrize("options, said", [
    (["--val-resize", "10"], "resize=10 must be >= crop=64"),
    (["--val-boxes", "README.txt"], "not a box annotation source"),
    (["--val-boxes", "boxes.json", "--val-split", "train"], "are --data and --boxes the same split?"),
])
def test_bad_validation_settings_are_refused_before_the_first_epoch(tiny_synth, tmp_path, capsys, options, said):
    """Before, each of these trained a whole epoch first, then failed at validation with nothing saved."""
    run = tmp_path / "run"
    argv = ["train", "--data", str(tiny_synth / "train"), "--out", str(run), "--epochs", "1", "--crop", "64",
            "--batch-size", "8", "--model-opt", "stem=small", "--val-data", str(tiny_synth / "test"),
            *(str(tiny_synth / o) if o.endswith((".json", ".txt")) else o for o in options)]
    assert main(argv) == 2
    assert said in capsys.readouterr().err
    assert not run.exists()  # refused before the run folder was made
