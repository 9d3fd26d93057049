"""The options every command spells alike (`train.commands.arguments`)."""
import pytest
import torch

from train.cli import build_parser, main
from train.commands.arguments import DEVICE_DEFAULT_HELP
from train.commands.train import config_from_args

DEVICE_COMMANDS = ("train", "eval", "mean", "demo", "bench")


@pytest.mark.parametrize("cuda", [True, False])
def test_every_command_runs_on_the_gpu_when_cuda_is_visible_unless_told(cuda, tiny_synth, tmp_path, monkeypatch):
    """train, eval and mean took the CPU on a GPU machine unless told, while demo and bench took the GPU."""
    parser = build_parser()
    for command in DEVICE_COMMANDS:
        action = next(a for a in parser._subparsers._group_actions[0].choices[command]._actions
                      if a.dest == "device")
        assert action.default is None and action.help.endswith(DEVICE_DEFAULT_HELP)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    args = parser.parse_args(["train", "--data", str(tiny_synth / "train"), "--out", str(tmp_path / "run")])
    cfg, resumes = config_from_args(args)
    assert cfg.device == ("gpu" if cuda else "cpu") and not resumes
    seen = {}
    monkeypatch.setattr("pipelines.dataset_mean.dataset_mean", lambda data, **kwargs: seen.update(kwargs))
    with pytest.raises(AttributeError):  # the stand-in returns no statistics to print
        main(["mean", "--data", str(tiny_synth / "train"), "--no-progress"])
    assert seen["device"] == ("gpu" if cuda else "cpu")


def test_every_command_with_progress_bars_takes_no_progress():
    """eval showed bars and refused --no-progress, which the other commands take."""
    args = build_parser().parse_args(["eval", "--data", "d", "--boxes", "b", "--checkpoint", "r", "--no-progress"])
    assert args.no_progress is True
