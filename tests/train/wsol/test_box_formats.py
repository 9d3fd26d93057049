"""Box annotation readers (train.wsol.box_formats) on small fixture files, well-formed and malformed."""
import json
import os

import pytest

from train.wsol.box_formats import Annotation, BoxFormatError, read_boxes, read_cub, read_ilsvrc_xml, read_synth

XML = """<annotation>
  <folder>val</folder>
  <filename>{name}</filename>
  <size><width>500</width><height>375</height><depth>3</depth></size>
  {objects}
</annotation>
"""
OBJ = ("<object><name>{synset}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
       "<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>")


def _xml(folder, name, *objects):
    path = folder / f"{name}.xml"
    path.write_text(XML.format(name=name, objects="".join(OBJ.format(synset=s, b=b) for s, b in objects)))
    return path


def test_ilsvrc_xml(tmp_path):
    _xml(tmp_path, "ILSVRC2012_val_00000001", ("n01751748", (111, 108, 441, 193)))
    _xml(tmp_path, "ILSVRC2012_val_00000002", ("n09193705", (0, 1, 499, 335)), ("n09193705", (5, 6, 7, 8)))
    table = read_ilsvrc_xml(tmp_path, class_names=["n01751748", "n09193705"])
    assert table == {
        "ILSVRC2012_val_00000001.JPEG": Annotation(0, [(111.0, 108.0, 441.0, 193.0)], (500, 375)),
        "ILSVRC2012_val_00000002.JPEG": Annotation(1, [(0.0, 1.0, 499.0, 335.0), (5.0, 6.0, 7.0, 8.0)], (500, 375)),
    }
    assert read_ilsvrc_xml(tmp_path)["ILSVRC2012_val_00000001.JPEG"].label is None
    assert "n09193705/ILSVRC2012_val_00000002.JPEG" in read_ilsvrc_xml(tmp_path, by_class=True)
    assert read_boxes(tmp_path, class_names=["n01751748", "n09193705"]) == table


@pytest.mark.parametrize("content, match", [
    ("<annotation><filename>x</filename><object>", r"x\.xml:1: not valid XML"),
    (XML.format(name="x", objects=OBJ.format(synset="n1", b=(1, 2, "a", 4))),
     r"x\.xml: object 1: <bndbox><xmax> is 'a'"),
    (XML.format(name="x", objects=OBJ.replace("<ymin>{b[1]}</ymin>", "").format(synset="n1", b=(1, 2, 3, 4))),
     r"object 1: <bndbox><ymin> is None"),
    (XML.format(name="x", objects=OBJ.format(synset="n1", b=(9, 2, 3, 4))), r"object 1: box .* is not 0 <= x0 <= x1"),
    (XML.format(name="x", objects=OBJ.format(synset="n1", b=(1, 2, 3, 4)) + OBJ.format(synset="n2", b=(1, 2, 3, 4))),
     r"several classes \['n1', 'n2'\]"),
    (XML.format(name="x", objects=OBJ.format(synset="n7", b=(1, 2, 3, 4))), r"class 'n7' is not among"),
    (XML.format(name="x", objects=""), r"x\.xml: no <object>"),
])
def test_ilsvrc_xml_errors_name_the_file_and_place(tmp_path, content, match):
    (tmp_path / "x.xml").write_text(content)
    with pytest.raises(BoxFormatError, match=match):
        read_ilsvrc_xml(tmp_path, class_names=["n1", "n2"])


def test_ilsvrc_xml_missing_or_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_ilsvrc_xml(tmp_path / "nowhere")
    with pytest.raises(BoxFormatError, match="no .xml annotation files"):
        read_ilsvrc_xml(tmp_path)
    os.mkfifo(tmp_path / "a.xml")  # parsed, it waited for a writer for ever
    with pytest.raises(BoxFormatError, match="a.xml: not a regular file"):
        read_ilsvrc_xml(tmp_path)


def _cub(root, images=None, boxes=None, labels=None, split=None):
    files = {
        "images.txt": images or "1 001.Black_footed_Albatross/a.jpg\n2 001.Black_footed_Albatross/b.jpg\n"
                                "3 200.Common_Yellowthroat/c.jpg\n",
        "bounding_boxes.txt": boxes or "1 60.0 27.0 325.0 304.0\n2 139.0 30.0 153.0 264.0\n3 1.5 2 3 4\n",
        "image_class_labels.txt": labels or "1 1\n2 1\n3 200\n",
        "train_test_split.txt": split or "1 0\n2 1\n3 0\n",
    }
    for name, text in files.items():
        (root / name).write_bytes(text.encode("utf-8", "surrogateescape"))  # a \udcXX character: that raw byte
    return root


def test_cub(tmp_path):
    root = _cub(tmp_path)
    assert read_cub(root) == {
        "001.Black_footed_Albatross/a.jpg": Annotation(0, [(60.0, 27.0, 385.0, 331.0)]),
        "200.Common_Yellowthroat/c.jpg": Annotation(199, [(1.5, 2.0, 4.5, 6.0)]),
    }
    assert list(read_cub(root, "train")) == ["001.Black_footed_Albatross/b.jpg"]
    assert len(read_cub(root, "all")) == 3
    assert read_boxes(root, split="train") == read_cub(root, "train")
    with pytest.raises(ValueError, match="split='val'"):
        read_cub(root, "val")


@pytest.mark.parametrize("files, match", [
    (dict(boxes="1 60.0 27.0 325.0\n"), r"bounding_boxes\.txt:1: 4 fields, expected an image id and 4"),
    (dict(boxes="1 60 27 325 304\n2 1 1 1 1\n3 1 1 x 1\n"), r"bounding_boxes\.txt:3: cannot read '3 1 1 x 1'"),
    (dict(boxes="1 60 27 325 304\n2 1 1 1 1\n3 1 1 -5 1\n"), r"bounding_boxes\.txt:3: box .* is not"),
    (dict(boxes="1 60 27 325 304\n3 1 1 1 1\n"), r"images\.txt:2: image id 2 has no line in bounding_boxes"),
    (dict(boxes="1 60 27 325 304\n2 1 1 1 1\n3 1 1 1 1\n9 1 1 1 1\n"), r"bounding_boxes\.txt:4: image id 9 is not"),
    (dict(labels="1 1\n1 2\n3 200\n"), r"image_class_labels\.txt:2: image id 1 repeats line 1"),
    (dict(labels="1 1\n3 200\n"), r"images\.txt:2: image id 2 has no line in image_class_labels"),
    (dict(labels="1 0\n2 1\n3 200\n"), r"image_class_labels\.txt:1: class 0"),
    (dict(split="1 0\n2 2\n3 0\n"), r"train_test_split\.txt:2: is_training is 2"),
    (dict(images="1 caf\udce9/a.jpg\n"), r"images\.txt: not UTF-8"),
])
def test_cub_errors_name_the_file_and_line(tmp_path, files, match):
    with pytest.raises(BoxFormatError, match=match):
        read_cub(_cub(tmp_path, **files), "all")


def test_cub_missing_file(tmp_path):
    (_cub(tmp_path) / "train_test_split.txt").unlink()
    with pytest.raises(FileNotFoundError, match="train_test_split.txt"):
        read_cub(tmp_path)


def _synth_file(path, images):
    path.write_text(json.dumps({"format": "dali-has-synth", "version": 1, "images": images}))
    return path


def test_synth_boxes_and_splits(tmp_path):
    path = _synth_file(tmp_path / "boxes.json", {
        "train/c01/00000.jpg": {"label": 1, "boxes": [[1, 2, 30, 40]], "part": [1, 2, 5, 6], "stripe_cue": True},
        "test/c00/00000.jpg": {"label": 0, "boxes": [[0, 0, 64, 64]]},
    })
    assert read_synth(path) == {"train/c01/00000.jpg": Annotation(1, [(1.0, 2.0, 30.0, 40.0)]),
                                "test/c00/00000.jpg": Annotation(0, [(0.0, 0.0, 64.0, 64.0)])}
    assert read_synth(path, "test") == {"c00/00000.jpg": Annotation(0, [(0.0, 0.0, 64.0, 64.0)])}
    assert read_boxes(path) == read_synth(path, "test")  # read_boxes defaults to the held-out split


@pytest.mark.parametrize("text, match", [
    ('{"format": "dali-has-synth",\n "images": {', r"boxes\.json:2: not valid JSON"),
    ('{"format": "other", "images": {}}', "not a dali-has-synth boxes file"),
    ('{"format": "dali-has-synth", "images": {"a.jpg": {"label": -1, "boxes": [[0, 0, 1, 1]]}}}',
     r"image 'a\.jpg': 'label' is -1"),
    ('{"format": "dali-has-synth", "images": {"a.jpg": {"label": 1, "boxes": [[0, 0, 1]]}}}',
     r"image 'a\.jpg': 'boxes' is \[\[0, 0, 1\]\]"),
    ('{"format": "dali-has-synth", "images": {"a.jpg": {"label": 1, "boxes": [[5, 0, 1, 1]]}}}',
     r"image 'a\.jpg': box .* is not"),
    # Each of these was a raw traceback (OverflowError, RecursionError) or an error naming no file, or was taken.
    ('{"format": "dali-has-synth", "images": {"a.jpg": {"label": 1, "boxes": [[true, 0, 1, 1]]}}}',
     r"image 'a\.jpg': box .* holds true/false"),
    ('{"format": "dali-has-synth", "images": {"a.jpg": {"label": 1, "boxes": [[0, 0, 1, 1%s]]}}}' % ("0" * 400),
     r"image 'a\.jpg': box .* too large"),
    ("[" * 100_000 + "]" * 100_000, r"boxes\.json: JSON nested too deep"),
    (b'{"format": "caf\xe9"}', r"boxes\.json: not UTF-8"),
    # a label past the class table was blamed on --data and --boxes being other splits
    ('{"format": "dali-has-synth", "classes": ["a", "b"], "images": {"a.jpg": {"label": 2, "boxes": [[0, 0, 1, 1]]}}}',
     r"image 'a\.jpg': 'label' is 2, but the file's 'classes' names 2"),
])
def test_synth_errors_name_the_file_and_place(tmp_path, text, match):
    (tmp_path / "boxes.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(BoxFormatError, match=match):
        read_synth(tmp_path / "boxes.json")


def test_read_boxes_rejects_unknown_sources(tmp_path):
    (tmp_path / "boxes.csv").write_text("a,b\n")
    with pytest.raises(BoxFormatError, match="not a box annotation source"):
        read_boxes(tmp_path / "boxes.csv")
    with pytest.raises(FileNotFoundError, match="missing.json does not exist"):  # not "not a box source"
        read_boxes(tmp_path / "missing.json")


# ------------------------------------------------------------------------------ boxes outside their image

def test_ilsvrc_box_outside_its_image_is_refused(tmp_path):
    # Before: a box [0, 0, 1e9, 1e9] was read and silently clipped to the crop at evaluation.
    _xml(tmp_path, "x", ("n1", (0, 0, 1e9, 1e9)))
    with pytest.raises(BoxFormatError, match=r"x\.xml: object 1: box .* reaches outside the 500x375 image"):
        read_ilsvrc_xml(tmp_path)
    (tmp_path / "x.xml").write_text(XML.format(name="x", objects=OBJ.format(synset="n1", b=(0, 0, 500, 375))))
    assert read_ilsvrc_xml(tmp_path)["x.JPEG"].size == (500, 375)  # a box may end at the image's edge
    (tmp_path / "x.xml").write_text(XML.replace("<width>500</width>", "<width>wide</width>").format(
        name="x", objects=OBJ.format(synset="n1", b=(0, 0, 5, 5))))
    with pytest.raises(BoxFormatError, match=r"x\.xml: <size> is 'wide' x '375'"):
        read_ilsvrc_xml(tmp_path)


def test_synth_sizes_are_stored_and_enforced(tmp_path):
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps({"format": "dali-has-synth", "image_size": [64, 64], "images": {
        "test/a.jpg": {"label": 0, "boxes": [[0, 0, 64, 64]]},
        "test/b.jpg": {"label": 0, "boxes": [[0, 0, 8, 8]], "size": [8, 10]}}}))
    assert {k: v.size for k, v in read_synth(path).items()} == {"test/a.jpg": (64, 64), "test/b.jpg": (8, 10)}
    path.write_text(json.dumps({"format": "dali-has-synth", "image_size": [64, 64], "images": {
        "test/a.jpg": {"label": 0, "boxes": [[0, 0, 1e9, 1e9]]}}}))
    with pytest.raises(BoxFormatError, match=r"image 'test/a\.jpg': box .* outside the 64x64 image"):
        read_synth(path)
    path.write_text(json.dumps({"format": "dali-has-synth", "image_size": [64, -1], "images": {}}))
    with pytest.raises(BoxFormatError, match="'image_size': image size 64 x -1"):
        read_synth(path)


def test_cub_sizes_come_from_the_image_headers(tmp_path):
    from PIL import Image

    root = _cub(tmp_path)
    for name, size in (("001.Black_footed_Albatross/a.jpg", (400, 340)), ("200.Common_Yellowthroat/c.jpg", (9, 9))):
        (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size).save(root / "images" / name)
    assert {k: v.size for k, v in read_cub(root).items()} == {"001.Black_footed_Albatross/a.jpg": (400, 340),
                                                              "200.Common_Yellowthroat/c.jpg": (9, 9)}
    Image.new("RGB", (300, 300)).save(root / "images/001.Black_footed_Albatross/a.jpg")  # box reaches x 385
    with pytest.raises(BoxFormatError, match=r"bounding_boxes\.txt:1: box .* outside the 300x300 image"):
        read_cub(root)


def test_an_xml_bomb_is_refused(tmp_path):
    # "Billion laughs": nested entities that would expand to gigabytes; expat refuses the amplification.
    entities = '<!ENTITY a0 "lol">' + "".join(f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10))
    (tmp_path / "x.xml").write_text(f'<?xml version="1.0"?><!DOCTYPE annotation [{entities}]>'
                                    "<annotation><filename>&a9;</filename></annotation>")
    with pytest.raises(BoxFormatError, match=r"x\.xml:\d+: not valid XML"):
        read_ilsvrc_xml(tmp_path)
