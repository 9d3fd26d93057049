"""`dali-has prepare`: sizes (bounded, never enlarged), names, labels, bad files left out and reported, EXIF
orientation and 16-bit images as DALI decodes them, resuming after an interruption, WebDataset output."""
from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def, types
from PIL import Image

import pipelines.prepare as prepare_module
from pipelines import make_loader, own_files
from pipelines.files import PREPARE_MANIFEST, class_names, list_folder, num_classes, read_file_list, write_file_list
from pipelines.prepare import FILE_LIST, RECORD, PrepareSettings, prepare
from pipelines.webdataset import read_index, sample_name
from train.cli import main

MAX_SIDE = 64
SETTINGS = PrepareSettings(max_side=MAX_SIDE)


def smooth(width: int, height: int) -> np.ndarray:
    """A gradient with a different colour in each corner: any rotation or flip changes it a lot."""
    y, x = np.mgrid[0:height, 0:width]
    u, v = x / max(1, width - 1), y / max(1, height - 1)
    return np.stack([255 * u, 255 * v, 255 * (1 - u) * (1 - v)], axis=-1).astype(np.uint8)


def encode(pixels, fmt="JPEG", mode=None, **save) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels, mode).save(out, fmt, **save)
    return out.getvalue()


def rotated_jpeg() -> bytes:
    """Stored 200x100 with EXIF orientation 6: upright it is 100 wide, 200 tall."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(smooth(200, 100), quality=95, exif=exif)


SOURCE = {  # relative path -> (bytes, label of its class folder); class d stays empty
    "a/big.jpg": (lambda: encode(smooth(400, 300), quality=95), 0),
    "a/small.jpg": (lambda: encode(smooth(40, 30), quality=90), 0),  # already within the bound: copied
    "a/tall.png": (lambda: encode(smooth(50, 120), "PNG"), 0),  # within the bound, but a PNG: re-encoded
    "a/deep.png": (lambda: encode((smooth(90, 80)[..., 0].astype(np.uint16) * 256 + 100), "PNG"), 0),
    "b/rotated.jpg": (rotated_jpeg, 1),
    "b/gray.jpg": (lambda: encode(smooth(120, 90)[..., 1], mode="L"), 1),
    "b/cmyk.jpg": (lambda: encode(np.asarray(Image.fromarray(smooth(80, 70)).convert("CMYK")), mode="CMYK"), 1),
    "c/text.jpg": (lambda: b"I am not an image\n", 2),
}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("source")
    for name, (make, _) in SOURCE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(make())
    (root / "d").mkdir()
    return root


@pytest.fixture(scope="module")
def prepared(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "out"
    return out, prepare(source, out, SETTINGS, num_threads=2, progress=False)


def dali_decode(data: bytes) -> np.ndarray:
    """What the loader's CPU decoder makes of an encoded image (RGB, EXIF orientation applied)."""

    @pipeline_def(batch_size=1, num_threads=1, device_id=None, prefetch_queue_depth=1)
    def decode():
        encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
        return fn.decoders.image(encoded, output_type=types.RGB)

    pipe = decode()
    pipe.build()
    pipe.feed_input("encoded", [np.frombuffer(data, np.uint8)])
    return np.array(pipe.run()[0][0])


def size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def test_bad_files_are_left_out_and_reported_with_scans_reason(prepared):
    out, manifest = prepared
    assert manifest["complete"] and manifest["samples"] == len(SOURCE)
    assert (manifest["prepared"], manifest["converted"], manifest["reused"], manifest["unusable"]) == (7, 7, 0, 1)
    assert [(p["path"], p["kind"]) for p in manifest["problems"]] == [("c/text.jpg", "not-an-image")]
    assert json.loads((out / PREPARE_MANIFEST).read_text()) == manifest
    assert not (out / "c" / "text.jpg").exists()


def test_names_labels_and_class_folders_are_kept(source, prepared):
    out, _ = prepared
    expected = {str(Path(name).with_suffix(".jpg")): label for name, (_, label) in SOURCE.items()
                if name != "c/text.jpg"}
    listed = read_file_list(out / FILE_LIST)
    assert dict(listed.samples) == expected
    tree = list_folder(out)  # every class folder, even the one left empty by a bad file and the empty one
    assert tree.classes == list_folder(source).classes == ("a", "b", "c", "d")
    assert dict(tree.samples) == expected
    assert all(Image.open(out / name).format == "JPEG" for name in expected)


def test_sizes_are_bounded_on_the_shorter_side_and_never_enlarged(source, prepared):
    out, _ = prepared
    for name in ("a/big.jpg", "a/small.jpg", "a/tall.jpg", "a/deep.jpg", "b/gray.jpg", "b/cmyk.jpg"):
        width, height = size_of(out / name)
        original = size_of(next((source / name).parent.glob(Path(name).stem + ".*")))
        assert width <= original[0] and height <= original[1]  # never enlarged
        if min(original) > MAX_SIDE:
            assert min(width, height) == MAX_SIDE
            assert abs(width / height - original[0] / original[1]) < 0.02  # aspect ratio kept
        else:
            assert (width, height) == original
    assert (out / "a/small.jpg").read_bytes() == (source / "a/small.jpg").read_bytes()  # copied, not re-encoded
    assert size_of(out / "a/big.jpg") == (85, 64)


def test_the_longer_side_can_be_bounded_instead(source, tmp_path):
    prepare(source, tmp_path / "out", PrepareSettings(max_side=MAX_SIDE, side="longer"), progress=False)
    assert size_of(tmp_path / "out/a/big.jpg") == (64, 48)
    assert size_of(tmp_path / "out/a/small.jpg") == (40, 30)


def test_prepared_pixels_are_what_the_loader_decoded_from_the_original(source, prepared):
    out, _ = prepared
    # EXIF orientation: stored upright and without the tag; DALI decodes both the same way up.
    original = dali_decode((source / "b/rotated.jpg").read_bytes())
    copy = dali_decode((out / "b/rotated.jpg").read_bytes())
    assert original.shape == (200, 100, 3) and copy.shape == (128, 64, 3)
    assert Image.open(out / "b/rotated.jpg").getexif().get(0x0112) is None
    assert differs(original, copy) < 3  # a wrong rotation or flip would differ by ~100 levels
    # 16-bit PNG: DALI scales it to 8 bits; PIL's convert alone would clip almost every pixel to 255. CMYK -> RGB,
    # grayscale, PNG: as DALI decodes them.
    for name in ("a/deep.jpg", "b/cmyk.jpg", "b/gray.jpg", "a/tall.jpg"):
        before = dali_decode(next((source / name).parent.glob(Path(name).stem + ".*")).read_bytes())
        assert differs(before, dali_decode((out / name).read_bytes())) < 3, name


def differs(original: np.ndarray, copy: np.ndarray) -> float:
    """Mean absolute difference of a decoded copy from the decoded original brought to the copy's size."""
    height, width, _ = copy.shape
    shrunk = np.asarray(Image.fromarray(original).resize((width, height), Image.Resampling.LANCZOS), dtype=float)
    return float(np.abs(shrunk - copy).mean())


class Interrupt(BaseException):
    """Stands for Ctrl-C or a killed job (not an Exception, so it is not reported as a bad file)."""


def interrupted(monkeypatch, after: int):
    """Make prepare stop on its `after`-th image, as an interruption would."""
    calls, shrink = [], prepare_module.shrink

    def shrink_then_stop(data, settings):
        calls.append(1)
        if len(calls) == after:
            raise Interrupt
        return shrink(data, settings)

    monkeypatch.setattr(prepare_module, "shrink", shrink_then_stop)


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != PREPARE_MANIFEST}


@pytest.mark.parametrize("webdataset", [False, True])
def test_an_interrupted_run_resumes_where_it_stopped_and_ends_as_an_uninterrupted_one(source, tmp_path,
                                                                                      monkeypatch, webdataset):
    settings = PrepareSettings(max_side=MAX_SIDE, webdataset=webdataset, shard_samples=3)
    straight = prepare(source, tmp_path / "straight", settings, num_threads=1, progress=False)
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        interrupted(patch, after=5)
        with pytest.raises(Interrupt):
            prepare(source, out, settings, num_threads=1, progress=False)
    assert json.loads((out / PREPARE_MANIFEST).read_text())["complete"] is False
    with pytest.raises(ValueError, match="unfinished `dali-has prepare` output.*Run the same"):  # trained on before
        make_loader(out, train=True, batch_size=2, crop=16, num_threads=1)
    finished = [p for p in out.rglob("*") if p.suffix in (".jpg", ".idx")]
    assert 0 < len(finished) < straight["prepared"]
    assert any(p.name.endswith(".partial") for p in out.rglob("*")) == webdataset  # the open shard
    if not webdataset:  # as if killed while writing it (shards: the open one was left as .partial above)
        (out / "a" / "big.jpg.partial").write_bytes(b"half an image")
    resumed = prepare(source, out, settings, num_threads=1, progress=False)
    assert resumed["reused"] > 0 and resumed["reused"] + resumed["converted"] == straight["prepared"]
    assert resumed["problems"] == straight["problems"]  # bad files are reported again, also from finished shards
    assert files_of(out) == files_of(tmp_path / "straight")  # byte for byte, no .partial left
    again = prepare(source, out, settings, progress=False)
    assert (again["reused"], again["converted"]) == (straight["prepared"], 0)


def test_an_output_of_other_settings_or_data_is_refused(source, prepared, tmp_path):
    out, _ = prepared
    with pytest.raises(ValueError, match="holds a preparation of .* with settings"):
        prepare(source, out, PrepareSettings(max_side=128), progress=False)
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty and is no `dali-has prepare` output"):
        prepare(source, tmp_path, SETTINGS, progress=False)
    for bad in (dict(max_side=0), dict(side="both"), dict(quality=101), dict(shard_samples=0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            PrepareSettings(**bad)
    classes = sorted(p.name for p in source.iterdir())
    with pytest.raises(ValueError, match="lies inside the data folder"):  # it became one more class folder
        prepare(source, source / "copy", SETTINGS, progress=False)
    assert sorted(p.name for p in source.iterdir()) == classes
    with pytest.raises(ValueError, match="num_threads=0"):  # 0 meant "the default" before
        prepare(source, tmp_path / "new", SETTINGS, num_threads=0, progress=False)


def test_file_lists_keep_their_names_and_labels_and_clashing_names_are_refused(source, tmp_path):
    write_file_list(source / "some.txt", [(source / "b/gray.jpg", 7), (source / "a/tall.png", 3)])
    manifest = prepare(source / "some.txt", tmp_path / "out", SETTINGS, progress=False)
    assert manifest["prepared"] == 2 and manifest["classes"] is None
    assert read_file_list(tmp_path / "out" / FILE_LIST).samples == (("b/gray.jpg", 7), ("a/tall.jpg", 3))
    # Read as a folder its paths became classes: labels 7 and 3 were 1 and 0, silently.
    with pytest.raises(ValueError, match=f"was prepared from a file list: its folders are not classes and its labels "
                                         f"are in '{tmp_path / 'out' / FILE_LIST}'; give that"):
        make_loader(tmp_path / "out", train=False, batch_size=2, crop=16, num_threads=1)
    clash = tmp_path / "clash"
    for name in ("a/x.png", "a/x.jpg"):
        (clash / name).parent.mkdir(parents=True, exist_ok=True)
        (clash / name).write_bytes(SOURCE["a/small.jpg"][0]())
    with pytest.raises(ValueError, match="'a/x.jpg' and 'a/x.png' would both become 'a/x.jpg'"):
        prepare(clash, tmp_path / "clash_out", SETTINGS, progress=False)
    (source / "absolute.txt").write_text(f"{source / 'a/big.jpg'} 4\n")  # an absolute path inside the list's folder
    absolute = prepare(source / "absolute.txt", tmp_path / "absolute", SETTINGS, progress=False)
    assert absolute["prepared"] == 1 and (tmp_path / "absolute" / "a/big.jpg").is_file()
    write_file_list(tmp_path / "lists" / "outside.txt", [(source / "a/big.jpg", 0)])  # written as an absolute path
    with pytest.raises(ValueError, match="lies outside"):
        prepare(tmp_path / "lists" / "outside.txt", tmp_path / "outside_out", SETTINGS, progress=False)


def test_a_file_listed_twice_is_converted_once_and_listed_with_each_label(source, tmp_path):
    """A list may name a file twice (oversampling, a second label); prepare refused it: "rename one"."""
    # Written three ways: as given, with "./", and absolute (one entry was lost, its label flipping run by run).
    (source / "twice.txt").write_text(f"b/gray.jpg 7\na/tall.png 3\n./b/gray.jpg 2\n{source / 'b/gray.jpg'} 5\n")
    manifest = prepare(source / "twice.txt", tmp_path / "out", SETTINGS, progress=False)
    assert (manifest["samples"], manifest["prepared"], manifest["converted"]) == (4, 4, 2)
    assert manifest["bytes"]["source"] == sum((source / name).stat().st_size for name in ("b/gray.jpg", "a/tall.png"))
    listed = read_file_list(tmp_path / "out" / FILE_LIST).samples
    assert listed == (("b/gray.jpg", 7), ("a/tall.jpg", 3), ("b/gray.jpg", 2), ("b/gray.jpg", 5))
    again = prepare(source / "twice.txt", tmp_path / "out", SETTINGS, progress=False)
    assert (again["converted"], again["reused"]) == (0, 4)
    assert read_file_list(tmp_path / "out" / FILE_LIST).samples == listed
    with pytest.raises(ValueError, match="names 'b/gray.jpg' .* more than once: a shard holds each sample once"):
        prepare(source / "twice.txt", tmp_path / "shards", PrepareSettings(max_side=MAX_SIDE, webdataset=True),
                progress=False)
    assert not (tmp_path / "shards").exists()


def test_what_a_folder_output_cannot_hold_is_refused_before_the_output_is_made(source, tmp_path):
    """A name with a newline failed at the very end, after converting everything, and every rerun the same way;
    a pixel source failed with scan's message; both left an unfinished output no rerun could finish."""
    data = tmp_path / "data"
    shutil.copytree(source, data)
    (data / "a" / "new\nline.jpg").write_bytes(SOURCE["a/small.jpg"][0]())
    with pytest.raises(ValueError, match=r"1 file name\(s\) cannot be written to the output's file_list.txt, first "
                                         r"'a/new\\nline.jpg': it contains a newline.*prepare shards"):
        prepare(data, tmp_path / "out", SETTINGS, progress=False)
    assert not (tmp_path / "out").exists()
    shards = prepare(data, tmp_path / "shards", PrepareSettings(max_side=MAX_SIDE, webdataset=True), progress=False)
    assert shards["prepared"] == 8
    pixels = tmp_path / "pixels"
    prepare(source, pixels, PrepareSettings(max_side=MAX_SIDE, encoding="npy"), progress=False)
    with pytest.raises(ValueError, match="holds decoded pixels .* prepare re-encodes images; prepare the images"):
        prepare(pixels, tmp_path / "again", SETTINGS, progress=False)
    assert not (tmp_path / "again").exists()


def test_an_output_folder_with_a_newline_in_its_path_is_usable(source, tmp_path):
    """Its file list holds paths relative to it: prepare converted everything, then refused the folder's name."""
    out = tmp_path / "o\nut"
    assert prepare(source, out, SETTINGS, num_threads=1, progress=False)["prepared"] == 7
    assert len(read_file_list(out / FILE_LIST).samples) == 7


def test_an_output_folder_whose_path_is_not_utf8_is_refused_before_any_work(source, tmp_path):
    """Its file list was written, then every loader failed inside DALI ("Unsupported argument type")."""
    out = tmp_path / os.fsdecode(b"bad\xff") / "out"
    for webdataset in (False, True):
        with pytest.raises(ValueError, match="is not UTF-8, and DALI's file reader takes UTF-8 paths only"):
            prepare(source, out, PrepareSettings(max_side=MAX_SIDE, webdataset=webdataset), progress=False)
    assert not out.parent.exists()
    with pytest.raises(ValueError, match="is not UTF-8"):
        write_file_list(out.parent / "list.txt", [("/elsewhere/a.jpg", 0)])


def test_class_folders_no_longer_in_the_source_are_reported_and_the_output_is_refused_until_deleted(source,
                                                                                                  tmp_path, capsys):
    """An empty class folder removed from the source stayed in OUT, unreported: read as a folder, the classes
    after it got other labels than in the source and the file list."""
    data, out = tmp_path / "data", tmp_path / "out"
    shutil.copytree(source, data)
    (data / "aa").mkdir()  # an empty class between a and b
    prepare(data, out, SETTINGS, num_threads=1, progress=False)
    assert num_classes(out) == 5
    (data / "aa").rmdir()
    assert main(["prepare", "--data", str(data), "--out", str(out), "--max-side", str(MAX_SIDE),
                 "--no-progress"]) == 0
    assert "STALE FOLDERS: 1 folder(s) of" in capsys.readouterr().out
    assert json.loads((out / PREPARE_MANIFEST).read_text())["stale_folders"] == ["aa"]
    with pytest.raises(ValueError, match="holds other class folders than it was prepared with .*not a class there: "
                                         "aa, so its labels would differ.*--delete-stale"):
        make_loader(out, train=False, batch_size=2, crop=16, num_threads=1)
    (out / "d").rename(out / "zz")  # an (empty) class missing, as well as a folder that is none
    with pytest.raises(ValueError, match="not a class there: aa, zz; missing: d"):
        prepare(out, tmp_path / "again", SETTINGS, progress=False)  # any reader of OUT as a folder
    (out / "zz").rename(out / "d")
    (tmp_path / "elsewhere").mkdir()
    (out / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)  # a class when read; kept
    manifest = prepare(data, out, SETTINGS, num_threads=1, progress=False, delete_stale=True)
    assert manifest["stale_folders"] == ["linked"] and not (out / "aa").exists()
    (out / "linked").unlink()
    assert class_names(out) == class_names(data) and num_classes(out) == 4


def test_the_file_list_is_written_whole_and_through_no_link(source, tmp_path):
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    prepare(source, out, SETTINGS, num_threads=1, progress=False)
    victim.write_text("precious")
    (out / FILE_LIST).unlink()
    (out / FILE_LIST).symlink_to(victim)
    prepare(source, out, SETTINGS, num_threads=1, progress=False)
    assert victim.read_text() == "precious" and not (out / FILE_LIST).is_symlink()
    assert len(read_file_list(out / FILE_LIST).samples) == 7


@pytest.mark.parametrize("manifest", ["[1]", '{"settings": 5}', '{"format_version": ',
                                      "[" * 100_000 + "]" * 100_000])  # a RecursionError traceback
def test_a_damaged_manifest_is_named(source, tmp_path, manifest):
    """They raised AttributeError, TypeError, or "Expecting value" naming no file."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / PREPARE_MANIFEST).write_text(manifest)
    with pytest.raises(ValueError, match="prepare.json' is damaged .*delete that folder and prepare again"):
        prepare(source, tmp_path / "out", SETTINGS, progress=False)
    assert (tmp_path / "out" / PREPARE_MANIFEST).read_text() == manifest


def test_a_damaged_record_costs_only_copies_again_and_a_fifo_in_its_place_is_named(source, tmp_path):
    out = tmp_path / "out"
    prepare(source, out, SETTINGS, num_threads=1, progress=False)
    lines = (out / RECORD).read_text().splitlines()
    (out / RECORD).write_text("\n".join(["[" * 100_000 + "]" * 100_000] + lines[1:]) + "\n")  # a traceback
    assert prepare(source, out, SETTINGS, num_threads=1, progress=False)["converted"] == 1  # that copy only
    (out / RECORD).unlink()
    os.mkfifo(out / RECORD)  # read, it waited for a writer for ever
    with pytest.raises(ValueError, match="prepared.jsonl' is not a regular file .*remove it and run again"):
        prepare(source, out, SETTINGS, num_threads=1, progress=False)


def test_a_full_disk_while_finishing_names_the_file(source, tmp_path, monkeypatch):
    """It said only "[Errno 28] No space left on device" when the file list was the file that did not fit."""
    out, real = tmp_path / "out", own_files.open_own

    def full(path, **kwargs):
        if Path(path) == own_files.temporary(out / FILE_LIST):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a write() says it: no file name
        return real(path, **kwargs)

    monkeypatch.setattr(own_files, "open_own", full)
    with pytest.raises(OSError, match="make room, then run the same command again") as error:
        prepare(source, out, SETTINGS, num_threads=1, progress=False)
    assert error.value.filename == str(out / FILE_LIST)
    monkeypatch.undo()
    assert prepare(source, out, SETTINGS, num_threads=1, progress=False)["converted"] == 0  # it resumes


def test_webdataset_output_reads_back_with_every_label_and_name(source, tmp_path):
    out = tmp_path / "shards"
    manifest = prepare(source, out, PrepareSettings(max_side=MAX_SIDE, webdataset=True, shard_samples=3),
                       progress=False)
    assert manifest["outputs"]["shards"] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert manifest["unusable"] == 1 and manifest["prepared"] == 7
    names = {sample_name(e.key) for shard in sorted(out.glob("*.tar")) for e in read_index(shard)}
    assert names == {str(Path(name).with_suffix("")) for name in SOURCE if name != "c/text.jpg"}
    loader = make_loader(out, train=False, batch_size=4, crop=16, num_threads=1)
    labels = torch.cat([y for _, y in loader]).tolist()
    assert sorted(labels) == sorted(label for name, (_, label) in SOURCE.items() if name != "c/text.jpg")
    # The classes are the source's, empty class d too (labels alone gave 2 classes: c's only image was bad).
    assert class_names(out) == ["a", "b", "c", "d"] and num_classes(out) == 4


def test_names_that_are_not_utf8_are_kept(tmp_path):
    """A Latin-1 name failed a shard's index only after the whole shard was converted, again on every rerun."""
    name = os.fsdecode(b"a/caf\xe9.jpg")
    (tmp_path / "src" / "a").mkdir(parents=True)
    (tmp_path / "src" / name).write_bytes(SOURCE["a/small.jpg"][0]())
    for webdataset in (True, False):
        out = tmp_path / f"out-{webdataset}"
        if webdataset:
            assert prepare(tmp_path / "src", out, PrepareSettings(max_side=MAX_SIDE, webdataset=True),
                           progress=False)["prepared"] == 1
            assert [sample_name(e.key) for e in read_index(out / "shard-000000.tar")] == [name[:-len(".jpg")]]
            loader = make_loader(out, train=False, batch_size=1, crop=16, num_threads=1)
            assert [y.tolist() for _, y in loader] == [[0]]
        else:  # DALI's file reader cannot take the name: refused before any work (it said "train on" before)
            with pytest.raises(ValueError, match="first 'a/caf.*it is not UTF-8.*prepare shards"):
                prepare(tmp_path / "src", out, PrepareSettings(max_side=MAX_SIDE), progress=False)
            assert not out.exists()


def test_cli_prints_the_summary_and_the_left_out_files(source, tmp_path, capsys):
    assert main(["prepare", "--data", str(source), "--out", str(tmp_path / "out"), "--max-side", "64",
                 "--quality", "80", "--num-threads", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "LEFT OUT c/text.jpg: is not an image file" in printed
    assert "8 samples, 7 prepared (7 written now, 0 already there), 1 left out" in printed
    assert json.loads((tmp_path / "out" / PREPARE_MANIFEST).read_text())["settings"]["quality"] == 80
    assert main(["prepare", "--data", str(source), "--out", str(tmp_path / "out"), "--max-side", "0"]) == 2
    (tmp_path / "bad" / "c").mkdir(parents=True)
    (tmp_path / "bad" / "c" / "text.jpg").write_bytes(SOURCE["c/text.jpg"][0]())
    assert main(["prepare", "--data", str(tmp_path / "bad"), "--out", str(tmp_path / "none"), "--webdataset",
                 "--no-progress"]) == 2  # was 0, then "train on" an output that was no data set
    assert "NOTHING PREPARED: none of the 1 files" in capsys.readouterr().err


@pytest.fixture(scope="module")
def prepared_pixels(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("pixels") / "out"
    return out, prepare(source, out, PrepareSettings(max_side=MAX_SIDE, encoding="npy"), num_threads=2,
                        progress=False)


def test_npy_encoding_stores_the_resized_pixels_the_jpeg_copy_encodes(prepared, prepared_pixels):
    (jpegs, _), (out, manifest) = prepared, prepared_pixels
    assert manifest["prepared"] == 7 and [p["path"] for p in manifest["problems"]] == ["c/text.jpg"]
    assert read_file_list(out / FILE_LIST).samples == tuple(
        (name.replace(".jpg", ".npy"), label) for name, label in read_file_list(jpegs / FILE_LIST).samples)
    for name in ("a/big", "a/small", "b/rotated", "b/gray", "b/cmyk", "a/deep"):
        pixels = np.load(out / f"{name}.npy", allow_pickle=False)
        decoded = dali_decode((jpegs / f"{name}.jpg").read_bytes())  # RGB, grey replicated, as DALI decodes
        assert pixels.dtype == np.uint8 and pixels.shape == decoded.shape, name
        assert np.abs(pixels.astype(int) - decoded).mean() < 3, name  # the JPEG copy's one lossy generation


def test_npy_pixels_train_and_evaluate_through_the_loader(prepared_pixels):
    out, _ = prepared_pixels
    for train in (True, False):
        images, labels = next(iter(make_loader(out, train=train, batch_size=7, crop=32, device="cpu", seed=0)))
        assert images.shape == (7, 3, 32, 32) and sorted(labels.tolist()) == [0, 0, 0, 0, 1, 1, 1]


def test_npy_encoding_is_refused_with_webdataset_shards():
    with pytest.raises(ValueError, match="shards hold JPEGs"):
        PrepareSettings(encoding="npy", webdataset=True)
    with pytest.raises(ValueError, match="encoding"):
        PrepareSettings(encoding="png")


def test_an_output_of_before_the_encoding_setting_resumes(source, tmp_path):
    out = tmp_path / "out"
    prepare(source, out, SETTINGS, num_threads=2, progress=False)
    manifest = json.loads((out / PREPARE_MANIFEST).read_text())
    del manifest["settings"]["encoding"]  # as written before the setting existed
    (out / PREPARE_MANIFEST).write_text(json.dumps(manifest))
    assert prepare(source, out, SETTINGS, num_threads=2, progress=False)["reused"] == 7


def test_a_run_after_the_source_changed_converts_what_changed_and_reports_stale_copies(source, tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    shutil.copytree(source, data)
    prepare(data, out, SETTINGS, num_threads=1, progress=False)
    changed = data / "a/big.jpg"
    changed.write_bytes(encode(np.ascontiguousarray(smooth(400, 300)[::-1]), quality=95))
    later = changed.stat().st_mtime_ns + 10**9  # whatever the file system's clock granularity
    os.utime(changed, ns=(later, later))
    (data / "a/small.jpg").unlink()
    (data / "b/new.jpg").write_bytes(encode(smooth(70, 50)))
    (data / "b/gray.jpg").write_bytes(b"not an image any more")
    assert main(["prepare", "--data", str(data), "--out", str(out), "--max-side", str(MAX_SIDE),
                 "--num-threads", "1", "--no-progress"]) == 0
    again = json.loads((out / PREPARE_MANIFEST).read_text())
    # The changed and the new image are converted; tall, deep, rotated and cmyk are kept as they were.
    assert (again["converted"], again["reused"], again["prepared"]) == (2, 4, 6)
    fresh = prepare(data, tmp_path / "fresh", SETTINGS, num_threads=1, progress=False)
    listed = read_file_list(out / FILE_LIST).samples
    assert listed == read_file_list(tmp_path / "fresh" / FILE_LIST).samples
    assert {name: (out / name).read_bytes() for name, _ in listed} == {
        name: (tmp_path / "fresh" / name).read_bytes() for name, _ in listed}
    # Copies whose source is gone or unusable now are kept on disk, left out of the list and reported.
    assert again["stale"] == ["a/small.jpg", "b/gray.jpg"] and fresh["stale"] == []
    assert (out / "a/small.jpg").is_file() and (out / "b/gray.jpg").is_file()
    assert "STALE: 2 prepared file(s)" in capsys.readouterr().out
    # Asked to, it deletes them: the output read as a folder is then the fresh run's.
    assert main(["prepare", "--data", str(data), "--out", str(out), "--max-side", str(MAX_SIDE),
                 "--num-threads", "1", "--no-progress", "--delete-stale"]) == 0
    synced = json.loads((out / PREPARE_MANIFEST).read_text())
    assert (synced["stale"], synced["deleted"], synced["converted"]) == ([], ["a/small.jpg", "b/gray.jpg"], 0)
    assert "DELETED: 2 prepared file(s)" in capsys.readouterr().out
    assert list_folder(out).samples == list_folder(tmp_path / "fresh").samples


def test_copies_are_current_by_their_record_not_their_own_times(source, tmp_path):
    """Output file systems keep times at other resolutions (ext2 1 s, FAT 2 s): every copy used to look changed,
    the file list came out empty and --delete-stale deleted what the run had just written."""
    out = tmp_path / "out"
    first = prepare(source, out, SETTINGS, num_threads=1, progress=False)
    for copy in out.rglob("*.jpg"):
        os.utime(copy, (1, 1))
    again = prepare(source, out, SETTINGS, num_threads=1, progress=False, delete_stale=True)
    assert (again["reused"], again["converted"], again["deleted"]) == (first["prepared"], 0, [])
    assert len(read_file_list(out / FILE_LIST).samples) == first["prepared"]


def test_a_source_rewritten_with_its_time_kept_is_converted_again_when_its_size_changed(source, tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    shutil.copytree(source, data)
    prepare(data, out, SETTINGS, num_threads=1, progress=False)
    changed = data / "a/big.jpg"
    kept = changed.stat()
    changed.write_bytes(encode(np.ascontiguousarray(smooth(400, 300)[::-1]), quality=80))  # cp -p, rsync -t
    os.utime(changed, ns=(kept.st_atime_ns, kept.st_mtime_ns))
    assert changed.stat().st_size != kept.st_size
    again = prepare(data, out, SETTINGS, num_threads=1, progress=False)
    assert again["converted"] == 1
    fresh = prepare(data, tmp_path / "fresh", SETTINGS, num_threads=1, progress=False)
    assert (out / "a/big.jpg").read_bytes() == (tmp_path / "fresh" / "a/big.jpg").read_bytes()
    assert fresh["converted"] == again["prepared"]


def test_delete_stale_removes_renamed_classes_and_touches_no_file_it_did_not_write(source, tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    shutil.copytree(source, data)
    prepare(data, out, SETTINGS, num_threads=1, progress=False)
    mine = [out / "figures" / "confusion.jpg", out / "a" / "mine.jpg", out / "notes.jpg" / "inside.txt"]
    for path in mine:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"the user's")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"not the output's")
    with open(out / RECORD, "a") as record:  # a record handed over with the output must not reach outside it
        record.write(json.dumps(["../outside.jpg", "x.jpg", 1, 1]) + "\n" + "a half-written li")
    (data / "b").rename(data / "bee")  # class b renamed: the labels of c and d shift
    (data / "d").rename(data / "e")  # an empty class renamed
    manifest = prepare(data, out, SETTINGS, num_threads=1, progress=False)
    assert manifest["stale"] == ["b/cmyk.jpg", "b/gray.jpg", "b/rotated.jpg"]
    manifest = prepare(data, out, SETTINGS, num_threads=1, progress=False, delete_stale=True)
    assert manifest["deleted"] == ["b/cmyk.jpg", "b/gray.jpg", "b/rotated.jpg"] and manifest["stale"] == []
    assert not (out / "b").exists() and not (out / "d").exists()
    assert all(path.read_bytes() == b"the user's" for path in mine) and outside.is_file()
    prepare(data, tmp_path / "fresh", SETTINGS, num_threads=1, progress=False)
    assert read_file_list(out / FILE_LIST).samples == read_file_list(tmp_path / "fresh" / FILE_LIST).samples
    for path in mine[:2]:
        path.unlink()
    assert list_folder(out).samples == list_folder(tmp_path / "fresh").samples
    assert (out / RECORD).read_text() == (tmp_path / "fresh" / RECORD).read_text()


def test_a_handed_over_output_cannot_make_prepare_write_or_delete_elsewhere(source, tmp_path):
    data, out, victim = tmp_path / "data", tmp_path / "out", tmp_path / "victim"
    shutil.copytree(source, data)
    prepare(data, out, SETTINGS, num_threads=1, progress=False)
    victim.mkdir()
    (victim / "photo.jpg").write_bytes(b"elsewhere")
    (out / "link").symlink_to(victim)
    (out / "notes.txt").write_text("the user's")
    with open(out / RECORD, "a") as record:  # lines for a file behind a link, prepare's own and the user's files
        for name in ("link/photo.jpg", FILE_LIST, "notes.txt", PREPARE_MANIFEST):
            record.write(json.dumps([name, "gone.jpg", 1, 1]) + "\n")
    manifest = prepare(data, out, SETTINGS, num_threads=1, progress=False, delete_stale=True)
    assert manifest["deleted"] == [] and (victim / "photo.jpg").read_bytes() == b"elsewhere"
    assert (out / FILE_LIST).is_file() and (out / "notes.txt").is_file()
    (out / (RECORD + ".partial")).symlink_to(victim / "photo.jpg")  # a link in the place of a temporary file
    with pytest.raises(ValueError, match="is a link.*remove it"):
        prepare(data, out, SETTINGS, num_threads=1, progress=False)
    assert (victim / "photo.jpg").read_bytes() == b"elsewhere"


def test_a_folder_in_the_place_of_a_copy_is_named_and_kept(source, tmp_path):
    out = tmp_path / "out"
    prepare(source, out, SETTINGS, num_threads=1, progress=False)
    (out / "a/big.jpg").unlink()
    (out / "a/big.jpg").mkdir()
    (out / "a/big.jpg/mine.txt").write_text("the user's")
    with pytest.raises(ValueError, match="a/big.jpg' is a folder where prepare writes the copy of 'a/big.jpg'"):
        prepare(source, out, SETTINGS, num_threads=1, progress=False)
    assert (out / "a/big.jpg/mine.txt").read_text() == "the user's"


def test_a_second_run_on_the_same_output_at_once_is_refused(source, tmp_path):
    out = tmp_path / "out"
    prepare(source, out, SETTINGS, num_threads=1, progress=False)
    with open(out / prepare_module.LOCK, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # as the other run holds it
        with pytest.raises(ValueError, match="another `dali-has prepare` is writing"):
            prepare(source, out, SETTINGS, num_threads=1, progress=False)
        # The refused run had marked the output unfinished first: every loader then refused it.
        assert json.loads((out / PREPARE_MANIFEST).read_text())["complete"] is True
    assert prepare(source, out, SETTINGS, num_threads=1, progress=False)["converted"] == 0


def test_shards_are_not_updated_in_place_when_the_source_changed(source, tmp_path):
    data, out = tmp_path / "data", tmp_path / "shards"
    shutil.copytree(source, data)
    settings = PrepareSettings(max_side=MAX_SIDE, webdataset=True, shard_samples=3)
    first = prepare(data, out, settings, num_threads=1, progress=False)
    again = prepare(data, out, settings, progress=False)  # unchanged: resumes, nothing to convert
    assert (again["reused"], again["converted"]) == (first["prepared"], 0)
    (data / "b/new.jpg").write_bytes(encode(smooth(70, 50)))
    with pytest.raises(ValueError, match="shards are not updated in place"):
        prepare(data, out, settings, progress=False)
    assert json.loads((out / PREPARE_MANIFEST).read_text()) == again  # nothing written


def test_a_full_disk_names_the_file_and_the_rerun_finishes(tmp_path):
    # It said only "[Errno 27] File too large".
    source = tmp_path / "src"
    (source / "c0").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((200, 200, 3), 40 * i, np.uint8)).save(source / "c0" / f"{i}.png")
    argv = [sys.executable, "-m", "train.cli", "prepare", "--data", str(source), "--out", str(tmp_path / "out"),
            "--encoding", "npy", "--num-threads", "1", "--no-progress"]
    limit = 64 * 1024  # bytes a process may write to one file: less than one 200x200x3 .npy
    full = subprocess.run(argv, capture_output=True, text=True, cwd=Path(__file__).parents[2],
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert full.returncode == 2
    assert f"{tmp_path / 'out' / 'c0'}/0.npy: File too large; make room, then run the same command again" in full.stderr
    assert subprocess.run(argv, capture_output=True, cwd=Path(__file__).parents[2]).returncode == 0
    assert len(read_file_list(tmp_path / "out" / FILE_LIST).samples) == 3
