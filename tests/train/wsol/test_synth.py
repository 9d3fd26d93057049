"""The generated WSOL dataset (train.wsol.synth): determinism, boxes, the part/body design, layout."""
import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from train.wsol.box_formats import read_synth
from train.wsol.localization import box_iou
from train.wsol.synth import SynthConfig, generate, render, sample_rng, split_labels

TINY = SynthConfig(n_train=30, n_test=10, classes=5, seed=3)


@pytest.fixture(scope="module")
def samples():
    cfg = SynthConfig()
    labels = split_labels(cfg, "train")[:300]
    return cfg, labels, [render(sample_rng(cfg, "train", i), int(k), cfg) for i, k in enumerate(labels)]


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    generate(tmp_path / "a", TINY, progress=False)
    generate(tmp_path / "b", TINY, progress=False)
    generate(tmp_path / "c", SynthConfig(n_train=30, n_test=10, classes=5, seed=4), progress=False)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b
    assert a["boxes.json"] != c["boxes.json"]
    assert sum(a[k] == c.get(k) for k in a if k.endswith(".jpg")) == 0


def test_an_image_depends_only_on_seed_split_and_index():
    cfg = SynthConfig()
    one = render(sample_rng(cfg, "test", 7), 3, cfg)
    again = render(sample_rng(SynthConfig(n_train=5), "test", 7), 3, cfg)  # other split sizes
    assert np.array_equal(one.image, again.image) and one.box == again.box
    assert not np.array_equal(one.image, render(sample_rng(cfg, "train", 7), 3, cfg).image)


def test_boxes_lie_inside_the_image_and_contain_the_head(samples):
    cfg, _, drawn = samples
    for s in drawn:
        x0, y0, x1, y1 = s.box
        hx0, hy0, hx1, hy1 = s.part
        assert 0 <= x0 < x1 <= cfg.size and 0 <= y0 < y1 <= cfg.size
        assert x0 <= hx0 < hx1 <= x1 and y0 <= hy0 < hy1 <= y1


def test_head_is_small_and_class_coloured_body_is_large(samples):
    # The paper's premise: a small, reliable part inside a much larger object.
    cfg, labels, drawn = samples
    # A box around the head alone does not count as localized: IoU < 0.5 with the object's box, which holds it.
    ious = np.array([box_iou(s.part, s.box).item() for s in drawn])
    assert ious.max() < 0.45 and np.median(ious) < 0.25
    for s, k in zip(drawn, labels):
        x0, y0, x1, y1 = s.part
        centre = s.image[(y0 + y1) // 2 - 1:(y0 + y1) // 2 + 1, (x0 + x1) // 2 - 1:(x0 + x1) // 2 + 1]
        assert np.abs(centre.reshape(-1, 3).mean(0) - np.array(cfg.head_rgb(int(k))) * 255).max() < 20


def test_stripes_carry_the_class_in_about_70_percent_of_images(samples):
    _, _, drawn = samples
    share = np.mean([s.stripe_cue for s in drawn])
    assert 0.6 < share < 0.8  # 300 draws of p = 0.7: sd 0.026


def test_classes_are_balanced():
    cfg = SynthConfig(n_train=4000, n_test=1003)
    assert set(Counter(split_labels(cfg, "train").tolist()).values()) == {400}
    assert set(Counter(split_labels(cfg, "test").tolist()).values()) == {100, 101}
    assert split_labels(cfg, "train")[:20].tolist() != sorted(split_labels(cfg, "train")[:20].tolist())


def test_layout_boxes_file_and_mean(tmp_path):
    info = generate(tmp_path, TINY, progress=False)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["c00", "c01", "c02", "c03", "c04"]
    jpgs = sorted(tmp_path.rglob("*.jpg"))
    assert len(jpgs) == 40
    table = read_synth(tmp_path / "boxes.json")
    assert sorted(table) == sorted(p.relative_to(tmp_path).as_posix() for p in jpgs)
    for key, ann in table.items():
        assert ann.label == int(key.split("/")[1][1:])
        with Image.open(tmp_path / key) as im:
            assert im.size == (64, 64) and im.mode == "RGB"
    train = np.stack([np.asarray(Image.open(p), dtype=np.float64) for p in jpgs if "train/" in p.as_posix()])
    np.testing.assert_allclose(info["mean_rgb"], train.mean(axis=(0, 1, 2)), atol=1e-3)
    saved = json.loads((tmp_path / "dataset.json").read_text())
    assert saved["mean_rgb"] == info["mean_rgb"] and SynthConfig.from_dict(saved["config"]) == TINY
    assert "mean RGB" in (tmp_path / "README.txt").read_text()


def test_refuses_a_non_empty_output_folder(tmp_path):
    (tmp_path / "x.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        generate(tmp_path, TINY, progress=False)


@pytest.mark.parametrize("bad, match", [
    (dict(classes=1), "classes=1"),
    (dict(size=16), "size=16"),
    (dict(stripe_cue_p=1.5), "stripe_cue_p=1.5"),
    (dict(body_length=(0.8, 0.5)), "body_length"),
    (dict(body_length=(0.5, 0.95)), "does not fit"),
    (dict(classes=30), r"classes=30; expected 2 to 22 \(class stripe directions"),  # named --classes, not jitter
    (dict(stripe_jitter_deg=-1.0), "stripe_jitter_deg"),
    (dict(size=100_000), "size=100000; expected 32 to 1024"),  # asked numpy for 149 GiB per image
    (dict(n_train=0), "n_train=0"),
])
def test_config_validation_names_the_bad_setting(bad, match):
    with pytest.raises(ValueError, match=match):
        SynthConfig(**bad)
    with pytest.raises(ValueError, match="unknown synth option"):
        SynthConfig.from_dict({"colour": 1})
