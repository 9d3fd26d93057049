"""`dali-has prepare`: a one-time copy of a dataset in which every image is small enough to decode fast.

Decoding is most of a CPU pipeline's work and grows with the pixels of the *stored* image, not of the network
input: a 500×375 ImageNet JPEG is decoded to feed a 224×224 crop. Re-encoding every image once, bounded to a few
hundred pixels, makes every epoch after it cheaper (FFCV's ImageNet recipes do the same).

Which side is bounded. `side="shorter"` (the default) scales each image so its shorter side is at most
`max_side`; `"longer"` bounds the longer side, as FFCV's `max_resolution` does. We default to the shorter side
because of what the pipelines then do with the pixels:
* evaluation resizes the shorter side to crop / 0.875 (256 for a 224 crop) and cuts the centre: a copy bounded
  on the shorter side at 256 holds exactly those pixels, while a 256×192 longer-side copy must be enlarged
  by a third first;
* random-resized-crop cuts a window of 8–100 % of the image area and resizes it to 224×224: on a 341×256
  shorter-side copy the average window (about 54 % of the area) is ~217 px a side, close to 1:1; on a 256×192
  longer-side copy it is ~163 px, so most training crops are enlarged 1.4× and blurrier than the originals'.
The longer side makes smaller files (about 44 % fewer pixels at 4:3) and faster decoding; choose it for
low-resolution training (e.g. FFCV's 160–192 px progressive resizing) or to compare with FFCV's recipe.

What a prepared image is. Decoded as DALI's loader decodes the original: EXIF orientation applied (DALI turns
images upright when decoding, so the copy is stored upright, without the tag), CMYK and palette images converted
to RGB, alpha dropped (as DALI drops it), 16-bit images scaled to 8 bits by 1/257 (as DALI does; PIL alone would
clip), grayscale kept grayscale (DALI replicates it to RGB); then resized with Lanczos filtering when larger than
the bound (JPEGs are first decoded at 1/2, 1/4 or 1/8 scale by libjpeg's DCT scaling where that still leaves
at least the target size), never enlarged, and stored as a baseline JPEG at `quality`. The pixels differ from
the original's by the resize and one more JPEG generation, not by orientation or colour conversion. A file
that is already what this would produce (a baseline RGB or grayscale JPEG, upright, within the bound) is copied
byte for byte instead, so it loses nothing.

Decoded pixels instead of JPEGs. With `encoding="npy"` each prepared image is stored decoded, as a NumPy .npy
file (uint8, height x width x 3, grayscale replicated to RGB as DALI's decoder does), so training decodes
nothing: what FFCV's "raw" mode does. It costs disk (a 341x256 image is 262 KB; the bench's 512 images take
126.8 MB instead of 16.6 MB as q90 JPEGs, 7.7 times more) and saves the decoding, which is most of a CPU
pipeline's work; the pixels are the resized image's, without the JPEG generation. Not with `webdataset=True`
(shards hold JPEGs).

What is kept. Labels, and every sample's relative path with its extension replaced by `.jpg` (`.npy`). A folder source
`DIR/<class>/<file>` becomes `OUT/<class>/<file>.jpg` with every class folder (empty ones too, so the labels of a
folder listing stay the same); a file list's entries keep their relative paths. `OUT/file_list.txt` lists the
prepared images with their labels. With `webdataset=True` the images go into tar shards instead
(`pipelines.webdataset`): `OUT/shard-000000.tar` + `.idx`, `shard_samples` samples each, in a random order
fixed by `SHARD_ORDER_SEED` (DALI's WebDataset reader shuffles only within a buffer, so stored order matters).

Bad files. The files to convert are first checked by `pipelines.scan` (the checks of `dali-has scan`); the
unusable ones are left out and listed, with scan's reasons, in the manifest `OUT/prepare.json`, which also holds
the settings, the counts and the bytes before and after.

Interruptions and changes. Every image (or shard) is written under a temporary `.partial` name and renamed when
complete, and the manifest records the settings first: running the same command again skips what is already
complete and finishes the rest; different settings for an existing output are an error. A folder output records
each prepared file with the size and modification time of the source it was made from (`OUT/prepared.jsonl`,
appended as files complete), so a run after the source changed converts what was added or changed since, as
rsync's quick check sees changes (a file rewritten with its size and time kept is not), and lists only current
copies in the file list. The record, not the copies' own times, decides: output file systems keep times at
other resolutions (1 s, 2 s on FAT), and a copy whose record was lost to an interruption is simply made again.
Files this preparation wrote whose source is gone (or now unusable) are reported as `stale` in the manifest and
kept (a source may be missing by accident: a storage mount half there), or deleted when asked (`delete_stale`,
`--delete-stale`), with the folders that leaves empty and empty folders that are no classes (renamed ones);
files it did not write are never touched: a record entry counts only with the prepared files' extension and
no link on its way, and prepare writes no file through a link. One run at a time writes an output (a lock).
Shards cannot be updated in place: their manifest holds a digest of the source's names, labels, sizes and
modification times, and a changed source is refused.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image
from tqdm import tqdm

from dali_has import validate
from pipelines import webdataset
from pipelines.files import (
    PIXELS_SUFFIX,
    PREPARE_MANIFEST,
    Dataset,
    file_list_text,
    load_dataset,
    stores_pixels,
    unlistable,
    unlistable_folder,
)
from pipelines.orientation import UPRIGHT, exif_orientation
from pipelines.own_files import open_own, sole_writer, temporary, written_whole
from pipelines.scan import ERROR, Problem, scan_dataset
from pipelines.settings import default_num_threads

SIDES = ("shorter", "longer")
ENCODINGS = {"jpeg": ".jpg", "npy": PIXELS_SUFFIX}  # how prepared images are stored -> their extension
LOCK = "prepare.lock"  # held by the run writing OUT
RECORD = "prepared.jsonl"  # folder outputs: each prepared file and the source (name, size, mtime) it was made from
FILE_LIST = "file_list.txt"
FORMAT_VERSION = 1  # of the output; bump when prepared images would come out differently
SHARD_ORDER_SEED = 0
SHARD_NAME = "shard-{:06d}" + webdataset.SHARD_SUFFIX


@dataclass(frozen=True)
class PrepareSettings:
    """How images are prepared (see the module docstring).

    max_side: the bounded side's largest size in pixels. side: "shorter" or "longer".
    quality: JPEG quality of re-encoded images, 1..100.
    encoding: "jpeg" or "npy" (decoded pixels; see the module docstring).
    webdataset: write tar shards instead of a folder; shard_samples: samples per shard (the last one holds the
        rest, bad files make shards smaller).
    """

    max_side: int = 256
    side: str = "shorter"
    quality: int = 90
    webdataset: bool = False
    shard_samples: int = 10_000
    encoding: str = "jpeg"

    def __post_init__(self):
        validate.positive_int("max_side", self.max_side)
        validate.one_of("side", self.side, SIDES)
        validate.whole_number("quality", self.quality, minimum=1, maximum=100)
        validate.boolean("webdataset", self.webdataset)
        validate.positive_int("shard_samples", self.shard_samples)
        validate.one_of("encoding", self.encoding, tuple(ENCODINGS))
        if self.webdataset and self.encoding != "jpeg":
            raise ValueError(f"encoding={self.encoding!r} with webdataset=True: shards hold JPEGs; write decoded "
                             "pixels to a folder (leave out --webdataset)")

    @property
    def suffix(self) -> str:
        """The prepared files' extension."""
        return ENCODINGS[self.encoding]

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) with the bounded side at most max_side, aspect ratio kept, never enlarged."""
        bound = min(width, height) if self.side == "shorter" else max(width, height)
        scale = min(1.0, self.max_side / bound)
        return max(1, round(width * scale)), max(1, round(height * scale))


def shrink(data: bytes, settings: PrepareSettings) -> Optional[bytes]:
    """The prepared file of one encoded image (a JPEG, or .npy pixels), or None when `data` already is what it
    would be (copy it)."""
    with Image.open(io.BytesIO(data)) as image:
        size = settings.target_size(*image.size)
        orientation = exif_orientation(image)
        if (settings.encoding == "jpeg" and size == image.size and image.format == "JPEG"
                and image.mode in ("RGB", "L") and orientation == 1 and not image.info.get("progressive")):
            return None
        if image.format == "JPEG":
            image.draft(image.mode, size)  # DCT-domain downscale while decoding, to no less than `size`
        image = _eight_bit(image).resize(size, Image.Resampling.LANCZOS, reducing_gap=None)
        if orientation != 1:
            image = image.transpose(UPRIGHT[orientation])
        out = io.BytesIO()
        if settings.encoding == "npy":
            np.save(out, np.asarray(image.convert("RGB")), allow_pickle=False)
        else:
            image.save(out, "JPEG", quality=settings.quality)
        return out.getvalue()


def _eight_bit(image: Image.Image) -> Image.Image:
    """RGB, or L for grayscale, with 8 bits per channel, as DALI's decoder would hand it over."""
    if image.mode in ("RGB", "L"):
        return image
    if image.mode.startswith("I"):  # 16/32-bit grayscale: DALI scales 0..65535 to 0..255 (PIL's convert clips)
        pixels = np.asarray(image, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L")
    return image.convert("L" if image.mode in ("1", "LA", "La") else "RGB")


def target_names(dataset: Dataset, suffix: str = ".jpg") -> list[str]:
    """Each sample's relative path in the output: the same path with the prepared files' extension. A file a list
    names twice (oversampling, a second label) has one target; two files with one target are an error."""
    names, sources = [], []
    for name, _ in dataset.samples:
        path = _relative_source(dataset, name)
        if path.is_absolute() or path.parts[0] == "..":
            raise ValueError(f"{name!r} lies outside {str(dataset.root)!r}: prepare keeps relative paths; write "
                             "the file list in a folder that holds all its images")
        names.append(path.with_suffix(suffix).as_posix())
        sources.append(path)
    first = {}
    for (source, _), path, target in zip(dataset.samples, sources, names):
        if target in first and first[target][1] != path:
            raise ValueError(f"{first[target][0]!r} and {source!r} would both become {target!r}; rename one")
        first.setdefault(target, (source, path))
    return names


def _relative_source(dataset: Dataset, name: str) -> Path:
    """A sample's file as one path relative to the data's folder however it is written ("a.jpg", "./a.jpg", the
    absolute path: a file list may name its own folder), or absolute / "../" for a file outside it."""
    path = Path(os.path.normpath(name))
    root = os.path.normpath(dataset.root.absolute())
    return path.relative_to(root) if path.is_absolute() and path.is_relative_to(root) else path


def _refuse_what_the_output_cannot_hold(dataset: Dataset, names: list[str], settings: PrepareSettings,
                                        out: Path) -> None:
    """Before the output is claimed: a refusal after it would leave an unfinished output no rerun can finish."""
    if stores_pixels(dataset):
        raise ValueError(f"{str(dataset.root)!r} holds decoded pixels (.npy files, a `dali-has prepare --encoding "
                         "npy` output): prepare re-encodes images; prepare the images it was made from")
    if reason := unlistable_folder(out / FILE_LIST):  # DALI's readers take UTF-8 paths, shards' too
        raise ValueError(f"--out {str(out)!r}: {reason}")
    if settings.webdataset:
        twice = next((name for name, count in Counter(names).items() if count > 1), None)
        if twice is not None:
            raise ValueError(f"the file list names {twice!r} (as prepared) more than once: a shard holds each "
                             "sample once, under its name; prepare a folder (leave out --webdataset: its file list "
                             "keeps every entry with its label), or list the file once")
        return
    bad = [(source, reason) for (source, _), name in zip(dataset.samples, names) if (reason := unlistable(name))]
    if bad:
        raise ValueError(f"{len(bad)} file name(s) cannot be written to the output's {FILE_LIST}, first "
                         f"{bad[0][0]!r}: {bad[0][1]}; rename them, or prepare shards (--webdataset), which keep "
                         "such names")


def _first_of_each_name(indices: list[int], names: list[str]) -> list[int]:
    """`indices` without the later ones of a name already there: a file listed twice is converted once."""
    first: dict[str, int] = {}
    for i in indices:
        first.setdefault(names[i], i)
    return [i for i in indices if first[names[i]] == i]


def prepare(data: str | os.PathLike, out: str | os.PathLike, settings: PrepareSettings = PrepareSettings(), *,
            num_threads: Optional[int] = None, progress: bool = True, delete_stale: bool = False) -> dict:
    """Prepare `data` (a folder tree or file list) into `out`; returns the manifest (also `out/prepare.json`).

    delete_stale: delete the prepared files that no current, usable source has (their paths are reported under
        "deleted" instead of "stale"), so that OUT read as a folder holds the data set as it is now.

    Raises:
        ValueError: bad settings, a name that cannot be kept, or `out` holding something else (another prepare
            with other settings, files that are not a prepare output, or shards of a source that changed since).
    """
    started = time.perf_counter()
    validate.boolean("delete_stale", delete_stale)
    num_threads = validate.positive_int("num_threads", default_num_threads() if num_threads is None else num_threads)
    dataset = load_dataset(data)
    names = target_names(dataset, settings.suffix)
    out = Path(out)
    _refuse_what_the_output_cannot_hold(dataset, names, settings, out)
    if dataset.classes is not None and out.resolve().is_relative_to(dataset.root.resolve()):
        # It would become a class folder of the data set (its labels shift; its images are trained on).
        raise ValueError(f"--out {out} lies inside the data folder {dataset.root}; give a folder outside it")
    manifest = {"format_version": FORMAT_VERSION, "source": str(Path(data).resolve()),
                "settings": asdict(settings), "classes": list(dataset.classes) if dataset.classes else None,
                **({"source_digest": source_digest(dataset)} if settings.webdataset else {})}
    _check_claim(out, manifest)  # before the folder is made: a refused run leaves nothing
    out.mkdir(parents=True, exist_ok=True)
    with sole_writer(out / LOCK, f"another `dali-has prepare` is writing {str(out)!r}; let it finish, then run "
                                  "this again (it resumes)"):
        # Again under the lock, and only then marked unfinished: a run refused the lock (or one that took it after
        # another finished) rewrote a finished output's manifest as unfinished, or as of its own settings.
        _check_claim(out, manifest)
        _write_json(out / PREPARE_MANIFEST, dict(manifest, complete=False))
        writer = (_ShardOutput if settings.webdataset else _FolderOutput)(out, dataset, names, settings)
        todo = writer.todo()
        files = _first_of_each_name(todo, names)
        report = scan_dataset(Dataset(dataset.root, tuple(dataset.samples[i] for i in files)),
                              num_threads=num_threads, progress=progress)
        problems = [p for p in report.problems if p.severity == ERROR]
        unusable = {p.path for p in problems}
        convert = [i for i in files if dataset.samples[i][0] not in unusable]
        converted = 0

        def work(i: int):
            try:
                with open(dataset.root / dataset.samples[i][0], "rb") as source:
                    state = _state(os.fstat(source.fileno()))  # of the bytes read, whatever changes the file later
                    data = source.read()
                return i, data, state, shrink(data, settings)
            except Exception as error:  # noqa: BLE001 - any failure of one file is reported, the rest go on
                return i, None, None, error

        with ThreadPoolExecutor(num_threads) as pool, tqdm(total=len(convert), unit="image", desc="prepare",
                                                            disable=not progress) as bar:
            for i, original, state, result in _in_order(pool, work, convert, ahead=4 * num_threads):
                name = dataset.samples[i][0]
                if isinstance(result, Exception):
                    problems.append(Problem(name, ERROR, "not-converted", f"could not be re-encoded: {result}",
                                            "Replace it or convert it yourself"))
                elif not writer.can_write(i):  # a finished shard of an earlier run left it out, yet it converts now
                    problems.append(Problem(name, ERROR, "not-converted", "is missing from a shard an earlier run "
                                            "finished", f"Delete {writer.place(i)} and its index, and run again"))
                else:
                    with _resumable(writer.place(i)):
                        writer.write(i, original if result is None else result, state)
                    converted += 1
                bar.update()
        with _resumable(str(out)):
            writer.finish()
        kept, stale = writer.kept(), writer.stale()
        if delete_stale:
            writer.delete(stale)
        manifest.update(
            complete=True, samples=len(dataset), prepared=len(kept), reused=len(dataset) - len(todo),
            converted=converted, unusable=len(problems),
            bytes={"source": sum((dataset.root / dataset.samples[i][0]).stat().st_size
                                 for i in _first_of_each_name(kept, names)),
                   "prepared": writer.prepared_bytes()},
            outputs=writer.outputs(), problems=[asdict(p) for p in sorted(problems, key=lambda p: p.path)],
            stale=[] if delete_stale else stale, deleted=stale if delete_stale else [],
            stale_folders=writer.stale_folders(),
            num_threads=num_threads, seconds=round(time.perf_counter() - started, 3))
        _write_json(out / PREPARE_MANIFEST, manifest)
    return manifest


def _check_claim(out: Path, manifest: dict) -> None:
    """Whether `out` may be this preparation's folder: new, or left by the same source and settings (resume)."""
    path = out / PREPARE_MANIFEST
    if path.is_file():
        try:
            earlier = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError) as error:
            earlier = error
        if not isinstance(earlier, dict) or not isinstance(earlier.get("settings", {}), dict):
            raise ValueError(f"{str(path)!r} is damaged (not the manifest `dali-has prepare` writes), so what "
                             f"{str(out)!r} holds is unknown: delete that folder and prepare again, or choose "
                             "another --out")
        # A setting added since that output was written counts as its default there.
        earlier["settings"] = {**asdict(PrepareSettings()), **earlier.get("settings", {})}
        keys = ("format_version", "source", "settings")
        if any(earlier.get(key) != manifest[key] for key in keys):
            raise ValueError(f"{str(out)!r} holds a preparation of {earlier.get('source')!r} with settings "
                             f"{earlier.get('settings')}; this one is of {manifest['source']!r} with "
                             f"{manifest['settings']}: choose another --out, or delete it")
        # Outputs written before the digest was recorded resume as they did.
        if "source_digest" in earlier and earlier["source_digest"] != manifest.get("source_digest"):
            raise ValueError(f"{str(out)!r} holds shards of {manifest['source']!r} as it was: files were added, "
                             "removed or changed there since (names, labels, sizes or modification times), and "
                             "shards are not updated in place: choose another --out, or delete it")
    elif out.exists() and any(entry.name != LOCK for entry in out.iterdir()):
        raise ValueError(f"{str(out)!r} is not empty and is no `dali-has prepare` output (no "
                         f"{PREPARE_MANIFEST}): choose a new or empty folder")


def _write_json(path: Path, value: dict) -> None:
    _write_own(path, (json.dumps(value, indent=1) + "\n").encode())


def _write_own(path: Path, data: bytes) -> None:
    """`data` as `path`, whole or not at all (written under a temporary name, renamed), through no link."""
    with _resumable(str(path)), written_whole(path) as file:
        file.write(data)


@contextlib.contextmanager
def _resumable(place: str):
    """A write error that names no file (a full disk) named with the file it was writing, and what to do."""
    try:
        yield
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        raise OSError(error.errno, f"{error.strerror}; make room, then run the same command again (it resumes)",
                      place) from None


def _state(info: os.stat_result) -> tuple[int, int]:
    """What tells a source file's versions apart: (size, modification time in ns), as rsync's quick check."""
    return info.st_size, info.st_mtime_ns


def source_digest(dataset: Dataset) -> str:
    """A SHA-256 of every sample's name, label, size and modification time: changes when the source does."""
    digest = hashlib.sha256()
    for name, label in dataset.samples:
        try:
            size, mtime_ns = _state((dataset.root / name).stat())
        except OSError:  # scan reports it; its absence is part of the state
            size = mtime_ns = -1
        digest.update(f"{name}\0{label}\0{size}\0{mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _in_order(pool: ThreadPoolExecutor, work: Callable, items: Iterable, ahead: int) -> Iterator:
    """work(item) for every item, run in the pool at most `ahead` at a time, yielded in the items' order."""
    pending = deque()
    for item in items:
        pending.append(pool.submit(work, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class _FolderOutput:
    """Images at `out/<relative path>.jpg` (`.npy`), a record of the source each was made from (RECORD), and a
    DALI file list of the current ones."""

    def __init__(self, out: Path, dataset: Dataset, names: list[str], settings: PrepareSettings):
        self.out, self.dataset, self.names, self.suffix = out, dataset, names, settings.suffix
        # Each sample's file however the list writes it ("a.jpg", "./a.jpg", absolute): a file listed twice is one.
        self._sources = [_relative_source(dataset, name) for name, _ in dataset.samples]
        self._made = _read_record(out, settings.suffix)  # prepared name -> (source name, size, mtime_ns)
        self._record = None  # opened for appending at the first write
        self._kept: list[int] = []
        for folder in dataset.classes or ():
            (out / folder).mkdir(parents=True, exist_ok=True)

    def _current(self, i: int) -> bool:
        """Whether sample i's copy was made from its source as it is now."""
        name, source = self.names[i], self.dataset.samples[i][0]
        try:
            state = _state((self.dataset.root / source).stat())
        except OSError:
            return False
        made = self._made.get(name)
        return (made is not None and _relative_source(self.dataset, made[0]) == self._sources[i]
                and made[1:] == state and (self.out / name).is_file())

    def todo(self) -> list[int]:
        return [i for i in range(len(self.names)) if not self._current(i)]

    def can_write(self, i: int) -> bool:
        return True

    def place(self, i: int) -> str:
        return str(self.out / self.names[i])

    def write(self, i: int, data: bytes, state: tuple[int, int]) -> None:
        name = self.names[i]
        target = self.out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir() and not target.is_symlink():
            raise ValueError(f"{str(target)!r} is a folder where prepare writes the copy of "
                             f"{self.dataset.samples[i][0]!r}: move it out of the output and run again (it resumes)")
        with written_whole(target) as file:
            file.write(data)
        # Recorded once the copy is complete: an interruption in between only makes it again.
        self._made[name] = (self.dataset.samples[i][0], *state)
        if self._record is None:
            self._record = open_own(self.out / RECORD, append=True)
        self._record.write((json.dumps([name, *self._made[name]]) + "\n").encode())
        self._record.flush()

    def finish(self) -> None:
        for name in self.names:  # what an interruption left half-written and this run did not finish
            temporary(self.out / name).unlink(missing_ok=True)
        self._kept = [i for i in range(len(self.names)) if self._current(i)]
        _write_own(self.out / FILE_LIST, file_list_text(self.out / FILE_LIST, [
            (self.out / self.names[i], self.dataset.samples[i][1]) for i in self._kept]).encode())
        self._made = {name: made for name, made in self._made.items() if (self.out / name).is_file()}
        self._write_record()

    def _write_record(self) -> None:
        """The record rewritten with one line per file (appending leaves a line per write), in name order."""
        if self._record is not None:
            self._record.close()
            self._record = None
        _write_own(self.out / RECORD,
                   "".join(json.dumps([name, *made]) + "\n" for name, made in sorted(self._made.items())).encode())

    def kept(self) -> list[int]:
        return self._kept

    def stale(self) -> list[str]:
        """Files this preparation wrote that the file list leaves out: their source is gone, or changed and not
        converted now (unusable)."""
        listed = {self.names[i] for i in self._kept}
        return sorted(name for name in self._made if name not in listed)

    def delete(self, stale: list[str]) -> None:
        """Delete stale files, the folders that leaves empty and empty folders that are no classes (renamed or
        removed ones; OUT read as a folder would count them as classes), so that OUT is the data set now."""
        classes = set(self.dataset.classes or ())
        folders = set()
        if self.dataset.classes is not None:  # empty folders of OUT that are no class would be read as classes
            folders.update(entry.name for entry in self.out.iterdir() if entry.is_dir() and not entry.is_symlink()
                           and entry.name not in classes)
        for name in stale:
            (self.out / name).unlink(missing_ok=True)
            del self._made[name]
            folders.update(parent.as_posix() for parent in Path(name).parents if parent.as_posix() not in classes)
        for folder in sorted(folders - {"."}, key=lambda f: -len(Path(f).parts)):  # the deepest first
            try:
                (self.out / folder).rmdir()
            except OSError:  # not empty (files of its own, e.g. the user's), or gone already
                pass
        self._write_record()

    def prepared_bytes(self) -> int:
        return sum((self.out / name).stat().st_size for name in {self.names[i] for i in self.kept()})

    def stale_folders(self) -> list[str]:
        """Folders of OUT that are no class of the source (removed or renamed since): OUT read as a folder would
        count them as classes, and the labels of the classes after them would shift."""
        if self.dataset.classes is None:
            return []
        return sorted(entry.name for entry in self.out.iterdir()  # links to folders too: read as classes as well
                      if entry.is_dir() and entry.name not in self.dataset.classes)

    def outputs(self) -> dict:
        return {"file_list": FILE_LIST, "record": RECORD}


def _read_record(out: Path, suffix: str) -> dict[str, tuple[str, int, int]]:
    """RECORD's entries, the last one per name; a line cut by an interruption, or not one of ours, is passed
    over (its file is then made again)."""
    made = {}
    real_out = out.resolve()
    unlinked: dict[str, bool] = {}  # folder -> no link on its way; resolved once per folder, not per file

    def prepared_file(name: str) -> bool:
        """Whether `name` can be a file prepare wrote: a relative path inside OUT, no link on the way (a record
        is data: one handed over with an output must not make --delete-stale delete elsewhere or its own
        files), with the prepared files' extension. String operations: a record may have a million lines."""
        if (not name.endswith(suffix) or name.startswith("/") or posixpath.normpath(name) != name
                or name == ".." or name.startswith("../")):
            return False
        folder = posixpath.dirname(name)
        if folder not in unlinked:
            unlinked[folder] = (out / folder).resolve() == real_out / folder
        return unlinked[folder]

    record = out / RECORD
    if record.exists() and not record.is_file():  # reading a FIFO waited for ever
        raise ValueError(f"{str(record)!r} is not a regular file (a FIFO?); prepare keeps its record there: remove "
                         "it and run again (it resumes)")
    try:
        lines = record.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return made
    for line in lines:
        try:
            name, source, size, mtime_ns = json.loads(line)
        except (ValueError, TypeError, RecursionError):  # a line that is not ours: that copy is made again
            continue
        if (isinstance(name, str) and isinstance(source, str) and type(size) is int and type(mtime_ns) is int
                and prepared_file(name)):
            made[name] = (source, size, mtime_ns)
    return made


class _ShardOutput:
    """Samples in a fixed random order, `shard_samples` per shard; a shard whose index exists is complete."""

    def __init__(self, out: Path, dataset: Dataset, names: list[str], settings: PrepareSettings):
        self.out, self.dataset = out, dataset
        self.keys = [webdataset.sample_key(name) for name in names]
        order = np.random.default_rng(SHARD_ORDER_SEED).permutation(len(dataset)).tolist()
        self.shards = [order[start:start + settings.shard_samples]
                       for start in range(0, len(order), settings.shard_samples)]
        self.shard_of = {i: s for s, members in enumerate(self.shards) for i in members}
        self.written: dict[int, set[str]] = {}  # complete shard -> keys it holds
        for s in range(len(self.shards)):
            if webdataset.index_path(self.path(s)).is_file() and self.path(s).is_file():
                self.written[s] = {entry.key for entry in webdataset.read_index(self.path(s))}
        self._open: Optional[webdataset.ShardWriter] = None
        self._open_shard = -1

    def path(self, shard: int) -> Path:
        return self.out / SHARD_NAME.format(shard)

    def todo(self) -> list[int]:
        """Samples of unfinished shards, and those a finished shard left out (bad files, checked again so the
        manifest lists every bad file), in writing order."""
        return [i for s, members in enumerate(self.shards) for i in members
                if s not in self.written or self.keys[i] not in self.written[s]]

    def can_write(self, i: int) -> bool:
        return self.shard_of[i] not in self.written

    def place(self, i: int) -> str:
        return str(self.path(self.shard_of[i]))

    def write(self, i: int, jpeg: bytes, state: tuple[int, int]) -> None:
        shard = self.shard_of[i]
        if shard != self._open_shard:
            self._close()
            self._open, self._open_shard = webdataset.ShardWriter(self.path(shard)), shard
        self._open.add(self.keys[i], jpeg, self.dataset.samples[i][1])

    def _close(self) -> None:
        if self._open is not None:
            self._open.close()
            self.written[self._open_shard] = set(self._open.keys)
            self._open = None

    def finish(self) -> None:
        self._close()  # a shard none of whose files was usable is not written at all

    def kept(self) -> list[int]:
        return [i for s, keys in sorted(self.written.items()) for i in self.shards[s] if self.keys[i] in keys]

    def prepared_bytes(self) -> int:
        return sum(self.path(s).stat().st_size for s in self.written)

    def outputs(self) -> dict:
        return {"shards": [self.path(s).name for s in sorted(self.written)]}

    def stale(self) -> list[str]:
        return []  # a changed source is refused (source_digest)

    def stale_folders(self) -> list[str]:
        return []

    def delete(self, stale: list[str]) -> None:
        pass
