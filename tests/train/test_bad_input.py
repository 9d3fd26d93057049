"""Numbers and inputs that cannot be right: each is one line naming the argument or file, and exit code 2.

Every case here was tried as a careless user would and once ended in a traceback, a DALI crash or silent
nonsense (NaN weights, a wrapped label, a clipped box).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipelines import UnreadableImageError, make_loader
from pipelines.files import read_file_list
from tests.pipelines.bad_images import jpeg_bytes
from tests.train.test_trainer import tiny_config
from train.cli import MESSAGE_LIMIT, build_parser, main
from train.config import TrainConfig
from train.trainer import fit

TRAIN = ["train", "--data", "d", "--out", "o"]


@pytest.mark.parametrize("extra, named", [
    (["--lr", "nan"], "lr=nan"),
    (["--lr", "inf"], "lr=inf"),
    (["--momentum", "nan"], "momentum=nan"),
    (["--mean", "inf", "0", "0"], "mean="),
    (["--std", "1", "nan", "1"], "std="),
    (["--has-p-hide", "nan"], "p_hide=nan"),
    (["--seed", str(2**64)], f"seed={2**64}"),
    (["--crop", "100000"], "crop=100000 must be a whole number >= 1 and <= 8192"),
    (["--batch-size", str(10**9)], f"batch_size={10**9} must be a whole number >= 1 and <= 65535"),
    (["--batch-size", "65536"], "batch_size=65536"),  # accepted, and refused by the GPU operators at their first run
    (["--num-threads", "100000"], "num_threads=100000 must be a whole number >= 1 and <= 1024"),  # DALI aborted
])
def test_train_refuses_numbers_that_cannot_be_right(capsys, extra, named):
    assert main([*TRAIN, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dali-has train: error: ") and named in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("kwargs, named", [
    ({"seed": 2**64}, "seed="), ({"crop": 100000}, "crop=100000"), ({"batch_size": 10**9}, "batch_size="),
    ({"mean": (float("inf"), 0, 0)}, "mean="),
])
def test_make_loader_refuses_them_too(tmp_path, kwargs, named):
    (tmp_path / "c").mkdir()
    (tmp_path / "c/a.jpg").write_bytes(jpeg_bytes())
    with pytest.raises(ValueError, match=named):
        make_loader(tmp_path, **{"train": True, "batch_size": 2, **kwargs})


@pytest.mark.parametrize("key, value", [
    ("epochs", "3"), ("lr", "0.1"), ("lr_milestones", 5), ("lr_milestones", ["a"]), ("batch_size", 2.5),
    ("crop", None), ("model", []), ("model", {"depth": 3}), ("augment", 5), ("feature_has", 5),
    ("feature_has", {}), ("mean", "abc"), ("seed", 2**64), ("channels_last", "yes"), ("data", 5), ("out", None),
    ("skip_bad_files", "no"), ("val", 5), ("val", {}), ("val", {"data": 5}),
])
def test_config_json_values_of_the_wrong_type_are_named(key, value):
    with pytest.raises(ValueError) as error:
        TrainConfig.from_dict({"data": "d", "out": "o", key: value})
    assert key in str(error.value)


def test_resume_from_a_config_json_with_a_wrong_value_names_file_and_key(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"data": "/d", "out": "o", "lr_milestones": 5}))
    assert main(["train", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "config.json") in err and "lr_milestones=5" in err


@pytest.mark.parametrize("model, said", [({"width": 1000}, "width=1000"), ({"stem": "huge"}, "stem")])
def test_model_options_of_a_config_json_are_named_with_the_file(tmp_path, capsys, model, said):
    """They were checked only when the model was built, and the message did not name config.json."""
    (tmp_path / "config.json").write_text(json.dumps({"data": "/d", "out": "o", "arch": "alexnet_gap", "model": model}))
    assert main(["train", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'config.json'}: " in err and said in err


def test_an_image_given_as_data_is_named(tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes())
    with pytest.raises(ValueError, match="photo.jpg' is a binary file \\(an image\\?\\), not a file list"):
        make_loader(photo, train=True, batch_size=2)


def test_file_list_labels_beyond_int32_are_refused(tmp_path):
    # DALI keeps labels as 32-bit integers: 4294967296 would silently become 0.
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "list.txt").write_text(f"a.jpg 0\na.jpg {2**31 - 1}\na.jpg {2**32}\n")
    with pytest.raises(ValueError, match=r"list\.txt' line 3: label 4294967296 is too large"):
        read_file_list(tmp_path / "list.txt")
    (tmp_path / "list.txt").write_text(f"a.jpg 0\na.jpg {2**31 - 1}\n")
    assert [label for _, label in read_file_list(tmp_path / "list.txt").samples] == [0, 2**31 - 1]


def test_show_reports_unreadable_images(tiny_synth, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_synth / "test", data)
    (next(data.iterdir()) / "notes.jpg").write_text("not an image")
    assert main(["show", "--data", str(data), "--out", str(tmp_path / "x.png"), "--crop", "32"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dali-has show: error: ") and "notes.jpg: is not an image file" in err
    assert not (tmp_path / "x.png").exists()
    assert issubclass(UnreadableImageError, RuntimeError)  # caught by cli.main although not a ValueError


def test_bare_os_errors_say_what_to_do(tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    assert main(["synth-actions", "--out", str(tmp_path / "a-file" / "x")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'a-file' / 'x'}: Not a directory; a part of this path is a file, not a folder" in err


def test_a_name_from_the_data_too_long_to_read_is_cut_in_the_middle(tmp_path, capsys):
    """A file list's 1 MB line came back whole on stderr."""
    listed = tmp_path / "list.txt"
    listed.write_text("a" * 1_000_000 + "b.jpg 0\n")
    assert main(["scan", "--data", str(listed), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err) < MESSAGE_LIMIT + 200 and f"{str(listed)!r} entry 1: listed file 'aaa" in err and "b.jpg" in err
    assert re.search(r"a \[\.\.\. [\d,]+ characters left out \.\.\.\] a", err)


@pytest.mark.parametrize("command, said", [("train", "continue with --resume RUN_DIR"),
                                           ("train-early", "no epoch had finished, so there is nothing to resume"),
                                           ("mean", "interrupted")])
def test_ctrl_c_is_one_line_saying_what_next_not_a_traceback(monkeypatch, capsys, tmp_path, command, said):
    """Before, every long command ended a Ctrl-C in a multi-frame traceback (and one in the first epoch said to
    --resume a run that had no checkpoint)."""
    if command == "train":
        (tmp_path / "o").mkdir()
        (tmp_path / "o" / "checkpoint.pt").write_bytes(b"")
    command = command.removesuffix("-early")
    def interrupted(args):
        raise KeyboardInterrupt

    parser = build_parser()
    monkeypatch.setattr("train.cli.build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices[command].set_defaults(func=interrupted)
    argv = {"train": ["train", "--data", "d", "--out", str(tmp_path / "o")], "mean": ["mean", "--data", "d"]}[command]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err.startswith(f"dali-has {command}: interrupted") and said in err and "Traceback" not in err


def test_ctrl_c_while_the_command_imports_is_one_line_too(monkeypatch, capsys):
    """The console script imports train.cli before main runs: it imported torch and DALI (2 s), and a Ctrl-C then
    was a traceback. Now they are imported inside main."""
    found = subprocess.run([sys.executable, "-c", "import sys, train.cli; print(sorted({'torch', 'pipelines', "
                            "'nvidia.dali'} & set(sys.modules)))"], capture_output=True, text=True, check=True,
                           cwd=Path(__file__).resolve().parents[2])
    assert found.stdout.strip() == "[]"

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr("train.cli.build_parser", interrupted)  # a Ctrl-C while the commands import
    assert main(["train", "--data", "d"]) == 130
    err = capsys.readouterr().err
    assert err == "dali-has: interrupted\n"


@pytest.mark.parametrize("option, value, named", [("--columns", "0", "--columns=0"), ("--count", "0", "--count=0"),
                                                  ("--scale", "-1", "--scale=-1"),
                                                  ("--scale", "1000", "the picture would be")])
def test_show_names_its_bad_options(tiny_synth, tmp_path, capsys, option, value, named):
    """Before: a ZeroDivisionError, batch_size=0 for --count, PIL's words, and an out-of-memory kill."""
    argv = ["show", "--data", str(tiny_synth / "train"), "--crop", "32", "--out", str(tmp_path / "s.png")]
    assert main([*argv, option, value]) == 2
    assert named in capsys.readouterr().err


@pytest.mark.parametrize("argv, said", [
    (["mean", "--json", "{data}/a"], "expected a file name ending in .json"),  # a folder: refused after the work
    (["scan", "--write-list", "{data}/a/00000.jpg"], "named like a data file"),  # overwrote a training image
    (["scan", "--json", "{data}/missing/r.json"], "does not exist"),
    (["scan", "--json", "/proc/r.json"], "is not writable here"),  # failed after the whole scan
    (["scan", "--json", "{data}/pipe.json"], "is not a regular file"),  # hung at the end, writing into a FIFO
    (["show", "--out", "{data}/a"], "ending in .png"),
])
def test_output_files_are_checked_before_any_work(tmp_path, capsys, argv, said):
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    (data / "a" / "00000.jpg").write_bytes(jpeg_bytes())
    os.mkfifo(data / "pipe.json")
    before = (data / "a" / "00000.jpg").read_bytes()
    with pytest.raises(SystemExit) as stop:
        main([argv[0], "--data", str(data), *(a.format(data=data) for a in argv[1:])])
    assert stop.value.code == 2 and said in capsys.readouterr().err
    assert (data / "a" / "00000.jpg").read_bytes() == before


@pytest.mark.parametrize("argv", [
    ["synth", "--out", ""], ["synth-actions", "--out", " "], ["prepare", "--data", "d", "--out", ""],
    ["demo", "--out", ""], ["gpu-check", "--out", ""],
])
def test_an_empty_output_folder_is_refused_not_taken_as_the_current_one(tmp_path, monkeypatch, capsys, argv):
    # `--out "$OUT"` with OUT unset: synth-actions overwrote train.json, test.json and features/ of the current
    # folder (the "must be empty" check skips a path that does not exist, and "" does not).
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.json").write_text("mine")
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and "an empty path; give the folder to write" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["train.json"] and (tmp_path / "train.json").read_text() == "mine"


@pytest.mark.parametrize("argv", [
    ["action-demo", "--data", "{data}", "--json", "{data}/test.json"],  # overwrote the test index after training
    ["eval", "--data", "{data}", "--boxes", "{boxes}", "--checkpoint", "c.pt", "--json", "{boxes}"],
    ["action-demo", "--data", "{data}", "--json", "{data}/sub/new.json"],
    ["eval", "--data", "{data}", "--boxes", "{data}", "--checkpoint", "c.pt", "--png", "{data}/sub/cams.png"],
    ["mean", "--data", "{list}", "--json", "{list}"],  # a file list given as --data
    ["show", "--data", "{data}", "--out", "{data}/sub/0.png"],  # replaced a training image with the grid
])
def test_an_output_file_inside_what_the_command_reads_is_refused_before_any_work(tmp_path, capsys, argv):
    data, boxes, listed = tmp_path / "data", tmp_path / "boxes.json", tmp_path / "list.json"
    (data / "sub").mkdir(parents=True)
    (data / "test.json").write_text("index")
    boxes.write_text("boxes")
    listed.write_text("a.jpg 0")
    assert main([a.format(data=data, boxes=boxes, list=listed) for a in argv]) == 2
    err = capsys.readouterr().err  # one line, no usage block
    assert err.count("\n") == 1 and "which this command reads; write it outside the data set" in err
    assert (" would overwrite " in err) == (argv[-1] in ("{list}", "{boxes}"))  # else it writes inside a folder
    assert (data / "test.json").read_text() == "index" and boxes.read_text() == "boxes"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["boxes.json", "data", "list.json", "sub", "test.json"]


def test_two_outputs_naming_one_file_are_refused_before_any_work(tiny_synth, tmp_path, capsys):
    """`scan` said it wrote the file list, then wrote its report over it."""
    assert main(["scan", "--data", str(tiny_synth / "test"), "--write-list", str(tmp_path / "o.json"),
                 "--json", str(tmp_path / "o.json"), "--no-progress"]) == 2
    assert f"--write-list and --json both name {tmp_path / 'o.json'}" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


HUGE = str(10**30)


@pytest.mark.parametrize("argv, said", [  # each failed in a traceback, some after writing part of the output
    (["synth", "--out", "{tmp}/s", "--n-train", HUGE], "n_train=1000000000000000000000000000000"),
    (["synth-actions", "--out", "{tmp}/s", "--train-videos", HUGE], "train_videos="),
    (["action-demo", "--data", "{tmp}", "--epochs", HUGE], "epochs="),
    (["action-demo", "--data", "{tmp}", "--seeds", HUGE], "seeds="),
    (["demo", "--out", "{tmp}/s", "--jobs", HUGE], "jobs="),
    (["demo", "--out", "{tmp}/s", "--epochs", HUGE], "epochs="),
    (["demo", "--out", "{tmp}/s", "--epochs", "0"], "epochs=0"),  # refused after the data set was generated
    (["bench", "--data", "{tmp}", "--device", "cpu", "--crop", HUGE], "crop="),
])
def test_huge_counts_are_refused_before_anything_is_written(tmp_path, capsys, argv, said):
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("option", ["--data", "--val-data"])
def test_a_run_folder_inside_the_data_folder_is_refused(tiny_synth, tmp_path, capsys, option):
    # It became a class folder: later runs trained on 4 classes, and the run itself could not resume.
    train = tiny_synth / "train"
    data = {"--data": train, "--val-data": tiny_synth / "test"}[option]
    code = main(["train", "--data", str(train), "--val-data", str(tiny_synth / "test"), "--out", str(data / "run"),
                 "--epochs", "1"])
    assert code == 2 and f"is within the {option} folder" in capsys.readouterr().err
    assert not (data / "run").exists()


@pytest.mark.parametrize("argv", [["prepare", "--data", "", "--out", "{tmp}/p"], ["mean", "--data", ""],
                                  ["scan", "--data", ""],
                                  ["train", "--data", "{data}", "--val-data", "", "--out", "{tmp}/r", "--epochs", "1"]])
def test_an_empty_data_path_is_refused_not_taken_as_the_current_folder(tiny_synth, tmp_path, monkeypatch, capsys,
                                                                       argv):
    monkeypatch.chdir(tiny_synth / "train")  # a class tree: "" read as "." would be used
    code = main([a.format(tmp=tmp_path, data=tiny_synth / "train") for a in argv])
    assert code == 2 and "data='' is an empty path" in capsys.readouterr().err  # validation data='' for train
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


@pytest.mark.parametrize("argv, said", [
    (["eval", "--data", "{data}", "--boxes", "", "--checkpoint", "{tmp}"], "--boxes: an empty path"),
    (["eval", "--data", "{data}", "--boxes", "{tmp}", "--checkpoint", ""], "--checkpoint: an empty path"),
    (["train", "--resume", ""], "--resume: an empty path"),
])
def test_an_empty_input_path_is_named_as_such(tiny_synth, tmp_path, capsys, argv, said):
    """They were read as the current folder and named as '.' or as a file in it."""
    with pytest.raises(SystemExit) as stop:
        main([a.format(tmp=tmp_path, data=tiny_synth / "test") for a in argv])
    assert stop.value.code == 2 and said in capsys.readouterr().err


def test_an_empty_action_data_path_is_named_as_such(capsys):
    assert main(["action-demo", "--data", ""]) == 2
    assert "data='' is an empty path" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="what a machine without CUDA says")
def test_gpu_without_cuda_and_a_stray_rank_are_one_line(tiny_synth, tmp_path, capsys, monkeypatch):
    """Before: a traceback (train: re-raised RuntimeError; eval: torch's "Found no NVIDIA driver"), and a RANK left
    in the shell was "shard_id=1 must be a whole number >= 0 and <= 0"."""
    train = ["train", "--data", str(tiny_synth / "train"), "--out", str(tmp_path / "run"), "--epochs", "1"]
    assert main([*train, "--device", "gpu"]) == 2
    assert "CUDA is not available here; use --device cpu" in capsys.readouterr().err
    fit(tiny_config(tiny_synth, tmp_path / "cpu", epochs=1, max_steps_per_epoch=1))
    assert main(["eval", "--data", str(tiny_synth / "test"), "--boxes", str(tiny_synth / "boxes.json"),
                 "--checkpoint", str(tmp_path / "cpu"), "--device", "gpu"]) == 2
    assert "CUDA is not available here" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "1")
    assert main(train) == 2
    assert "RANK=1 of WORLD_SIZE=1; torchrun sets both" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    monkeypatch.setenv("RANK", "abc")  # was "invalid literal for int() with base 10: 'abc'"
    assert main(train) == 2
    assert "the environment variable RANK='abc' is not a whole number" in capsys.readouterr().err
    monkeypatch.delenv("RANK")
    monkeypatch.setenv("WORLD_SIZE", "2")  # was "waiting for all 2 ranks at ?:?", then torch's "RANK expected"
    assert main(train) == 2
    assert "WORLD_SIZE=2 but not RANK, MASTER_ADDR, MASTER_PORT; start the ranks with torchrun" in (
        capsys.readouterr().err)


def test_an_unknown_option_is_refused_with_the_commands_usage(capsys):
    """It was refused with the top-level usage (`dali-has [-h] COMMAND ...`), which lists no option of train."""
    with pytest.raises(SystemExit) as stop:
        main(["train", "--data", "d", "--out", "o", "--bogus"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "dali-has train: error: unrecognized arguments: --bogus" in err
    assert "--model-opt" in err  # train's usage


def test_an_output_path_that_is_a_link_loop_is_one_line(tiny_synth, tmp_path, capsys):
    """The check of outputs against inputs raised "Symlink loop" in a traceback."""
    (tmp_path / "a.json").symlink_to(tmp_path / "b.json")
    (tmp_path / "b.json").symlink_to(tmp_path / "a.json")
    assert main(["scan", "--data", str(tiny_synth / "test"), "--json", str(tmp_path / "a.json"), "--no-progress"]) == 2
    assert "Too many levels of symbolic links" in capsys.readouterr().err
