"""`dali-has synth` (train.commands.synth) through the CLI entry point."""
from train.cli import main


def test_synth_command_writes_a_small_dataset(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["synth", "--out", str(out), "--n-train", "12", "--n-test", "6", "--classes", "3",
                 "--size", "48", "--seed", "5", "--no-progress"]) == 0
    assert len(list((out / "train").rglob("*.jpg"))) == 12 and len(list((out / "test").rglob("*.jpg"))) == 6
    assert sorted(p.name for p in (out / "test").iterdir()) == ["c00", "c01", "c02"]
    assert (out / "boxes.json").is_file() and (out / "README.txt").is_file()
    assert "wrote 12 train + 6 test images" in capsys.readouterr().out


def test_synth_command_reports_bad_settings_without_a_traceback(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "d"), "--classes", "1", "--no-progress"]) == 2
    assert "dali-has synth: error: classes=1" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    assert main(["synth", "--out", str(tmp_path / "full"), "--no-progress"]) == 2
    assert "not an empty folder" in capsys.readouterr().err
