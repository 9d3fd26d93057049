"""Readers for true-box annotations: ILSVRC XML, CUB-200-2011 and the synthetic set's boxes.json.

Each returns the same mapping: relative image path -> `Annotation(label, boxes, size)`, with label the class
index (or None where the format does not give one), boxes a list of (x0, y0, x1, y1) in pixels of the original
image, as the files give them, and size the image's (width, height) where known: ILSVRC XML has <size>, the
synthetic boxes.json stores it, CUB's text files do not, so its reader takes it from the image headers under
`root/images` once. A box outside its image is refused rather than silently clipped later. Malformed input
raises `BoxFormatError` naming the file and line (or, for XML, the object), so a user can fix it.
"""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from dali_has import validate

Box = tuple[float, float, float, float]
# The `format` tag of the synthetic set's boxes.json (`train.wsol.synth` writes it, `read_synth` reads it).
SYNTH_BOXES_FORMAT = "dali-has-synth"
# The splits a box file's images can be read as (CUB's train_test_split.txt; the synthetic set's folders).
BOX_SPLITS = ("train", "test", "all")
HELD_OUT_SPLIT = "test"  # the split a held-out folder holds unless told otherwise (evaluation, validation)


class Annotation(NamedTuple):
    label: int | None
    boxes: list[Box]
    size: tuple[int, int] | None = None  # (width, height) of the image, None where the source does not say


BoxTable = dict[str, Annotation]


class BoxFormatError(ValueError):
    """A box file that cannot be read as its format; the message names the file and the place."""


def check_box(box: Sequence[float], where: str, size: tuple[int, int] | None = None) -> Box:
    """A box [x0, y0, x1, y1] as floats, inside a (width, height) image when `size` is given; else a
    BoxFormatError naming `where`."""
    if any(isinstance(v, bool) for v in box):  # JSON true would be read as 1
        raise BoxFormatError(f"{where}: box {list(box)} holds true/false; expected four numbers")
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except OverflowError:  # a JSON integer beyond float range
        raise BoxFormatError(f"{where}: box {list(box)} holds a number too large for a pixel coordinate") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x0 < 0 or y0 < 0 or x1 < x0 or y1 < y0:
        raise BoxFormatError(f"{where}: box {[x0, y0, x1, y1]} is not 0 <= x0 <= x1, 0 <= y0 <= y1")
    if size is not None and (x1 > size[0] or y1 > size[1]):
        raise BoxFormatError(f"{where}: box {[x0, y0, x1, y1]} reaches outside the {size[0]}x{size[1]} image; "
                             "fix the box or the image size")
    return (x0, y0, x1, y1)


def _check_size(width, height, where: str) -> tuple[int, int]:
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in (width, height)):
        raise BoxFormatError(f"{where}: image size {width!r} x {height!r} is not two positive whole numbers")
    return int(width), int(height)


# ---------------------------------------------------------------------------------------------- ILSVRC XML

def read_ilsvrc_xml(files: str | Path | Iterable[str | Path], class_names: Sequence[str] | None = None,
                    by_class: bool = False) -> BoxTable:
    """ILSVRC2012 validation boxes: a folder of `ILSVRC2012_val_*.xml` (Pascal-VOC-like) or a list of files.

    The key is `<filename>.JPEG`, or `<synset>/<filename>.JPEG` with by_class (the per-class folders made
    by the usual val preparation script). class_names: the synsets in label order (sorted training folder
    names, e.g. n01440764 ...); without it labels are None. Coordinates are used as written, as
    wsolevaluation's ILSVRC metadata does.
    """
    if isinstance(files, (str, Path)):
        if not Path(files).is_dir():
            raise FileNotFoundError(f"{files}: not a folder of ILSVRC2012_val_*.xml files")
        paths = sorted(Path(files).glob("*.xml"))
    else:
        paths = [Path(f) for f in files]
    if not paths:
        raise BoxFormatError(f"{files}: no .xml annotation files")
    index = {name: i for i, name in enumerate(class_names)} if class_names is not None else None
    table: BoxTable = {}
    for path in paths:
        synset, key, ann = _read_one_xml(path, index)
        key = f"{synset}/{key}" if by_class else key
        if key in table:
            raise BoxFormatError(f"{path}: image {key} is annotated twice")
        table[key] = ann
    return table


def _read_one_xml(path: Path, index: dict[str, int] | None) -> tuple[str, str, Annotation]:
    if not path.is_file():  # a FIFO named *.xml was waited on for ever
        raise BoxFormatError(f"{path}: not a regular file; an ILSVRC annotation is an XML file")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise BoxFormatError(f"{path}:{e.position[0]}: not valid XML ({e})") from None
    filename = (root.findtext("filename") or "").strip()
    if not filename:
        raise BoxFormatError(f"{path}: no <filename>")
    objects = root.findall("object")
    if not objects:
        raise BoxFormatError(f"{path}: no <object>")
    size = _xml_size(root, path)
    synsets, boxes = set(), []
    for n, obj in enumerate(objects, start=1):
        where = f"{path}: object {n}"
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise BoxFormatError(f"{where}: no <name>")
        synsets.add(name)
        values = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            text = obj.findtext(f"bndbox/{tag}")
            try:
                values.append(float(text))
            except (TypeError, ValueError):
                raise BoxFormatError(f"{where}: <bndbox><{tag}> is {text!r}, expected a number") from None
        boxes.append(check_box(values, where, size))
    if len(synsets) > 1:
        raise BoxFormatError(f"{path}: objects of several classes {sorted(synsets)}; expected one per image")
    (synset,) = synsets
    label = None
    if index is not None:
        if synset not in index:
            raise BoxFormatError(f"{path}: class {synset!r} is not among the {len(index)} class names given")
        label = index[synset]
    key = filename if filename.lower().endswith((".jpeg", ".jpg")) else f"{filename}.JPEG"
    return synset, key, Annotation(label, boxes, size)


def _xml_size(root: ET.Element, path: Path) -> tuple[int, int] | None:
    """<size><width>, <height> of an ILSVRC annotation; None when it has no <size>."""
    if root.find("size") is None:
        return None
    texts = [root.findtext(f"size/{tag}") for tag in ("width", "height")]
    try:
        width, height = (int((t or "").strip()) for t in texts)
    except ValueError:
        raise BoxFormatError(f"{path}: <size> is {texts[0]!r} x {texts[1]!r}, expected whole numbers") from None
    return _check_size(width, height, str(path))


# ------------------------------------------------------------------------------------------- CUB-200-2011

def read_cub(root: str | Path, split: str = HELD_OUT_SPLIT) -> BoxTable:
    """CUB-200-2011 boxes from its `images.txt`, `bounding_boxes.txt` (x y w h), `image_class_labels.txt`
    (1-based) and `train_test_split.txt` (1 = train). Keys are the paths of images.txt (relative to
    `root/images`); labels are 0-based; boxes are (x, y, x + w, y + h); sizes come from the headers of the
    images under `root/images` (None for an image not there). split: "train", "test" or "all"."""
    validate.one_of("split", split, BOX_SPLITS)
    root = Path(root)
    paths = _read_id_table(root / "images.txt", 1, str)
    raw_boxes = _read_id_table(root / "bounding_boxes.txt", 4, float, multi=True)
    labels = _read_id_table(root / "image_class_labels.txt", 1, int)
    is_train = _read_id_table(root / "train_test_split.txt", 1, int)
    for name, table in (("bounding_boxes.txt", raw_boxes), ("image_class_labels.txt", labels),
                        ("train_test_split.txt", is_train)):
        for image_id, entry in table.items():
            if image_id not in paths:
                line = entry[0][0] if isinstance(entry, list) else entry[0]  # box lines come as a list
                raise BoxFormatError(f"{root / name}:{line}: image id {image_id} is not in images.txt")
    out: BoxTable = {}
    for image_id, (line, (path,)) in paths.items():
        for name, table in (("image_class_labels.txt", labels), ("train_test_split.txt", is_train)):
            if image_id not in table:
                raise BoxFormatError(f"{root / 'images.txt'}:{line}: image id {image_id} has no line in {name}")
        split_line, (flag,) = is_train[image_id]
        if flag not in (0, 1):
            raise BoxFormatError(f"{root / 'train_test_split.txt'}:{split_line}: is_training is {flag}, "
                                 "expected 0 or 1")
        if split != "all" and flag != (split == "train"):
            continue
        label_line, (label,) = labels[image_id]
        if label < 1:
            raise BoxFormatError(f"{root / 'image_class_labels.txt'}:{label_line}: class {label}; "
                                 "CUB classes are numbered from 1")
        size = _header_size(root / "images" / path)
        boxes = [check_box((x, y, x + w, y + h), f"{root / 'bounding_boxes.txt'}:{box_line}", size)
                 for box_line, (x, y, w, h) in raw_boxes.get(image_id, [])]
        if not boxes:
            raise BoxFormatError(f"{root / 'images.txt'}:{line}: image id {image_id} has no line in "
                                 "bounding_boxes.txt")
        out[path] = Annotation(label - 1, boxes, size)
    return out


def _header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from an image's header (PIL reads no pixels); None when the file is absent."""
    if not path.is_file():
        return None
    try:
        with Image.open(path) as image:
            return image.size
    except Exception as error:  # PIL raises many kinds for files that are no image
        raise BoxFormatError(f"{path}: cannot read the image size from its header ({error})") from None


def _read_id_table(path: Path, width: int, kind: type, multi: bool = False) -> dict:
    """Lines `<id> <width values>` -> {id: (line number, values)} (a list of them with multi)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; expected the CUB-200-2011 file of that name")
    table: dict = {}
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError:
        raise BoxFormatError(f"{path}: not UTF-8 text") from None
    for line_no, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != width + 1:
            raise BoxFormatError(f"{path}:{line_no}: {len(parts)} fields, expected an image id and {width}")
        try:
            image_id = int(parts[0])
            values = tuple(kind(p) for p in parts[1:])
        except ValueError:
            raise BoxFormatError(f"{path}:{line_no}: cannot read {line.strip()!r} as an image id and "
                                 f"{width} {kind.__name__} value(s)") from None
        if multi:
            table.setdefault(image_id, []).append((line_no, values))
        elif image_id in table:
            raise BoxFormatError(f"{path}:{line_no}: image id {image_id} repeats line {table[image_id][0]}")
        else:
            table[image_id] = (line_no, values)
    return table


# ------------------------------------------------------------------------------------------ synthetic set

def read_synth(path: str | Path, split: str = "all") -> BoxTable:
    """The boxes.json that `dali-has synth` writes (see train.wsol.synth). split "all": keys relative to the
    dataset folder (`test/c03/00012.jpg`); "train" or "test": that split only, keys relative to its folder
    (`c03/00012.jpg`), as a loader reading DIR/test sees them. Image sizes: an image's "size" [width, height],
    else the file's "image_size" (every image of the synthetic set has the same), else unknown."""
    validate.one_of("split", split, BOX_SPLITS)
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BoxFormatError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise BoxFormatError(f"{path}: not UTF-8 text, as JSON must be") from None
    except RecursionError:
        raise BoxFormatError(f"{path}: JSON nested too deep to be a boxes file") from None
    if not isinstance(doc, dict) or doc.get("format") != SYNTH_BOXES_FORMAT or not isinstance(doc.get("images"), dict):
        raise BoxFormatError(f"{path}: not a {SYNTH_BOXES_FORMAT} boxes file (expected 'format' and 'images' keys)")
    out: BoxTable = {}
    prefix = "" if split == "all" else f"{split}/"
    common_size = _json_size(doc.get("image_size"), f"{path}: 'image_size'")
    classes = doc.get("classes")  # the class table `dali-has synth` writes: labels index it
    for key, entry in doc["images"].items():
        if not key.startswith(prefix):
            continue
        where = f"{path}: image {key!r}"
        label = entry.get("label") if isinstance(entry, dict) else None
        if not isinstance(label, int) or isinstance(label, bool) or label < 0:
            raise BoxFormatError(f"{where}: 'label' is {label!r}, expected a class index >= 0")
        if isinstance(classes, list) and label >= len(classes):  # was blamed on --data and --boxes' splits
            raise BoxFormatError(f"{where}: 'label' is {label}, but the file's 'classes' names {len(classes)}")
        boxes = entry.get("boxes")
        if not isinstance(boxes, list) or not boxes or not all(
                isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) for v in b) for b in boxes):
            raise BoxFormatError(f"{where}: 'boxes' is {boxes!r}, expected a non-empty list of [x0, y0, x1, y1]")
        size = _json_size(entry.get("size"), f"{where}: 'size'") or common_size
        out[key[len(prefix):]] = Annotation(label, [check_box(b, where, size) for b in boxes], size)
    return out


def _json_size(value, where: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise BoxFormatError(f"{where} is {value!r}, expected [width, height]")
    return _check_size(*value, where)


# ---------------------------------------------------------------------------------------------- detection

def read_boxes(path: str | Path, *, split: str = "test", class_names: Sequence[str] | None = None,
               by_class: bool = False) -> BoxTable:
    """Read any supported format, told apart by what `path` is: a CUB-200-2011 folder (has images.txt),
    a JSON file (the synthetic set), or an XML file or a folder of them (ILSVRC). `split` selects CUB's and
    the synthetic set's images; ILSVRC XML holds one split."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; give the box annotations (a CUB-200-2011 folder, a "
                                "dali-has-synth boxes.json, or ILSVRC XML file(s))")
    if path.is_dir() and (path / "images.txt").is_file():
        return read_cub(path, split)
    if path.is_file() and path.suffix.lower() == ".json":
        return read_synth(path, split)
    if (path.is_dir() and any(path.glob("*.xml"))) or (path.is_file() and path.suffix.lower() == ".xml"):
        return read_ilsvrc_xml(path if path.is_dir() else [path], class_names, by_class)
    raise BoxFormatError(f"{path}: not a box annotation source; expected a CUB-200-2011 folder (with "
                         "images.txt), a dali-has-synth boxes.json, or ILSVRC XML file(s)")
