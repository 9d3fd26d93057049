import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import TrainAugment, make_loader
from pipelines.files import PREPARE_MANIFEST, load_dataset, write_file_list
from pipelines.val_pipeline import crop_window
from tests.pipelines.test_orientation import BLOCK, encoded
from tests.train.test_trainer import tiny_config
from train.cli import main
from train.commands.eval import run_labels
from train.config import Validation
from train.trainer import fit
from train.wsol.box_formats import Annotation, read_synth
from train.wsol.evaluate import boxes_in_crop, evaluate, match_annotations
from train.wsol.localization import box_iou, boxes_from_cam
from train.wsol.synth import _tight_box


def test_boxes_follow_the_resize_and_centre_crop():
    # 200x100 image, shorter side -> 64, crop 56: scale 0.64, resized 128x64, crop at (36, 4) of it, which is
    # source (36 / 0.64, 4 / 0.64) = (56.25, 6.25).
    assert crop_window(100, 200, 64, 56) == (0.64, 6.25, 56.25)
    box = boxes_in_crop([[100, 50, 150, 90]], 200, 100, 64, 56)
    np.testing.assert_array_equal(box, [[28, 28, 55, 53]])  # 96-36=60 -> clipped to 55
    np.testing.assert_array_equal(boxes_in_crop([[0, 0, 63, 63]], 64, 64, 64, 64), [[0, 0, 63, 63]])


def test_a_true_box_outside_the_crop_is_left_out_and_cannot_be_hit():
    """Clipped, a box wholly outside the crop became a strip on the crop's edge, which a CAM component along
    that edge matched at IoU 0.5: a GT-known hit on an object the network never saw."""
    from train.wsol.localization import LocalizationMeter

    boxes = boxes_in_crop([[0, 10, 40, 50], [60, 10, 120, 90]], 200, 100, 64, 64)  # the first lies left of the crop
    np.testing.assert_array_equal(boxes, [[6, 6, 44, 57]])
    assert boxes_in_crop([[0, 10, 40, 50]], 200, 100, 64, 64).shape == (0, 4)
    cam = torch.zeros(1, 64, 64)
    cam[0, 6:32, 0] = 1.0  # a component on the crop's left edge, where the clipped strip was
    meter = LocalizationMeter()
    unseen = boxes_in_crop([[0, 10, 40, 50]], 200, 100, 64, 64)
    meter.update(torch.tensor([[1.0, 0.0]]), torch.tensor([0]), cam, [unseen])
    result = meter.compute()
    assert result["gt_known_loc"] == 0.0 and result["maxboxacc_v2"] == 0.0 and result["top1"] == 100.0


@pytest.mark.parametrize("width, height", [(129, 128), (128, 129), (131, 100)])
def test_crop_window_is_where_the_val_pipeline_puts_each_source_pixel(tmp_path, width, height):
    # 129 x 128 to shorter side 64: DALI rounds 64.5 up to 65 (keeping the scale 0.5, the 65 pixels centred on the
    # source) and starts the crop at (65 - 56) / 2 = 4.5 -> 5. round() gave 64 and 4, and boxes sat up to 0.75
    # crop pixel off; scaling each axis by its rounded size (65 / 129), up to 0.28 source pixel.
    y, x = np.mgrid[0:height, 0:width]
    (tmp_path / "c0").mkdir()
    Image.fromarray(np.stack([x, y, 0 * x], -1).astype(np.uint8)).save(tmp_path / "c0" / "a.png")
    loader = make_loader(str(tmp_path), train=False, batch_size=1, crop=56, resize=64, mean=(0, 0, 0),
                         std=(1, 1, 1), num_threads=1)
    (image,) = [images[0].numpy() for images, _ in loader]
    scale, top, left = crop_window(height, width, 64, 56)
    middle = np.arange(10, 46)  # the linear filter keeps a ramp linear away from the image's edges
    # the source position of each output pixel's centre, by the rule, against the ramp DALI wrote there: equal up
    # to the uint8 output's rounding
    np.testing.assert_allclose(image[0, 28, middle], left + (middle + 0.5) / scale - 0.5, atol=0.51)
    np.testing.assert_allclose(image[1, middle, 28], top + (middle + 0.5) / scale - 0.5, atol=0.51)


@pytest.mark.parametrize("width, height, crop", [(101, 64, 56), (64, 101, 56), (64, 64, 57)])
def test_boxes_in_crop_lands_on_the_pixels_dali_crops_with_half_pixel_offsets(tmp_path, width, height, crop):
    # an image whose red and green values are each pixel's column and row; shorter side = resize: no resampling
    y, x = np.mgrid[0:height, 0:width]
    (tmp_path / "c0").mkdir()
    Image.fromarray(np.stack([x, y, 0 * x], -1).astype(np.uint8)).save(tmp_path / "c0" / "a.png")
    loader = make_loader(str(tmp_path), train=False, batch_size=1, crop=crop, resize=min(width, height),
                         mean=(0, 0, 0), std=(1, 1, 1), num_threads=1)
    (image,) = [images[0].numpy() for images, _ in loader]
    for row, col in ((0, 0), (crop - 1, crop - 1)):
        source_x, source_y = image[0, row, col], image[1, row, col]
        pixel = [source_x, source_y, source_x + 1, source_y + 1]  # one pixel's box: x1, y1 one past it
        mapped = boxes_in_crop([pixel], width, height, min(width, height), crop)
        assert mapped[0, :2].tolist() == [col, row]


def test_box_convention_a_cam_covering_exactly_an_objects_pixels_has_iou_1():
    # synth boxes have x1/y1 one past the last pixel, like CAM boxes; the IoU counts both inclusively
    obj = np.zeros((16, 16), dtype=bool)
    obj[2:6, 3:11] = True  # rows 2..5, columns 3..10
    true_box = _tight_box(obj)
    assert true_box == (3, 2, 11, 6)
    assert box_iou(boxes_from_cam(obj.astype(float), 0.5), [true_box]).item() == 1.0
    # at the right edge x1 would be 16, one past the map: the CAM box and the crop-mapped true box both clip
    obj[:] = False
    obj[2:6, 9:16] = True
    true_box = boxes_in_crop([_tight_box(obj)], 16, 16, 16, 16)  # resize = crop on a square: only the clip
    assert true_box.tolist() == [[9, 2, 15, 6]]
    assert box_iou(boxes_from_cam(obj.astype(float), 0.5), true_box).item() == 1.0


def test_annotations_are_matched_in_loader_order_and_mismatches_named(tiny_synth):
    test = tiny_synth / "test"
    names = sorted(p.relative_to(test).as_posix() for p in test.rglob("*.jpg"))
    table = {n: Annotation(int(n[1:3]), [(1, 1, 5, 5)]) for n in names}
    matched = match_annotations(str(test), table)
    assert [str(p.relative_to(test)) for p, _ in matched] == names
    wrong = dict(table)
    wrong[names[0]] = Annotation(2 if table[names[0]].label != 2 else 1, [(1, 1, 5, 5)])
    with pytest.raises(ValueError, match=f"{names[0]} and .* are both class 0 in the data, but classes"):
        match_annotations(str(test), wrong)
    # Another numbering that maps one to one (a held-out folder of some of the classes) is the same split.
    shifted = {n: Annotation(a.label + 5, a.boxes) for n, a in table.items()}
    assert [p for p, _ in match_annotations(str(test), shifted)] == [p for p, _ in matched]
    with pytest.raises(ValueError, match="1 image\\(s\\) .* have no boxes"):
        match_annotations(str(test), {k: v for k, v in table.items() if k != names[-1]})


def test_two_images_matching_one_annotation_by_file_name_alone_are_refused(tmp_path):
    # c0/001.jpg and c1/001.jpg both took the boxes of one 001.xml, silently.
    for folder in ("c0", "c1"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / folder / "001.jpg")
    with pytest.raises(ValueError, match="c0/001.jpg and c1/001.jpg both match the box file's '001'"):
        match_annotations(str(tmp_path), {"001.JPEG": Annotation(None, [(1, 1, 5, 5)], (8, 8))})


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
    config = (tmp_path / "base" / "config.json").read_bytes()
    assert main(["eval", "--data", str(tiny_synth / "test"), "--boxes", str(tiny_synth / "boxes.json"),
                 "--checkpoint", str(tmp_path / "base"), "--json", str(tmp_path / "base" / "config.json")]) == 2
    assert "would overwrite a file of the run it evaluates" in capsys.readouterr().err
    assert (tmp_path / "base" / "config.json").read_bytes() == config  # was overwritten: no resume, no eval
    os.link(tmp_path / "base" / "config.json", tmp_path / "linked.json")  # the same file by another name
    assert main(["eval", "--data", str(tiny_synth / "test"), "--boxes", str(tiny_synth / "boxes.json"),
                 "--checkpoint", str(tmp_path / "base"), "--json", str(tmp_path / "linked.json")]) == 2
    first_class = sorted(p.name for p in (tiny_synth / "test").iterdir())[0]
    # refused with the options, before any work (it became one of the class's samples)
    assert main(["eval", "--data", str(tiny_synth / "test"), "--boxes", str(tiny_synth / "boxes.json"),
                 "--checkpoint", str(tmp_path / "base"), "--examples", "2",
                 "--png", str(tiny_synth / "test" / first_class / "cams.png")]) == 2
    assert "would write inside" in capsys.readouterr().err
    assert not (tiny_synth / "test" / first_class / "cams.png").exists()
    (tmp_path / "outside.png").write_bytes(b"keep")
    (tmp_path / "base" / "cams.png").unlink(missing_ok=True)
    (tmp_path / "base" / "cams.png").symlink_to(tmp_path / "outside.png")  # the default picture's place
    assert main(["eval", "--data", str(tiny_synth / "test"), "--boxes", str(tiny_synth / "boxes.json"),
                 "--checkpoint", str(tmp_path / "base"), "--examples", "2"]) == 2
    assert "is a link" in capsys.readouterr().err and (tmp_path / "outside.png").read_bytes() == b"keep"
    assert (tmp_path / "cams.png").stat().st_size > 0


def test_a_box_file_size_other_than_the_images_is_refused(tmp_path):
    # It was taken as the image's size: the boxes were scaled to the wrong image, silently.
    (tmp_path / "c0").mkdir()
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(tmp_path / "c0" / "a.png")
    with pytest.raises(ValueError, match=r"a.png: the box file gives its size as 64x32, the image is 48x32"):
        match_annotations(str(tmp_path), {"c0/a.png": Annotation(0, [(1, 1, 5, 5)], (64, 32))})


@pytest.mark.parametrize("orientation", [3, 6, 8])
@pytest.mark.parametrize("stored_size", [False, True])
def test_boxes_of_an_exif_rotated_image_land_where_dali_puts_its_pixels(tmp_path, orientation, stored_size):
    """DALI decodes the image upright; the boxes, drawn on the stored pixels, are turned with it."""
    (tmp_path / "c0").mkdir()
    (tmp_path / "c0" / "a.png").write_bytes(encoded("PNG", orientation))
    table = {"c0/a.png": Annotation(0, [BLOCK], (48, 32) if stored_size else None)}
    ((_, ann),) = match_annotations(str(tmp_path), table)
    width, height = ann.size
    crop = min(width, height)  # resize = crop = shorter side: the crop is a window of the upright image
    loader = make_loader(str(tmp_path), train=False, batch_size=1, crop=crop, resize=crop, mean=(0, 0, 0),
                         std=(1, 1, 1), num_threads=1)
    (image,) = [images[0].numpy() for images, _ in loader]
    rows, cols = np.nonzero(image[0] > 127)
    box = boxes_in_crop(ann.boxes, width, height, crop, crop)
    # edges as the box file gives them (x1, y1 one past the last pixel), clipped to the crop like CAM boxes
    edges = np.clip([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], 0, crop - 1)
    assert box.tolist() == [edges.tolist()]


def test_a_box_file_that_gives_the_upright_size_is_taken_as_upright(tmp_path):
    (tmp_path / "c0").mkdir()
    (tmp_path / "c0" / "a.png").write_bytes(encoded("PNG", 6))  # stored 48x32, upright 32x48
    table = {"c0/a.png": Annotation(0, [(2, 3, 10, 20)], (32, 48))}
    ((_, ann),) = match_annotations(str(tmp_path), table)
    assert ann == table["c0/a.png"]


def test_negative_examples_are_refused(tiny_synth, tmp_path, capsys):
    fit(tiny_config(tiny_synth, tmp_path / "run", epochs=1, max_steps_per_epoch=1))
    code = main(["eval", "--data", str(tiny_synth / "test"), "--boxes", str(tiny_synth / "boxes.json"),
                 "--checkpoint", str(tmp_path / "run"), "--examples", "-3"])
    assert code == 2 and "examples=-3 must be a whole number >= 0" in capsys.readouterr().err


def test_a_picture_too_large_is_refused_before_the_evaluation(tiny_synth, tmp_path, capsys, monkeypatch):
    # It was refused only after the whole evaluation, naming options eval does not have (scale, columns).
    fit(tiny_config(tiny_synth, tmp_path / "run", epochs=1, max_steps_per_epoch=1))
    monkeypatch.setattr("train.wsol.evaluate.evaluate", lambda *a, **k: pytest.fail("evaluated"))
    code = main(["eval", "--data", str(tiny_synth / "test"), "--boxes", str(tiny_synth / "boxes.json"),
                 "--checkpoint", str(tmp_path / "run"), "--examples", "100000"])
    assert code == 2 and "examples=100000: the picture of 1 run(s) at 64-pixel crops" in capsys.readouterr().err


def test_runs_with_the_same_folder_name_keep_their_own_rows(tmp_path):
    # `exp1/run exp2/run` were both "run": one row, holding the second run's numbers.
    assert run_labels([str(tmp_path / "exp1" / "run"), str(tmp_path / "exp2" / "run")]) == ["exp1/run", "exp2/run"]
    assert run_labels([str(tmp_path / "base"), str(tmp_path / "has")]) == ["base", "has"]
    assert run_labels(["."]) == [tmp_path.cwd().name]  # not ""
    with pytest.raises(ValueError, match="names one run folder twice"):
        run_labels([str(tmp_path / "a"), str(tmp_path / "b" / ".." / "a")])


def test_evaluation_data_with_classes_the_model_has_no_output_for_is_refused_before_any_work(tiny_synth, tmp_path,
                                                                                            capsys):
    # A raw IndexError in the CAM; in training after the whole first epoch, with nothing saved.
    fit(tiny_config(tiny_synth, tmp_path / "run", epochs=1, max_steps_per_epoch=1))  # 3 classes
    more = tmp_path / "more"
    shutil.copytree(tiny_synth / "test", more)
    shutil.copytree(more / sorted(p.name for p in more.iterdir())[0], more / "zz_extra")
    code = main(["eval", "--data", str(more), "--boxes", str(tiny_synth / "boxes.json"),
                 "--checkpoint", str(tmp_path / "run")])
    assert code == 2 and "holds class 'zz_extra', which the model was not trained on" in capsys.readouterr().err
    with pytest.raises(ValueError, match="holds class 'zz_extra'"):
        fit(tiny_config(tiny_synth, tmp_path / "val", epochs=1, val=Validation(data=str(more))))
    assert not (tmp_path / "val").exists()
    listed = tmp_path / "list.txt"  # no class names: only the count can be checked
    write_file_list(listed, [(more / name, label) for name, label in load_dataset(more).samples])
    with pytest.raises(ValueError, match="holds 4 classes and the model 3"):
        evaluate(tmp_path / "run", str(listed), str(tiny_synth / "boxes.json"), progress=False)
    fewer = tmp_path / "fewer.txt"  # some of the classes, no names: scored as the model's first ones, said so
    write_file_list(fewer, [(tiny_synth / "test" / name, label) for name, label in
                            load_dataset(tiny_synth / "test").samples if label < 2])
    with pytest.warns(UserWarning, match="holds 2 classes and the model 3, and the classes cannot be matched"):
        evaluate(tmp_path / "run", str(fewer), str(tiny_synth / "boxes.json"), progress=False)


def test_evaluation_data_of_some_classes_is_scored_by_class_name(tiny_synth, tmp_path):
    """A held-out folder of 2 of the 3 classes was scored with every label moved to another class (top-1 0 % with
    a model at 100 %), and so was the full set for a model whose training set had an extra empty class."""
    fit(tiny_config(tiny_synth, tmp_path / "run", epochs=1, max_steps_per_epoch=2))
    first, *rest = sorted(p.name for p in (tiny_synth / "test").iterdir())
    kept, subset = tmp_path / "kept", tmp_path / "subset"
    for folder in (kept, subset):
        for name in rest:
            shutil.copytree(tiny_synth / "test" / name, folder / name)
    (kept / first).mkdir()  # an empty first class: the labels are the training set's
    boxes = str(tiny_synth / "boxes.json")
    same = evaluate(tmp_path / "run", str(kept), boxes, progress=False).metrics
    assert evaluate(tmp_path / "run", str(subset), boxes, progress=False).metrics == same
    extra = tmp_path / "extra"  # the training set with an empty class sorting first
    shutil.copytree(tiny_synth / "train", extra / "train")
    (extra / "train" / "0_unused").mkdir()
    fit(tiny_config(extra, tmp_path / "shifted", epochs=1, max_steps_per_epoch=2))
    full = evaluate(tmp_path / "shifted", str(tiny_synth / "test"), boxes, progress=False).metrics
    (tmp_path / "test").mkdir()
    shutil.copytree(tiny_synth / "test", tmp_path / "test" / "t")
    with_empty = tmp_path / "test" / "t"
    (with_empty / "0_unused").mkdir()
    assert evaluate(tmp_path / "shifted", str(with_empty), boxes, progress=False).metrics == full


def _boxes_without_sizes(tiny_synth, tmp_path, change=lambda boxes: boxes):
    doc = json.loads((tiny_synth / "boxes.json").read_text())
    doc.pop("image_size", None)
    for entry in doc["images"].values():
        entry.pop("size", None)
        entry["boxes"] = change(entry["boxes"])
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_sizes_the_box_file_lacks_come_from_the_headers_and_its_boxes_must_fit_them(tiny_synth, tmp_path):
    boxes = _boxes_without_sizes(tiny_synth, tmp_path)
    matched = match_annotations(str(tiny_synth / "test"), read_synth(boxes, "test"))
    assert {ann.size for _, ann in matched} == {(64, 64)}
    # A box outside its image was clipped silently (GT-known 25.0 instead of 16.7 in the probe that found it).
    outside = _boxes_without_sizes(tiny_synth, tmp_path, lambda b: [[0, 0, 5000, 5000]])
    with pytest.raises(ValueError, match=r"\.jpg: box .* reaches outside the 64x64 image"):
        match_annotations(str(tiny_synth / "test"), read_synth(outside, "test"))


def test_a_prepared_copy_is_refused_when_the_box_file_stores_no_sizes(tiny_synth, tmp_path):
    # Its headers give the resized size, and the boxes are in the originals' pixels: GT-known came out 50.0
    # instead of 8.3 on a 32-pixel copy.
    copy = tmp_path / "prepared"
    shutil.copytree(tiny_synth / "test", copy)
    (copy / PREPARE_MANIFEST).write_text("{}")
    with pytest.raises(ValueError, match="is a copy `dali-has prepare` resized"):
        match_annotations(str(copy), read_synth(_boxes_without_sizes(tiny_synth, tmp_path), "test"))
    assert len(match_annotations(str(copy), read_synth(tiny_synth / "boxes.json", "test"))) == 12  # sizes stored
