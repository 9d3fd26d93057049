"""`dali-has mean` through `train.cli.main`."""
import json

import numpy as np
from PIL import Image

from train.cli import main


def test_mean_prints_and_writes_json(tmp_path, capsys):
    pixels = np.zeros((4, 5, 3), dtype=np.uint8)
    pixels[..., 0], pixels[:2, :, 1] = 255, 51  # R all 255; G half 51, half 0; B 0
    (tmp_path / "data/c").mkdir(parents=True)
    Image.fromarray(pixels).save(tmp_path / "data/c/a.png")
    assert main(["mean", "--data", str(tmp_path / "data"), "--json", str(tmp_path / "m.json"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "1 images, 20 pixels" in out
    assert "mean (0..255): 255.0000 25.5000 0.0000" in out
    assert "std  (0..255): 0.0000 25.5000 0.0000" in out
    assert "mean (0..1):   1.000000 0.100000 0.000000" in out
    stats = json.loads((tmp_path / "m.json").read_text())
    assert stats["mean"] == [255.0, 25.5, 0.0] and stats["std_01"] == [0.0, 0.1, 0.0]


def test_mean_bad_input_exits_2(tmp_path, capsys):
    assert main(["mean", "--data", str(tmp_path), "--no-progress"]) == 2
    assert "has no class folders" in capsys.readouterr().err
