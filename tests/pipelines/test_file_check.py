"""`pipelines.file_check`: what reaches DALI's decoder, the verdict cache, and the loader's error/skip policy.

The crash these checks prevent kills the process, so the loader tests that would crash without them run in a
subprocess and assert on its exit status.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines import PipelineOptions, UnreadableImageError, file_check, make_loader
from pipelines.bad_files import find_undecodable
from pipelines.file_check import (
    MAX_FILE_BYTES,
    check_dataset,
    check_file,
    signature_format,
    usable_dataset,
)
from pipelines.files import list_folder
from tests.pipelines.bad_images import cut_in_image_data, image, jpeg_bytes, patch_jpeg_size

REPO = Path(__file__).parents[2]


def encoded(fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image().save(out, fmt, **kwargs)
    return out.getvalue()


def gif() -> bytes:
    return encoded("GIF")


@pytest.mark.parametrize("fmt, name", [("JPEG", "jpeg"), ("PNG", "png"), ("BMP", "bmp"), ("TIFF", "tiff"),
                                       ("PPM", "pnm"), ("WEBP", "webp"), ("JPEG2000", "jpeg2000")])
def test_every_format_dali_decodes_is_accepted(tmp_path, fmt, name):
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(encoded(fmt))
    assert signature_format(path.read_bytes()[:16]) == name
    assert check_file(path) == file_check.Verdict("ok", name)


def test_signatures_follow_nvimagecodec_parsers():
    assert signature_format(b"II+\0" + b"\0" * 12) == "tiff"  # BigTIFF
    assert signature_format(b"P1 ") == "pnm" and signature_format(b"P7\n") is None and signature_format(b"P6x") is None
    assert signature_format(b"\xff\x4f\xff\x51" + b"\0" * 8) == "jpeg2000"  # raw J2K codestream
    assert signature_format(b"RIFF\0\0\0\0WEBPVP8X") == "webp"
    assert signature_format(b"RIFF\0\0\0\0WAVEfmt ") is None
    assert signature_format(b"GIF89a") is None and signature_format(b"") is None


@pytest.mark.parametrize("data, kind, words", [
    (b"", "empty", "0 bytes"),
    (b"hello, I am text\n", "not-an-image", "it starts with b'hello, I am text'"),
    (None, "not-an-image", "GIF"),  # a GIF named .jpg
    (b"\xff\xd8" + b"hello" * 20, "bad-header", "jpeg signature but its header cannot be parsed"),
    (b"\x89PNG\r\n\x1a\n" + b"junk" * 20, "bad-header", "png"),
    (b"BM" + b"junk" * 20, "bad-dimensions", "bmp header says"),  # garbage "parses" to absurd sizes
    (b"P6\n" + b"junk" * 20, "bad-dimensions", "pnm header says 0x0"),
    (patch_jpeg_size(jpeg_bytes(), 0, 40), "bad-dimensions", "40x0 pixels"),
    (patch_jpeg_size(jpeg_bytes(), 65535, 65535), "bad-dimensions", "65535x65535"),
    (patch_jpeg_size(jpeg_bytes(), 30000, 30000), "too-large", "decompression-bomb"),
])
def test_refusals_say_why(tmp_path, data, kind, words):
    path = tmp_path / "x.jpg"
    path.write_bytes(gif() if data is None else data)
    verdict = check_file(path)
    assert verdict.kind == kind and words in verdict.detail


WEBP = encoded("WEBP")


def exif_thumbnailed_jpeg() -> bytes:
    """A JPEG carrying a JPEG thumbnail in its EXIF segment: an end-of-image marker long before its own end."""
    thumbnail = jpeg_bytes(image(size=(8, 6)))
    assert thumbnail.endswith(b"\xff\xd9")
    exif = image().getexif()
    exif[0x0112] = 1
    data = jpeg_bytes(exif=exif.tobytes() + thumbnail)  # the thumbnail's bytes inside APP1, as cameras store it
    assert thumbnail in data
    return data


@pytest.mark.parametrize("name, data, words", [
    ("cut-mid-scan.jpg", cut_in_image_data(jpeg_bytes()), "JPEG: its data ends before the end-of-image marker"),
    ("cut-at-the-marker.jpg", jpeg_bytes()[:-2], "end-of-image marker"),
    ("progressive-cut.jpg", cut_in_image_data(jpeg_bytes(progressive=True)), "end-of-image marker"),
    # The thumbnail's end-of-image marker comes before the main image's first scan: it does not count.
    ("thumbnail-kept-main-image-cut.jpg", cut_in_image_data(exif_thumbnailed_jpeg()), "end-of-image marker"),
    ("cut.webp", WEBP[:-1], f"WEBP: its RIFF header says {len(WEBP)} bytes, the file has {len(WEBP) - 1}"),
    ("empty-riff.webp", WEBP[:4] + bytes(4) + WEBP[8:], "holds 0 bytes, too few for any image"),
])
def test_a_file_cut_short_is_refused_as_truncated(tmp_path, name, data, words):
    # Its header parses, so without this check DALI would take it and stop on it mid-epoch, past the point where
    # skip_bad_files can leave it out; `scan` reports it under the same kind.
    path = tmp_path / name
    path.write_bytes(data)
    verdict = check_file(path)
    assert verdict.kind == "truncated" and words in verdict.detail


@pytest.mark.parametrize("name, data", [
    ("plain.jpg", jpeg_bytes()),
    ("thumbnailed.jpg", exif_thumbnailed_jpeg()),
    ("zero-padded.jpg", jpeg_bytes() + b"\0" * 100),
    ("trailing-data.jpg", jpeg_bytes() + b"appended video " * 100_000),  # 1.5 MB after the marker: motion photos
    ("trailing-data.webp", WEBP + b"\0" * 10),
])
def test_complete_files_pass_with_anything_after_their_end(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    assert check_file(path).ok
    options = PipelineOptions(batch_size=1, num_threads=1)
    assert find_undecodable([str(path)], options, progress=False) == []  # and DALI decodes it


def test_a_jpegs_end_is_found_across_read_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(file_check, "_RFIND_CHUNK", 7)  # the marker straddles chunk boundaries somewhere
    cut = cut_in_image_data(jpeg_bytes())
    for pad in range(7):
        for name, data, kind in ((f"padded{pad}.jpg", jpeg_bytes() + b"\0" * pad + b"x", file_check.OK),
                                 (f"cut{pad}.jpg", cut + b"\0" * pad + b"x", "truncated")):
            (tmp_path / name).write_bytes(data)
            assert check_file(tmp_path / name).kind == kind, name


def test_a_jpeg_cut_while_it_is_checked_is_refused_not_a_crash(tmp_path, monkeypatch):
    """The end used to be searched in an mmap of the file: one cut meanwhile (a copy over it) killed the
    process with SIGBUS."""
    path = tmp_path / "rewritten.jpg"
    path.write_bytes(jpeg_bytes() + b"\0" * 100_000)
    parse = file_check.parse_jpeg_header

    def cut_first(data):
        os.truncate(path, 10)
        return parse(data)

    monkeypatch.setattr(file_check, "parse_jpeg_header", cut_first)
    verdict = check_file(path)
    assert verdict.kind == "truncated" and "cut while it was checked" in verdict.detail


def test_special_files_are_refused_without_reading_them(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    (tmp_path / "fifo.jpg").symlink_to(tmp_path / "fifo")
    (tmp_path / "broken.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tmp_path / "good.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "link.jpg").symlink_to(tmp_path / "good.jpg")
    assert check_file(tmp_path / "zero.jpg").kind == "not-a-file"
    assert "a character device" in check_file(tmp_path / "zero.jpg").detail
    assert "a FIFO" in check_file(tmp_path / "fifo.jpg").detail  # would block a reader forever
    assert check_file(tmp_path / "broken.jpg").kind == "missing"
    assert check_file(tmp_path / "link.jpg").ok  # links to regular files are fine


def test_files_over_the_size_limit_are_not_read(tmp_path, monkeypatch):
    path = tmp_path / "big.jpg"
    path.write_bytes(jpeg_bytes())
    monkeypatch.setattr(file_check, "MAX_FILE_BYTES", path.stat().st_size - 1)
    verdict = check_file(path)
    assert verdict.kind == "too-large" and "it is not read" in verdict.detail
    assert MAX_FILE_BYTES == 1 << 30


def small_tree(root: Path, bad: dict[str, bytes]) -> Path:
    for i in range(5):
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        (root / f"c{i % 2}" / f"{i}.jpg").write_bytes(jpeg_bytes())
    for name, data in bad.items():
        (root / name).write_bytes(data)
    return root


def test_verdicts_are_cached_by_path_size_and_mtime(tmp_path, monkeypatch):
    root = small_tree(tmp_path / "data", {"c0/text.jpg": b"text"})
    cache = tmp_path / "cache"
    checked = []
    real = file_check.check_file
    monkeypatch.setattr(file_check, "check_file", lambda path: checked.append(Path(path).name) or real(path))
    first = check_dataset(list_folder(root), root, cache_dir=cache)
    assert len(checked) == 6 and [name for name, _ in first.refused] == ["c0/text.jpg"]
    checked.clear()
    second = check_dataset(list_folder(root), root, cache_dir=cache)
    assert checked == [] and second == first  # the second listing reads no file
    (root / "c0/text.jpg").write_bytes(jpeg_bytes())  # replaced: another size and mtime
    third = check_dataset(list_folder(root), root, cache_dir=cache)
    assert checked == ["text.jpg"] and third.refused == ()
    checked.clear()
    (root / "c1/1.jpg").unlink()
    (root / "c1/new.jpg").write_bytes(b"new text")  # another listing: the unchanged files still come from the cache
    fourth = check_dataset(list_folder(root), root, cache_dir=cache)
    assert checked == ["new.jpg"] and [name for name, _ in fourth.refused] == ["c1/new.jpg"]
    (cache_file,) = cache.glob("*.json")
    doc = json.loads(cache_file.read_text())
    assert doc["format"] == "dali-has-file-check" and len(doc["names"]) == 6
    assert doc["kinds"] == ["ok", "not-an-image"] and sorted(doc["verdict"]) == [0] * 5 + [1]


@pytest.mark.parametrize("garbage", [b"", b"{not json", b'{"format": "dali-has-file-check", "version": 1}',
                                     b'[1, 2]', b"\xff\xfe\x00", "columns",
                                     b"[" * 100_000 + b"]" * 100_000,  # a RecursionError: every run failed
                                     "fifo"])  # reading it waited for ever
def test_a_corrupt_cache_is_ignored_and_rewritten(tmp_path, garbage):
    root = small_tree(tmp_path / "data", {"c1/gif.jpg": gif()})
    cache = tmp_path / "cache"
    first = check_dataset(list_folder(root), root, cache_dir=cache)
    (cache_file,) = cache.glob("*.json")
    if garbage == "columns":  # valid JSON of the right format, but a verdict index out of range
        doc = json.loads(cache_file.read_text())
        doc["verdict"][0] = 99
        garbage = json.dumps(doc).encode()
    if garbage == "fifo":
        cache_file.unlink()
        os.mkfifo(cache_file)
        assert check_dataset(list_folder(root), root, cache_dir=cache) == first
        return
    cache_file.write_bytes(garbage)
    assert check_dataset(list_folder(root), root, cache_dir=cache) == first
    assert json.loads(cache_file.read_text())["format"] == "dali-has-file-check"


def test_concurrent_checkers_agree_and_leave_a_valid_cache(tmp_path):
    root = small_tree(tmp_path / "data", {"c0/text.jpg": b"text"})
    cache = tmp_path / "cache"
    results, errors = [], []

    def check():
        try:
            results.append(check_dataset(list_folder(root), root, cache_dir=cache))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=check) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 8 and all(r == results[0] for r in results)
    (cache_file,) = cache.glob("*.json")
    assert len(json.loads(cache_file.read_text())["names"]) == 6
    assert not list(cache.glob(".tmp-*"))


def test_error_names_the_files_and_skip_leaves_them_out(tmp_path):
    root = small_tree(tmp_path / "data", {"c0/text.jpg": b"text", "c1/gif.jpg": gif()})
    with pytest.raises(UnreadableImageError) as error:
        usable_dataset(root, cache_dir=tmp_path / "cache")
    assert sorted(error.value.paths) == [str(root / "c0/text.jpg"), str(root / "c1/gif.jpg")]
    message = str(error.value)
    assert "2 of 7 files" in message and "c1/gif.jpg: is a GIF file" in message
    assert "skip_bad_files=True" in message and "--skip-bad-files" in message
    with pytest.warns(UserWarning, match=r"skipping 2 of 7 files .* listed with the reasons in (\S+)") as warned:
        kept = usable_dataset(root, skip_bad_files=True, cache_dir=tmp_path / "cache")
    assert len(kept) == 5 and {label for _, label in kept.samples} == {0, 1}
    listed = Path(str(warned[0].message).rsplit(" ", 1)[-1])
    refused = [json.loads(line) for line in listed.read_text().splitlines()]
    assert [(r["path"], r["kind"]) for r in refused] == [(str(root / "c0/text.jpg"), "not-an-image"),
                                                         (str(root / "c1/gif.jpg"), "not-an-image")]


def test_loader_skips_refused_files_and_keeps_labels(tmp_path):
    # The cut JPEG would stop DALI's decoder mid-epoch: refused with the others, before the first batch.
    root = small_tree(tmp_path / "data", {"c0/text.jpg": b"text", "c1/fifo.jpg": b"",
                                          "c1/cut.jpg": cut_in_image_data(jpeg_bytes())})
    (root / "c1/fifo.jpg").unlink()
    os.mkfifo(root / "c1/fifo")
    (root / "c1/fifo.jpg").symlink_to(root / "c1/fifo")  # a loader reading it would hang
    with pytest.raises(UnreadableImageError, match="(?s)cut.jpg: is a truncated JPEG.*fifo.jpg: is not a regular"):
        make_loader(root, train=False, batch_size=2, crop=8)
    with pytest.warns(UserWarning, match="skipping 3 of 8"):
        loader = make_loader(root, train=False, batch_size=2, crop=8, skip_bad_files=True)
    labels = [label for _, batch in loader for label in batch.tolist()]
    assert labels == [0, 0, 0, 1, 1]  # c0 holds 0, 2, 4; c1 holds 1, 3


CRASH_SCRIPT = textwrap.dedent("""
    import sys, warnings
    from pipelines import UnreadableImageError, make_loader
    data, batch, skip = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "skip"
    warnings.simplefilter("ignore")
    try:
        loader = make_loader(data, train=True, batch_size=batch, crop=16, seed=0, num_threads=2, skip_bad_files=skip)
        print("samples", sum(len(labels) for _, labels in loader))
    except UnreadableImageError as error:
        print("refused", len(error.paths))
""")


@pytest.fixture(scope="module")
def crashing_tree(tmp_path_factory):
    """102 JPEGs, 20 text files and 20 GIFs named .jpg: DALI 2.4 segfaulted on this in 9 of 9 runs."""
    root = tmp_path_factory.mktemp("crash")
    rng = np.random.default_rng(0)
    for i in range(102):
        (root / f"c{i % 3}").mkdir(exist_ok=True)
        pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"c{i % 3}/g{i:03d}.jpg", quality=90)
    for i in range(20):
        (root / f"c{i % 3}/t{i:03d}.jpg").write_text("hello, I am text\n" * 3)
        (root / f"c{i % 3}/z{i:03d}.jpg").write_bytes(gif())
    return root


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [32, 64, 128])
@pytest.mark.parametrize("policy, expected", [("error", "refused 40"), ("skip", "samples 102")])
def test_non_images_never_crash_the_loader(crashing_tree, batch_size, policy, expected):
    done = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(crashing_tree), str(batch_size), policy],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "DALI_HAS_CACHE": str(crashing_tree.parent / "cache")})
    assert done.returncode == 0, done.stderr[-2000:]  # -11 was SIGSEGV
    assert done.stdout.split("\n")[-2] == expected


def test_a_process_checks_an_unchanged_source_once(tmp_path, monkeypatch):
    # A trainer builds a loader per epoch: the second epoch must not list and check the files again.
    root = small_tree(tmp_path / "data", {})
    calls = []
    real = file_check.check_dataset
    monkeypatch.setattr(file_check, "check_dataset", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = usable_dataset(root, cache_dir=tmp_path / "cache")
    assert usable_dataset(root, cache_dir=tmp_path / "cache") == first and len(calls) == 1
    (root / "c1/new.jpg").write_bytes(b"text")  # a class folder changed: listed and checked again
    with pytest.raises(UnreadableImageError, match="c1/new.jpg"):
        usable_dataset(root, cache_dir=tmp_path / "cache")
    assert len(calls) == 2
    (root / "c1/new.jpg").unlink()
    assert usable_dataset(root, cache_dir=tmp_path / "cache") == first and len(calls) == 3


def test_without_proc_the_header_is_parsed_through_the_path(tmp_path, monkeypatch):
    monkeypatch.setattr(file_check, "_PROC_FDS", False)
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8" + b"junk" * 10)
    assert check_file(tmp_path / "a.jpg").ok and check_file(tmp_path / "b.jpg").kind == "bad-header"


def npy_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


def npy_header(text: str) -> bytes:
    """A NumPy 1.0 file whose header is `text` (no data)."""
    header = text.encode().ljust(117) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


PIXELS = npy_bytes(np.zeros((5, 7, 3), np.uint8))
PWNED = Path(__file__).parent / "pwned-by-npy-header"


@pytest.mark.parametrize("name, data, kind, words", [
    ("ok.npy", PIXELS, "ok", "npy"),
    ("grey.npy", npy_bytes(np.zeros((5, 7), np.uint8)), "bad-dimensions", "shape (5, 7)"),
    ("rgba.npy", npy_bytes(np.zeros((5, 7, 4), np.uint8)), "bad-dimensions", "height x width x 3"),
    ("float.npy", npy_bytes(np.zeros((5, 7, 3), np.float32)), "bad-dimensions", "float32"),
    ("fortran.npy", npy_bytes(np.asfortranarray(np.zeros((5, 7, 3), np.uint8))), "bad-dimensions", "Fortran"),
    ("objects.npy", npy_header("{'descr': '|O', 'fortran_order': False, 'shape': (3,), }"), "bad-dimensions",
     "object"),
    ("code.npy", npy_header(f"__import__('os').system('touch {PWNED}')"), "bad-header", "cannot be parsed"),
    ("cut.npy", PIXELS[:-1], "bad-header", "cut short"),
    ("padded.npy", PIXELS + b"\0", "bad-header", "trailing data"),
    ("version2.npy", PIXELS[:6] + b"\x02\x00" + PIXELS[8:], "bad-header", "version 02.00"),
    ("huge.npy", npy_bytes(np.zeros((1, 65501, 3), np.uint8)), "bad-dimensions", "65501x1"),
    ("jpeg.npy", jpeg_bytes(), "not-an-image", "no NumPy file"),
    ("pixels.jpg", PIXELS, "not-an-image", "name it *.npy"),
])
def test_decoded_pixel_files_are_checked_whole(tmp_path, name, data, kind, words):
    (tmp_path / name).write_bytes(data)
    verdict = check_file(tmp_path / name)
    assert verdict.kind == kind and words in verdict.detail, verdict
    assert not PWNED.exists()  # the header is read as literals, never run


@pytest.mark.parametrize("pixels", [False, True])
def test_the_refusal_points_to_scan_only_where_scan_can_explain(tmp_path, pixels):
    """`dali-has scan` checks encoded images and refuses a data set of decoded pixels: not named for one."""
    (tmp_path / "a").mkdir()
    if pixels:
        np.save(tmp_path / "a" / "0.npy", np.zeros((4, 4, 3), np.uint8))
        (tmp_path / "a" / "1.npy").write_bytes(b"\x93NUMPY cut short")
    else:
        Image.new("RGB", (8, 8)).save(tmp_path / "a" / "0.jpg")
        (tmp_path / "a" / "1.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UnreadableImageError, match="1 of 2 files") as refused:
        usable_dataset(tmp_path, skip_bad_files=False, cache_dir=tmp_path / "cache")
    assert ("dali-has scan" in str(refused.value)) is not pixels
