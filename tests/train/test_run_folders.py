"""Run folders from untrusted hands: checkpoints that would run code, copied and moved runs, bad files in training.

Each case was tried as a careless or hostile user would; each must end in one line naming the file and exit 2,
never run foreign code or write into another run.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from dali_has import HaSConfig
from pipelines import TrainAugment
from train import checkpoint, trainer
from train.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint, temporaries
from train.cli import main
from train.config import TrainConfig
from train.trainer import fit

SMALL = {"stem": "small", "width": 0.125, "batch_norm": True}


def tiny_config(data, out, **kw) -> TrainConfig:
    return TrainConfig(**{**dict(data=str(data / "train"), out=str(out), epochs=1, batch_size=8, lr=0.4, crop=64,
                                 augment=TrainAugment(has=HaSConfig((0, 8, 16))), num_threads=1, model=dict(SMALL),
                                 seed=3, max_steps_per_epoch=2), **kw})


@pytest.fixture(scope="module")
def trained_run(tiny_synth, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    fit(tiny_config(tiny_synth, run))
    return run


class RunsCode:
    """Unpickling this object runs `touch MARKER`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def poisoned_copy(run: Path, folder: Path) -> tuple[Path, Path]:
    """A copy of `run` whose checkpoint also holds an object that runs a shell command when unpickled."""
    copy = folder / "poisoned"
    shutil.copytree(run, copy)
    marker = folder / "code-ran"
    state = torch.load(run / CHECKPOINT, weights_only=True)
    state["extra"] = RunsCode(marker)
    torch.save(state, copy / CHECKPOINT)
    return copy, marker


def test_our_checkpoints_hold_only_tensors_and_plain_data(trained_run):
    state = torch.load(trained_run / CHECKPOINT, weights_only=True)  # raises on anything else
    assert state["epoch"] == 1 and state["config"]["epochs"] == 1
    assert json.loads(json.dumps(state["config"])) == state["config"]  # the config is JSON data


@pytest.mark.parametrize("command", ["eval", "resume"])
def test_a_checkpoint_that_would_run_code_is_refused(trained_run, tiny_synth, tmp_path, capsys, command):
    copy, marker = poisoned_copy(trained_run, tmp_path)
    if command == "eval":
        argv = ["eval", "--data", str(tiny_synth / "test"), "--boxes", str(tiny_synth / "boxes.json"),
                "--checkpoint", str(copy), "--examples", "0"]
    else:
        argv = ["train", "--resume", str(copy), "--epochs", "2"]
    assert main(argv) == 2
    assert not marker.exists()  # before: the command ran `touch`
    err = capsys.readouterr().err
    assert str(copy / CHECKPOINT) in err and "refusing to load it" in err


@pytest.mark.parametrize("content, words", [
    (b"", "damaged or not a checkpoint .it is empty.: use another"),
    (b"PK\x03\x04 not really a zip", "damaged or not a checkpoint"),
    (b"hello\n", "damaged or not a checkpoint .KeyError"),  # torch's unpickler: a traceback, exit 1
    (b"x", "damaged or not a checkpoint"),  # said "holds objects ... could run code": damage looked like an attack
    ("data.pkl", "damaged or not a checkpoint"),  # three bytes of a real one changed inside its pickle stream
    # three bytes of a weight: torch.load loaded them as another model, silently
    ("data/0", "damaged or not a checkpoint .its record archive/data/0 does not match the checksum"),
])
def test_damaged_checkpoints_are_named(trained_run, tmp_path, content, words):
    copy = tmp_path / "damaged"
    shutil.copytree(trained_run, copy)
    if isinstance(content, str):  # a record of a real checkpoint, three bytes of it changed past its zip header
        data = bytearray((trained_run / CHECKPOINT).read_bytes())
        start = data.index(f"archive/{content}".encode()) + 200
        data[start:start + 3] = bytes(255 - b for b in data[start:start + 3])
        content = bytes(data)
    (copy / CHECKPOINT).write_bytes(content)
    with pytest.raises(ValueError, match=words) as error:
        load_checkpoint(copy / CHECKPOINT)
    assert str(copy / CHECKPOINT) in str(error.value) and "could run code" not in str(error.value)
    torch.save({"model": {}, "epoch": 1}, copy / CHECKPOINT)
    with pytest.raises(ValueError, match="entry 'optimizer' is missing"):
        load_checkpoint(copy / CHECKPOINT)


def test_resuming_a_copied_run_writes_into_the_copy_only(trained_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    original = {name: (trained_run / name).read_bytes() for name in ("checkpoint.pt", "config.json", "metrics.jsonl")}
    assert main(["train", "--resume", str(copy), "--epochs", "2"]) == 0
    assert {name: (trained_run / name).read_bytes() for name in original} == original  # untouched
    assert torch.load(copy / CHECKPOINT, weights_only=True)["epoch"] == 2
    assert len((copy / "metrics.jsonl").read_text().splitlines()) == 2
    assert json.loads((copy / "config.json").read_text())["out"] == str(copy.resolve())


def test_a_run_resumes_from_another_working_directory(tiny_synth, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_synth)
    fit(tiny_config(Path("."), tmp_path / "rel"))  # data "train", relative to this directory
    saved = json.loads((tmp_path / "rel" / "config.json").read_text())
    assert saved["data"] == str(tiny_synth / "train")  # stored absolute
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume", str(tmp_path / "rel"), "--epochs", "2"]) == 0
    # A hand-written relative path is resolved against the run folder, and named when it is not there.
    saved["data"] = "elsewhere/train"
    (tmp_path / "rel" / "config.json").write_text(json.dumps(saved))
    assert main(["train", "--resume", str(tmp_path / "rel"), "--epochs", "3"]) == 2


def test_out_naming_a_file_or_an_existing_run_says_what_to_do(trained_run, tiny_synth, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    base = ["train", "--data", str(tiny_synth / "train"), "--epochs", "1", "--max-steps-per-epoch", "1",
            "--model-opt", "stem=small", "--crop", "64"]
    assert main([*base, "--out", str(tmp_path / "a-file")]) == 2
    assert "is an existing file; give a folder" in capsys.readouterr().err
    assert main([*base, "--out", str(trained_run)]) == 2
    assert f"continue it with --resume {trained_run}" in capsys.readouterr().err


def test_out_holding_other_files_is_left_untouched(tiny_synth, tmp_path, capsys):
    """Before, the run wrote its config.json over the folder's own and appended its metrics to a metrics.jsonl."""
    base = ["train", "--data", str(tiny_synth / "train"), "--epochs", "1", "--max-steps-per-epoch", "1",
            "--model-opt", "stem=small", "--crop", "64"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"mine": 1}')
    (mine / "notes.txt").write_text("keep")
    assert main([*base, "--out", str(mine)]) == 2
    assert "holding other files (notes.txt)" in capsys.readouterr().err
    (mine / "notes.txt").unlink()
    assert main([*base, "--out", str(mine)]) == 2  # a config.json that is not a run's
    assert "holding other files (config.json)" in capsys.readouterr().err
    assert (mine / "config.json").read_text() == '{"mine": 1}'
    assert main([*base, "--out", str(tiny_synth / "train")]) == 2  # the data set itself
    assert "is within the --data folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([*base, "--out", str(tmp_path / "empty")]) == 0


def test_train_stops_on_bad_files_or_skips_them_when_asked(tiny_synth, tmp_path, capsys):
    data = tmp_path / "train"
    shutil.copytree(tiny_synth / "train", data)
    (next(data.iterdir()) / "notes.jpg").write_text("not an image")
    base = ["train", "--data", str(data), "--epochs", "1", "--max-steps-per-epoch", "1", "--batch-size", "8",
            "--model-opt", "stem=small", "--model-opt", "width=0.125", "--crop", "64", "--num-threads", "1"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "notes.jpg: is not an image file" in err and "--skip-bad-files" in err
    with pytest.warns(UserWarning, match="skipping 1 of 38 files"):
        assert main([*base, "--out", str(tmp_path / "b"), "--skip-bad-files"]) == 0


def test_a_diverged_run_stops_naming_the_learning_rate(tiny_synth, tmp_path, capsys):
    """Before, --lr 1e30 trained on with loss nan every epoch, wrote NaN (not JSON) into metrics.jsonl, exit 0."""
    out = tmp_path / "diverged"
    assert main(["train", "--data", str(tiny_synth / "train"), "--out", str(out), "--epochs", "2",
                 "--max-steps-per-epoch", "2", "--model-opt", "stem=small", "--crop", "64", "--lr", "1e30",
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    # 1e30 per 256 images, for the 37 a step trains on (the batch of 256 is the whole 37-image set)
    assert "the training loss is nan, the run diverged" in err
    assert "lower the learning rate (lr 1.44531e+29 for the 37 images of a step)" in err
    metrics = out / "metrics.jsonl"  # only finite epochs are logged
    assert not metrics.exists() or "NaN" not in metrics.read_text()


def test_a_loader_state_that_no_longer_fits_resumes_afresh_with_a_warning(trained_run, tmp_path):
    """A state this code refuses (here: settings changed as a newer version might change them) must not make the
    run impossible to continue: it resumes with the loaders started afresh, as for a changed world size."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    state = load_checkpoint(run / CHECKPOINT)
    for loader_state in state["loader"]["states"]:
        loader_state["settings"] = dict(loader_state["settings"], crop=32)
    save_checkpoint(run / CHECKPOINT, state)
    cfg = TrainConfig.from_dict({**json.loads((run / "config.json").read_text()), "epochs": 2, "out": str(run)})
    with pytest.warns(UserWarning, match="cannot replay the data exactly: the loader state was taken with other"):
        last = fit(cfg, resume=True)
    assert last["epoch"] == 2


def test_a_crop_the_network_cannot_take_is_refused_before_the_run_folder_is_made(tiny_synth, tmp_path, capsys):
    """Before, crop 16 made the run folder and raised inside the first training step (a traceback)."""
    out = tmp_path / "small"
    assert main(["train", "--data", str(tiny_synth / "train"), "--out", str(out), "--arch", "alexnet_gap",
                 "--crop", "16", "--epochs", "1", "--device", "cpu"]) == 2
    assert "crop=16 is too small for alexnet_gap: its pooling leaves nothing below 31 pixels; give --crop 31" in (
        capsys.readouterr().err)
    assert not out.exists()


def _copy(run: Path, folder: Path) -> Path:
    copy = folder / "copy"
    shutil.copytree(run, copy)
    return copy


@pytest.mark.parametrize("key, value", [("lr", 0.5), ("batch_size", 4), ("crop", 48), ("seed", 9),
                                        ("augment", {"has": None})])
def test_a_config_json_edited_in_what_the_run_learns_is_refused_on_resume(trained_run, tmp_path, capsys, key,
                                                                           value):
    # Edited settings trained on with at most a "cannot replay the data exactly" warning (lr: no word at all).
    run = _copy(trained_run, tmp_path)
    saved = json.loads((run / "config.json").read_text())
    before = (run / CHECKPOINT).read_bytes()
    saved[key] = {**saved[key], **value} if isinstance(value, dict) else value
    (run / "config.json").write_text(json.dumps(saved))
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "differs from the settings" in err and f"{key} " in err and "restore config.json" in err
    assert (run / CHECKPOINT).read_bytes() == before


def test_where_and_how_a_run_trains_may_change_on_resume(trained_run, tiny_synth, tmp_path):
    run = _copy(trained_run, tmp_path)
    moved = tmp_path / "moved"
    shutil.copytree(tiny_synth / "train", moved)  # the data set moved to another disk
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**saved, "data": str(moved), "num_threads": 2}))
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0


def test_resuming_on_renamed_class_folders_is_refused(trained_run, tiny_synth, tmp_path, capsys):
    # Renaming c00 to c99 shifted every label and training carried on, warned only about replaying crops.
    run = _copy(trained_run, tmp_path)
    data = tmp_path / "data"
    shutil.copytree(tiny_synth / "train", data)
    (data / "c00").rename(data / "c99")
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**saved, "data": str(data)}))
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    assert "are not the ones" in capsys.readouterr().err


@pytest.mark.parametrize("entry, value, said", [
    ("best", "x", "best is 'x'"),  # failed only after a whole epoch had trained
    ("loader", "garbage", "loader is not"),
    ("torch_rng", torch.zeros(5), "torch_rng is a torch.float32 tensor"),
    ("classes", [1, 2], "classes is not a list"),
    ("metrics", {"epoch": 99}, "metrics is the line of epoch 99, the checkpoint of epoch 1"),  # appended on resume
])
def test_malformed_checkpoint_entries_are_named_before_any_work(trained_run, tmp_path, capsys, entry, value, said):
    run = _copy(trained_run, tmp_path)
    state = load_checkpoint(run / CHECKPOINT)
    state[entry] = value
    torch.save(state, run / CHECKPOINT)
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert said in err and "not a dali-has checkpoint" in err
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # no epoch trained


def _optimizer_state_of_another_shape(state):
    buffer = next(iter(state["optimizer"]["state"].values()))
    buffer["momentum_buffer"] = torch.zeros(3)


@pytest.mark.parametrize("edit, said", [
    (_optimizer_state_of_another_shape, "optimizer state momentum_buffer of shape (3,) belongs to no parameter"),
    (lambda state: state["optimizer"]["param_groups"][0].update(momentum=None), "momentum=None is not a number"),
    (lambda state: state.update(torch_rng=torch.zeros(10, dtype=torch.uint8)), "torch_rng is not torch's random"),
    (lambda state: next(iter(state["model"].values())).fill_(float("nan")), "NaN or infinite values in its weights"),
    (lambda state: state["optimizer"]["state"][0]["momentum_buffer"].fill_(float("inf")),  # the first of many
     "NaN or infinite values in its optimizer state (momentum_buffer of parameter 0)"),
    (lambda state: state.update(num_classes=10**9), "num_classes=1000000000 is the size of none of its weights"),
    (lambda state: state.update(classes=["a", "b"]), "classes names 2 classes, num_classes is"),
    # unpickling allows a dict that holds itself: checking its weights recursed into a RecursionError traceback
    (lambda state: state["model"].update(loop=state["model"]), "Unexpected key(s) in state_dict: \"loop\""),
])
def test_checkpoint_contents_that_would_fail_in_training_are_refused_before_any_epoch(trained_run, tmp_path, capsys,
                                                                                       edit, said):
    """Each failed with a traceback in the first step (or allocated num_classes outputs: 256 GB), or trained a
    whole epoch of NaN and blamed the learning rate."""
    run = _copy(trained_run, tmp_path)
    state = load_checkpoint(run / CHECKPOINT)
    edit(state)
    torch.save(state, run / CHECKPOINT)
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    assert said in capsys.readouterr().err
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # no epoch trained


def test_what_is_in_the_place_of_a_checkpoint_is_dealt_with_before_any_epoch(trained_run, tmp_path, capsys):
    """A link at checkpoint.pt.tmp made the save write through it, outside the run, and then made checkpoint.pt
    that link; a folder at best.pt failed after the epoch had trained, advising to free disk space."""
    run, victim = _copy(trained_run, tmp_path), tmp_path / "victim.txt"
    victim.write_text("precious")
    for name in (CHECKPOINT, "best.pt"):
        for left in temporaries(run / name):
            left.symlink_to(victim)
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    assert victim.read_text() == "precious" and not (run / CHECKPOINT).is_symlink()
    assert load_checkpoint(run / CHECKPOINT)["epoch"] == 2
    (run / "best.pt").mkdir()
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    assert "best.pt is not a file (a folder?), and `dali-has train` writes its best.pt there" in capsys.readouterr().err
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2  # no epoch trained
    (run / "best.pt").rmdir()
    (run / CHECKPOINT).rename(run / "kept.pt")
    (run / CHECKPOINT).mkdir()
    with pytest.raises(ValueError, match="checkpoint.pt is not a file"):  # said "stopped before its first epoch"
        load_checkpoint(run / CHECKPOINT)


def test_checkpoints_carry_checksums_even_where_the_process_turned_them_off(tmp_path):
    # torch writes a CRC-32 of every record unless told not to; load_checkpoint reads them, so a checkpoint written
    # without them would be refused as damaged.
    was = torch.serialization.get_crc32_options()
    torch.serialization.set_crc32_options(False)
    try:
        save_checkpoint(tmp_path / CHECKPOINT, {"weights": torch.ones(8)})
        assert torch.serialization.get_crc32_options() is False  # the caller's setting is left as it was
    finally:
        torch.serialization.set_crc32_options(was)
    with zipfile.ZipFile(tmp_path / CHECKPOINT) as archive:
        assert archive.testzip() is None and all(record.CRC for record in archive.infolist())


def test_a_checkpoint_written_without_checksums_loads_and_torch_without_the_option_saves(trained_run, tmp_path,
                                                                                        monkeypatch):
    """torch writes CRC 0 when told not to compute them: such a file is not damaged. torch before 2.6 has no
    get_crc32_options (pyproject allows 2.4): saving failed with an AttributeError after the first epoch."""
    state = load_checkpoint(trained_run / CHECKPOINT)
    was = torch.serialization.get_crc32_options()
    torch.serialization.set_crc32_options(False)
    try:
        torch.save(state, tmp_path / CHECKPOINT)
    finally:
        torch.serialization.set_crc32_options(was)
    with zipfile.ZipFile(tmp_path / CHECKPOINT) as archive:
        assert not any(record.CRC for record in archive.infolist())
    assert load_checkpoint(tmp_path / CHECKPOINT)["epoch"] == state["epoch"]
    monkeypatch.setattr(checkpoint, "_CRC32_OPTION", False)  # torch < 2.6: neither function, CRCs always written
    monkeypatch.setattr(torch.serialization, "set_crc32_options", None)  # must not be called
    monkeypatch.setattr(torch.serialization, "get_crc32_options", lambda: True)  # what torch.save then does
    save_checkpoint(tmp_path / "old_torch.pt", state)
    assert load_checkpoint(tmp_path / "old_torch.pt")["epoch"] == state["epoch"]


def test_a_checkpoint_that_cannot_be_written_is_named_and_leaves_the_old_one(trained_run, tmp_path, monkeypatch):
    # On a full disk torch.save raised its zip writer's RuntimeError ("unexpected pos ..."), naming no file, and
    # left checkpoint.pt.tmp behind, after which the folder could neither start a run nor resume.
    run = _copy(trained_run, tmp_path)
    before = (run / CHECKPOINT).read_bytes()
    state = load_checkpoint(run / CHECKPOINT)

    def full_disk(obj, f):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 48960 vs 48848")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=f"could not write {run / CHECKPOINT} .*unexpected pos.*free disk space"):
        save_checkpoint(run / CHECKPOINT, state)
    assert (run / CHECKPOINT).read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.json", "metrics.jsonl", "train.lock"]


@pytest.mark.parametrize("left", [0, 1])  # this version's temporary name, or NAME.tmp of versions before it
def test_a_run_killed_while_writing_its_first_checkpoint_can_start_over(tiny_synth, tmp_path, left):
    run = tmp_path / "run"
    fit(tiny_config(tiny_synth, run))
    (run / CHECKPOINT).rename(temporaries(run / CHECKPOINT)[left])  # killed before the rename
    (run / "metrics.jsonl").write_bytes(b"")  # its epoch line comes after the checkpoint
    assert main(["train", "--data", str(tiny_synth / "train"), "--out", str(run), "--epochs", "1",
                 "--batch-size", "8", "--crop", "64", "--num-threads", "1", "--max-steps-per-epoch", "1",
                 "--model-opt", "stem=small", "--model-opt", "width=0.125"]) == 0
    assert not any(path.exists() for path in temporaries(run / CHECKPOINT))


def test_a_run_stopped_in_its_first_epoch_starts_again_with_the_same_command(tiny_synth, tmp_path, monkeypatch,
                                                                              capsys):
    """Ctrl-C in epoch 1 said "run the same command again", which was refused: the run had made its metrics.jsonl
    (empty), not one of the files a run stopped before its first checkpoint may leave."""
    from train import trainer

    argv = ["train", "--data", str(tiny_synth / "train"), "--out", str(tmp_path / "run"), "--epochs", "1",
            "--batch-size", "8", "--crop", "64", "--num-threads", "1", "--max-steps-per-epoch", "1",
            "--model-opt", "stem=small", "--model-opt", "width=0.125"]

    def interrupted(*args):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "_run_epoch", interrupted)
        assert main(argv) == 130
    assert "nothing to resume: run the same command again" in capsys.readouterr().err
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == b""
    assert main(argv) == 0
    (tmp_path / "run" / "checkpoint.pt").unlink()  # an epoch line without its checkpoint: not a stopped start
    assert main(argv) == 2 and "holding other files (metrics.jsonl)" in capsys.readouterr().err


def test_resuming_a_finished_run_says_there_is_nothing_to_do(trained_run, tmp_path, capsys):
    run = _copy(trained_run, tmp_path)  # trained 1 epoch
    assert main(["train", "--resume", str(run)]) == 0  # a requeued job that already finished
    assert "has trained its 1 epochs; nothing to do (give --epochs N > 1" in capsys.readouterr().out
    run2 = _copy(trained_run, tmp_path / "b")
    assert main(["train", "--resume", str(run2), "--epochs", "2"]) == 0
    config = (run2 / "config.json").read_bytes()
    assert main(["train", "--resume", str(run2), "--epochs", "1"]) == 2
    assert "has trained 2 epochs, more than epochs=1; give --epochs N > 2" in capsys.readouterr().err
    assert (run2 / "config.json").read_bytes() == config  # the refused epochs=1 was saved: no resume took it
    assert main(["train", "--resume", str(run2)]) == 0


class Stop(BaseException):
    """A kill at a chosen point of the trainer's saving (BaseException: nothing catches it on the way out)."""


def test_a_stop_while_an_epoch_is_saved_loses_neither_its_metrics_line_nor_the_best_weights(tiny_synth, tmp_path,
                                                                                            monkeypatch):
    """Before: a stop after checkpoint.pt lost the epoch's metrics.jsonl line for good, and one while best.pt was
    written kept an older best.pt for the rest of the run while every record named the newer epoch."""
    from train import trainer
    from train.config import Validation

    cfg = tiny_config(tiny_synth, tmp_path / "run", epochs=3, val=Validation(data=str(tiny_synth / "test")))
    straight = tiny_config(tiny_synth, tmp_path / "straight", epochs=3, val=Validation(data=str(tiny_synth / "test")))
    fit(straight)
    write, save = trainer.EpochLog.write, trainer.save_checkpoint

    def stop_before_line_2(log, metrics):
        if metrics["epoch"] == 2:
            raise Stop
        write(log, metrics)

    with monkeypatch.context() as patch, pytest.raises(Stop):
        patch.setattr(trainer.EpochLog, "write", stop_before_line_2)
        fit(cfg)
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["epoch"] == 2  # saved, its line not written
    with open(tmp_path / "run" / "metrics.jsonl", "ab") as log:  # or cut while written: the next line joined it
        log.write(b'{"epoch": 2, "train_lo')

    fit(cfg, resume=True)
    def learned(run):  # each line's numbers that do not depend on timing
        return [{key: line[key] for key in ("epoch", "train_loss", "val", "best")}
                for line in map(json.loads, (tmp_path / run / "metrics.jsonl").read_text().splitlines())]

    assert learned("run") == learned("straight")  # epoch 2's line too, written by the resume

    def stop_in_best(path, state):
        if path.name == "best.pt":
            raise Stop
        save(path, state)

    with monkeypatch.context() as patch, pytest.raises(Stop):
        patch.setattr(trainer, "save_checkpoint", stop_in_best)
        fit(tiny_config(tiny_synth, tmp_path / "best", epochs=3, val=Validation(data=str(tiny_synth / "test"))))
    # Epoch 1 improved: with checkpoint.pt first, it said best = epoch 1 while no best.pt held it.
    assert not (tmp_path / "best" / CHECKPOINT).exists()


def test_a_first_epoch_stopped_after_best_pt_starts_again_with_the_same_command(tiny_synth, tmp_path, monkeypatch):
    """best.pt is written before checkpoint.pt: a stop in between left a folder --resume sent back to the train
    command ("stopped before its first epoch ended") and the train command refused ("holding other files")."""
    from train import trainer

    argv = ["train", "--data", str(tiny_synth / "train"), "--out", str(tmp_path / "run"), "--epochs", "1",
            "--batch-size", "8", "--crop", "64", "--num-threads", "1", "--max-steps-per-epoch", "1",
            "--model-opt", "stem=small", "--model-opt", "width=0.125", "--val-data", str(tiny_synth / "test")]
    save = trainer.save_checkpoint

    def stop_before_the_checkpoint(path, state):
        if path.name == CHECKPOINT:
            raise Stop
        save(path, state)

    with monkeypatch.context() as patch, pytest.raises(Stop):
        patch.setattr(trainer, "save_checkpoint", stop_before_the_checkpoint)
        main(argv)
    stopped = (tmp_path / "run" / "best.pt").stat()
    assert not (tmp_path / "run" / CHECKPOINT).exists()
    assert main(argv) == 0
    restarted = (tmp_path / "run" / "best.pt").stat()  # written again by this run, not the stopped one's
    assert (restarted.st_ino, restarted.st_mtime_ns) != (stopped.st_ino, stopped.st_mtime_ns)


def test_a_run_folder_has_one_writer_and_links_in_it_are_not_written_through(trained_run, tmp_path):
    """Before: two jobs given one --out both exited 0 with their metrics lines interleaved; a resume rewrote the
    file a config.json link pointed to and appended to the one a metrics.jsonl link pointed to."""
    from pipelines.own_files import sole_writer
    from train.checkpoint import RUN_LOCK
    from train.config import TrainConfig

    run = _copy(trained_run, tmp_path)
    cfg = dataclasses.replace(TrainConfig.load(run / "config.json"), out=str(run))
    with sole_writer(run / RUN_LOCK, "held by this test"):
        with pytest.raises(ValueError, match="another `dali-has train` is writing .*--resume it, or give another"):
            fit(dataclasses.replace(cfg, epochs=2), resume=True)
    outside = {name: tmp_path / f"victim-{name}" for name in ("config.json", "metrics.jsonl")}
    for name, victim in outside.items():
        victim.write_bytes((run / name).read_bytes())
        (run / name).unlink()
        (run / name).symlink_to(victim)
    with pytest.raises(ValueError, match="metrics.jsonl' is a link; dali-has writes its own files"):
        fit(dataclasses.replace(cfg, epochs=2), resume=True)
    (run / "metrics.jsonl").unlink()
    fit(dataclasses.replace(cfg, epochs=2), resume=True)
    assert not (run / "config.json").is_symlink()  # replaced by the run's own file
    assert {name: victim.read_bytes() for name, victim in outside.items()} == {
        "config.json": (trained_run / "config.json").read_bytes(),
        "metrics.jsonl": (trained_run / "metrics.jsonl").read_bytes()}


def test_missing_weights_and_one_class_data_are_explained(trained_run, tiny_synth, tmp_path, capsys):
    """Before: both missing files said "is not a run folder with that checkpoint", and one class trained to
    100 % top-1 on nothing."""
    assert main(["eval", "--data", str(tiny_synth / "test"), "--boxes", str(tiny_synth / "boxes.json"),
                 "--checkpoint", str(trained_run), "--best"]) == 2
    assert "was trained without --val-data, so no weights were chosen as best" in capsys.readouterr().err
    run = _copy(trained_run, tmp_path)
    (run / CHECKPOINT).unlink()  # stopped in its first epoch: config.json only
    assert main(["train", "--resume", str(run)]) == 2
    assert "stopped before its first epoch ended; start it again" in capsys.readouterr().err
    one = tmp_path / "one"
    first = sorted(p.name for p in (tiny_synth / "train").iterdir())[0]
    shutil.copytree(tiny_synth / "train" / first, one / "train" / first)
    with pytest.raises(ValueError, match="holds 1 class; a classifier needs at least 2"):
        fit(tiny_config(one, tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_a_run_folder_eval_cannot_write_in_is_refused_before_the_evaluation(trained_run, tiny_synth, monkeypatch,
                                                                             capsys):
    """cams.png goes to the run folder by default; a read-only one failed only after the whole evaluation. (Root
    writes in any folder here, so the folder is made unwritable by answering for it.)"""
    import train.commands.eval as eval_command
    monkeypatch.setattr(eval_command, "can_write_in", lambda folder: Path(folder) != trained_run)
    argv = ["eval", "--data", str(tiny_synth / "test"), "--boxes", str(tiny_synth / "boxes.json"),
            "--checkpoint", str(trained_run)]
    assert main(argv) == 2
    said = capsys.readouterr().err
    assert f"cannot write {trained_run / 'cams.png'}: the run folder is read-only" in said
    assert main([*argv, "--examples", "0"]) == 0  # no picture asked for: nothing to write there
    monkeypatch.undo()
    (trained_run / "cams.png").mkdir()  # said "give a file path" after the evaluation, for a path no one gave
    try:
        assert main(argv) == 2 and "cams.png: it is a folder" in capsys.readouterr().err
    finally:
        (trained_run / "cams.png").rmdir()
    (trained_run / "cams.png").symlink_to(trained_run / "gone.png")  # refused only after the evaluation
    try:
        assert main(argv) == 2 and "cams.png: it is a link" in capsys.readouterr().err
    finally:
        (trained_run / "cams.png").unlink()
    os.mkfifo(trained_run / "cams.png")  # writing the picture would wait for a reader forever
    try:
        assert main(argv) == 2 and "cams.png: it is not a regular file" in capsys.readouterr().err
    finally:
        (trained_run / "cams.png").unlink()


def test_hostile_run_files_are_one_line_errors_or_left_alone(trained_run, tmp_path, capsys):
    """A config.json nested 100,000 deep and a metrics.jsonl line {"epoch": Infinity} raised RecursionError and
    OverflowError tracebacks."""
    run = _copy(trained_run, tmp_path)
    config = (run / "config.json").read_text()
    (run / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    assert "config.json is not valid JSON (RecursionError" in capsys.readouterr().err
    (run / "config.json").write_text(config)
    (run / "metrics.jsonl").write_text('{"epoch": Infinity}\n')  # not a line the run wrote: left as it is
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    assert load_checkpoint(run / CHECKPOINT)["epoch"] == 2


def test_a_label_that_would_make_a_huge_classifier_is_refused_before_the_model_is_built(tiny_synth, tmp_path,
                                                                                        monkeypatch):
    """One line "c01/x.jpg 5000000" in a file list (its classes are its largest label + 1) built a classifier that
    grew past 24 GB before anything said why. Many classes with more samples than classes train (a first bound
    of 100,000 classes refused Google Landmarks v2)."""
    first, second = sorted((tiny_synth / "train").iterdir())[:2]
    images = sorted(first.iterdir())[:4] + sorted(second.iterdir())[:1]

    def train_on(labels):
        (tmp_path / "list.txt").write_text("".join(f"{path} {label}\n" for path, label in zip(images, labels)))
        return fit(dataclasses.replace(tiny_config(tiny_synth, tmp_path / "r"), data=str(tmp_path / "list.txt")))

    with pytest.raises(ValueError, match="largest label is 5,000,000, .*of 5,000,001 classes for 5 samples"):
        train_on([0, 0, 0, 0, 5_000_000])
    assert not (tmp_path / "r").exists()
    monkeypatch.setattr(trainer, "SPARSE_CLASSES", 3)
    with pytest.raises(ValueError, match="largest label is 5, which makes a classifier of 6 classes for 5 samples"):
        train_on([0, 1, 2, 3, 5])
    assert train_on([0, 1, 2, 3, 4])  # 5 classes, 5 samples
