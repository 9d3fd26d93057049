import json

import numpy as np
import pytest

from pipelines import TrainAugment
from train.wsol.box_formats import Annotation
from train.cli import main
from train.wsol.evaluate import boxes_in_crop, crop_geometry, evaluate, match_annotations
from train.trainer import fit
from tests.train.test_trainer import tiny_config


def test_boxes_follow_the_resize_and_centre_crop():
    # 200x100 image, shorter side -> 64, crop 56: scale 0.64, resized 128x64, offsets (36, 4).
    assert crop_geometry(200, 100, 64, 56) == (0.64, 36.0, 4.0)
    box = boxes_in_crop([[100, 50, 150, 90]], 200, 100, 64, 56)
    np.testing.assert_array_equal(box, [[28, 28, 55, 53]])  # 96-36=60 -> clipped to 55
    np.testing.assert_array_equal(boxes_in_crop([[0, 0, 63, 63]], 64, 64, 64, 64), [[0, 0, 63, 63]])


def test_annotations_are_matched_in_loader_order_and_mismatches_named(tiny_synth):
    test = tiny_synth / "test"
    names = sorted(p.relative_to(test).as_posix() for p in test.rglob("*.jpg"))
    table = {n: Annotation(int(n[1:3]), [(1, 1, 5, 5)]) for n in names}
    matched = match_annotations(str(test), table)
    assert [str(p.relative_to(test)) for p, _ in matched] == names
    wrong = dict(table)
    wrong[names[0]] = Annotation(2 if table[names[0]].label != 2 else 1, [(1, 1, 5, 5)])
    with pytest.raises(ValueError, match=f"{names[0]}: the box file says class"):
        match_annotations(str(test), wrong)
    with pytest.raises(ValueError, match="1 image\\(s\\) .* have no boxes"):
        match_annotations(str(test), {k: v for k, v in table.items() if k != names[-1]})


def test_eval_command_on_a_trained_run(tiny_synth, tmp_path, capsys):
    fit(tiny_config(tiny_synth, tmp_path / "base", epochs=1, augment=TrainAugment()))
    fit(tiny_config(tiny_synth, tmp_path / "has", epochs=1))
    result = evaluate(tmp_path / "base", str(tiny_synth / "test"), str(tiny_synth / "boxes.json"), examples=3,
                      progress=False)
    assert result.metrics["count"] == 12 and 0 <= result.metrics["gt_known_loc"] <= 100
    assert len(result.examples) == 3 and result.examples[0].cam.shape == (64, 64)
    ten = evaluate(tmp_path / "base", str(tiny_synth / "test"), str(tiny_synth / "boxes.json"), ten_crop=True,
                   progress=False)
    assert ten.metrics["count"] == 12 and ten.metrics["gt_known_loc"] == result.metrics["gt_known_loc"]
    code = main(["eval", "--data", str(tiny_synth / "test"), "--boxes", str(tiny_synth / "boxes.json"),
                 "--checkpoint", str(tmp_path / "base"), str(tmp_path / "has"), "--json", str(tmp_path / "m.json"),
                 "--png", str(tmp_path / "cams.png"), "--examples", "4"])
    assert code == 0
    out = capsys.readouterr().out
    assert "GT-known Loc" in out and "base" in out and "has" in out
    assert set(json.loads((tmp_path / "m.json").read_text())) == {"base", "has"}
    assert (tmp_path / "cams.png").stat().st_size > 0
