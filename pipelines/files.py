"""What a dataset is and which files it holds, listed exactly as DALI's readers list them.

The image pipelines read three kinds of data (`data_kind` is the one place that tells them apart):

* FOLDER: an ImageNet-style tree `DIR/<class>/<file>`, enumerated like
  `fn.readers.file(file_root=DIR, file_filters=...)`;
* FILE_LIST: a DALI `file_list` text file (`path label` per line), read and written the way DALI 2.4 parses it;
* WEBDATASET: tar shards with DALI index files (`pipelines.webdataset`, written by `dali-has prepare
  --webdataset`): a folder whose top level holds `*.tar`, one `.tar` file, or a list of `.tar` paths.

The first two list as one result (`Dataset`: a root folder and `(relative path, label)` samples in reader order),
holding encoded images or, as `dali-has prepare --encoding npy` writes them, decoded pixels (`stores_pixels`).

Mirrors DALI 2.4 `dali/operators/reader/loader/filesystem.cc` and `file_label_loader.h`:
class folders are every sub-directory of the root (symlinks followed, hidden ones included, empty ones
still take a label; an empty hidden one, a tool's such as `.ipynb_checkpoints`, is refused), sorted bytewise
(`std::sort` on the names); labels are indices in that order; each class folder is listed one level deep
(regular files and symlinks), filtered case-insensitively with `fnmatch` by the filters (`IMAGE_FILTERS` unless
told otherwise), sorted bytewise. In a file list, each line is parsed from its end: trailing whitespace, a
decimal label, whitespace, then the name (which may contain spaces); empty lines are skipped; names are relative
to the list's folder unless absolute.
"""
from __future__ import annotations

import errno
import fnmatch
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from dali_has import validate
from pipelines import webdataset

FOLDER, FILE_LIST, WEBDATASET = "folder", "file_list", "webdataset"
# Written by `dali-has prepare` (`pipelines.prepare`) at the top of its output: the settings, the source's class
# names, and "complete": false until the run writing the output has finished.
PREPARE_MANIFEST = "prepare.json"
# A dataset argument: a path, or (WebDataset only) a list of shard paths.
DataArg = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]

# The default `file_filters` of `fn.readers.file` in DALI 2.4 (a test compares it with DALI's schema).
DALI_FILE_FILTERS = (
    "*.jpg", "*.jpeg", "*.png", "*.bmp", "*.tif", "*.tiff", "*.pnm", "*.ppm", "*.pgm", "*.pbm",
    "*.jp2", "*.webp", "*.flac", "*.ogg", "*.wav",
)
# Decoded pixels stored as NumPy .npy files (`dali-has prepare --encoding npy`): uint8 height x width x 3.
PIXELS_SUFFIX = ".npy"
# What this project reads from a folder tree: DALI's defaults without its audio patterns, so a stray .wav in a
# class folder is not a sample, and with decoded pixels (PIXELS_SUFFIX).
IMAGE_FILTERS = DALI_FILE_FILTERS[:-3] + ("*" + PIXELS_SUFFIX,)

# `path label` as DALI parses it: anything, then whitespace, then decimal digits, then optional whitespace.
_LIST_LINE = re.compile(r"(?P<name>.*\S)\s+(?P<label>[0-9]+)\s*", re.ASCII)  # ASCII: C isspace


@dataclass(frozen=True)
class Dataset:
    """Samples in DALI reader order: paths relative to `root` (absolute ones stay absolute), labels."""

    root: Path
    samples: tuple[tuple[str, int], ...]
    # Class folder names (index = label) when listed from a tree; None for a file list.
    classes: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def paths(self) -> list[Path]:
        return [self.root / name for name, _ in self.samples]


def _bytewise(name: str) -> bytes:
    # DALI sorts std::string names by their bytes; fsencode gives back the bytes the OS returned.
    return os.fsencode(name)


def _accepted(name: str, file_filters: tuple[str, ...]) -> bool:
    # fnmatch with FNM_CASEFOLD (DALI's default case_sensitive_filter=False); `*` matches a leading dot.
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in file_filters)


def stores_pixels(dataset: Dataset) -> bool:
    """Whether the dataset's samples are decoded pixels (PIXELS_SUFFIX files) rather than encoded images; a
    pipeline decodes one or the other, so a mix is an error naming one file of each."""
    pixels = [name for name, _ in dataset.samples if name.lower().endswith(PIXELS_SUFFIX)]
    if not pixels:
        return False
    if len(pixels) < len(dataset):
        encoded = next(name for name, _ in dataset.samples if not name.lower().endswith(PIXELS_SUFFIX))
        raise ValueError(f"{str(dataset.root)!r} mixes decoded pixels ({pixels[0]!r}) with encoded images "
                         f"({encoded!r}): a pipeline reads one kind; keep each kind in its own dataset")
    return True


def list_folder(root: str | os.PathLike, file_filters: tuple[str, ...] = IMAGE_FILTERS) -> Dataset:
    """List `root/<class>/<file>` as `fn.readers.file(file_root=root, file_filters=file_filters)` does.

    Labels are indices of the sorted class folder names.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {str(root)!r} does not exist or is not a folder")
    classes = []
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_symlink() and not os.path.exists(entry.path):
                # DALI stats every entry of the root and fails on one it cannot access.
                raise FileNotFoundError(f"broken symlink {entry.path!r} in dataset folder: DALI's reader fails on it")
            if entry.is_dir():
                classes.append(entry.name)
    if not classes:
        raise ValueError(
            f"dataset folder {str(root)!r} has no class folders: expected the layout DIR/<class>/<image>, "
            "with one sub-folder per class"
        )
    classes.sort(key=_bytewise)
    samples = []
    for label, name in enumerate(classes):
        with os.scandir(root / name) as entries:
            # DALI keeps regular files and symlinks (readdir d_type REG/LNK), never sub-folders.
            files = [e.name for e in entries
                     if (e.is_symlink() or e.is_file(follow_symlinks=False)) and _accepted(e.name, file_filters)]
        files.sort(key=_bytewise)
        if not files and name.startswith("."):
            # A tool's folder (Jupyter's .ipynb_checkpoints): as class 0 it shifted every label by one, silently.
            raise ValueError(f"dataset folder {str(root)!r}: the hidden folder {name!r} holds no image, and DALI would "
                             f"take it as class {label}, shifting the labels of the classes after it; move it out "
                             "of the data folder (an empty class folder that is not hidden stays a class)")
        samples.extend((f"{name}/{f}", label) for f in files)
    if not samples:
        shards = [name for name in classes if any(_is_shard_name(f) for f in os.listdir(root / name))]
        hint = f"; {shards[0]!r} holds .tar shards: give that folder itself" if shards else ""
        raise ValueError(
            f"dataset folder {str(root)!r} has {len(classes)} class folder(s) but no image files in them "
            f"(files matching {', '.join(file_filters)}, any letter case){hint}"
        )
    return Dataset(root=root, samples=tuple(samples), classes=tuple(classes))


def read_file_list(list_path: str | os.PathLike) -> Dataset:
    """Read a DALI `file_list`; checks every line's format and that every listed file exists."""
    list_path = Path(list_path)
    if not list_path.is_file():
        raise FileNotFoundError(f"file list {str(list_path)!r} does not exist or is not a file")
    with open(list_path, "rb") as head:
        if b"\0" in head.read(4096):  # every image format DALI reads has NUL bytes in its header; text has none
            raise ValueError(f"{str(list_path)!r} is a binary file (an image?), not a file list: give a folder "
                             "DIR/<class>/<image> or a text file of 'path label' lines")
    samples = []
    # utf-8-sig: a byte-order mark (Windows editors write one) is not part of the first file name
    with open(list_path, encoding="utf-8-sig", errors="surrogateescape", newline="\n") as lines:
        for number, line in enumerate(lines, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue  # DALI skips blank lines
            if "\r" in line.rstrip():  # no file name holds one (`unlistable`); a CRLF line end is fine
                raise ValueError(f"{str(list_path)!r} line {number}: a carriage return inside the line; the file "
                                 "has old Mac (CR-only) line ends: convert them to LF or CRLF")
            match = _LIST_LINE.fullmatch(line)
            if match is None:
                raise ValueError(
                    f"{str(list_path)!r} line {number}: expected 'path label' (a file name, whitespace, "
                    f"a non-negative integer label), got {line!r}"
                )
            label = int(match["label"])
            if label > validate.MAX_LABEL:
                raise ValueError(f"{str(list_path)!r} line {number}: label {label} is too large; DALI keeps labels "
                                 f"as 32-bit integers (0..{validate.MAX_LABEL}), so renumber the classes from 0")
            samples.append((match["name"], label))
    if not samples:
        raise ValueError(f"file list {str(list_path)!r} lists no files")
    root = list_path.parent
    for number, (name, _) in enumerate(samples, start=1):
        try:
            found = (root / name).exists()  # what exists but is not an image file is refused by `file_check`
        except OSError as error:  # a name longer than the system takes: a bare "File name too long" before
            if error.errno != errno.ENAMETOOLONG:
                raise
            found, why = False, f" ({error.strerror})"
        else:
            why = ""
        if not found:  # the entry before the name: a long name is cut in the middle of the CLI's line
            raise FileNotFoundError(
                f"{str(list_path)!r} entry {number}: listed file {name!r} not found at {str(root / name)!r}"
                f"{why}; paths in a file list are relative to the list's folder"
            )
    return Dataset(root=root, samples=tuple(samples))


def checked_path(value: str | os.PathLike, name: str = "data") -> Path:
    """`value` as a Path, never from an empty string: that would be the current folder (an unset shell variable,
    an empty config field), and a class tree there would be trained on silently."""
    if not os.fspath(value).strip():
        raise ValueError(f"{name}={os.fspath(value)!r} is an empty path; give the "
                         + ("data folder, file list or shards" if name.endswith("data") else "path"))
    return Path(value)


def data_kind(data: DataArg) -> str:
    """FOLDER, FILE_LIST or WEBDATASET: a list of paths or a `.tar` file are shards; another file is a file list;
    a folder is a shard folder when its top level holds `.tar` files, else a class tree (both is an error).
    A `dali-has prepare` output still being written (or left by an interrupted run) is refused (`preparation`)."""
    if isinstance(data, (list, tuple)):
        preparation(data)
        return WEBDATASET
    path = checked_path(data)
    if not path.exists():
        raise FileNotFoundError(f"dataset {str(path)!r} does not exist: expected a folder DIR/<class>/<image>, a "
                                "file list or WebDataset shards")
    manifest = preparation(path)
    if path.is_file():
        if path.suffix == webdataset.INDEX_SUFFIX:  # it was read as a file list
            raise ValueError(f"{str(path)!r} is a WebDataset index: give its shard, the .tar, or their folder")
        return WEBDATASET if _is_shard_name(path.name) else FILE_LIST
    if not path.is_dir():
        raise ValueError(f"dataset {str(path)!r} is neither a file nor a folder (a device, a pipe?): expected a "
                         "folder DIR/<class>/<image>, a file list or WebDataset shards")
    with os.scandir(path) as entries:
        entries = list(entries)
    if not any(_is_shard_name(e.name) and not e.is_dir() for e in entries):  # a broken link too: list_shards says
        compressed = sorted(e.name for e in entries if e.name.lower().endswith((".tar.gz", ".tgz", ".tar.zst")))
        if compressed and not any(e.is_dir() for e in entries):  # else "no class folders"
            raise ValueError(f"{str(path)!r} holds compressed tar shards ({compressed[0]}, ...): DALI's WebDataset "
                             "reader reads plain tars: decompress them (`gunzip`, `zstd -d`) and index each with "
                             "DALI's `wds2idx`")
        if manifest is not None:
            _check_prepared_classes(path, manifest, sorted((e.name for e in entries if e.is_dir()), key=_bytewise))
        return FOLDER
    folders = sorted(e.name for e in entries if e.is_dir())
    if folders:
        raise ValueError(f"{str(path)!r} holds both .tar shards and sub-folders ({', '.join(folders[:3])}): is it "
                         "a WebDataset or a class tree DIR/<class>/<image>? Keep the shards in a folder of their own")
    return WEBDATASET


def _check_prepared_classes(folder: Path, manifest: dict, folders: list[str]) -> None:
    """A `dali-has prepare` output read as a class tree must hold the classes it was prepared with: one prepared
    from a file list keeps the list's paths (its folders are no classes), and a class folder removed from the
    source since stays in it, shifting the labels of the classes after it."""
    if "classes" not in manifest:  # written before the manifest recorded them
        return
    outputs = manifest.get("outputs")
    listed = folder / outputs["file_list"] if isinstance(outputs, dict) and "file_list" in outputs else folder
    if manifest["classes"] is None:
        raise ValueError(f"{str(folder)!r} was prepared from a file list: its folders are not classes and its "
                         f"labels are in {str(listed)!r}; give that")
    if folders != manifest["classes"]:
        extra = sorted(set(folders) - set(manifest["classes"]))
        missing = sorted(set(manifest["classes"]) - set(folders))
        raise ValueError(f"{str(folder)!r} holds other class folders than it was prepared with ({PREPARE_MANIFEST}): "
                         + "; ".join(filter(None, (extra and f"not a class there: {', '.join(extra[:3])}",
                                                   missing and f"missing: {', '.join(missing[:3])}")))
                         + f", so its labels would differ from the source's. Run the same `dali-has prepare` command "
                         f"with --delete-stale, or read {str(listed)!r}")


def _is_shard_name(name: str) -> bool:
    return name.lower().endswith(webdataset.SHARD_SUFFIX)  # any case: `list_shards` asks to rename `.TAR`


def list_shards(data: DataArg) -> tuple[Path, ...]:
    """The WebDataset shards of `data` in reading order (a folder's `*.tar` sorted by name), each with its index.

    Refused, so that no sample is skipped or read twice without a word: a name ending `.TAR` (any other case), a
    shard that is no file (a broken link), an index in the folder without its shard, a shard listed twice (also
    through another path or a link)."""
    if isinstance(data, (list, tuple)):
        shards = tuple(Path(p) for p in data)
    elif Path(data).is_dir():
        shards = _folder_shards(Path(data))
    else:
        shards = (Path(data),)
    if not shards:
        raise ValueError(f"no .tar shards in {data!r}")
    seen: dict[tuple[int, int], Path] = {}
    for shard in shards:
        _check_shard_path(shard)
        info = os.stat(shard)
        same = seen.setdefault((info.st_dev, info.st_ino), shard)  # also through `..`, a symbolic or hard link
        if same is not shard:
            raise ValueError(f"WebDataset shard {str(shard)!r} is {str(same)!r}, listed before: its samples would be "
                             "read twice per epoch; list each shard once")
    return shards


def _folder_shards(folder: Path) -> tuple[Path, ...]:
    """A folder's shards by name, after refusing an index whose shard is missing (or misnamed)."""
    with os.scandir(folder) as entries:
        names = sorted(e.name for e in entries)
    lowered = {name.lower() for name in names}
    for name in names:
        stem, _, suffix = name.rpartition(".")
        if "." + suffix != webdataset.INDEX_SUFFIX or (stem + webdataset.SHARD_SUFFIX).lower() in lowered:
            continue
        if _is_shard_name(stem) and stem.lower() in lowered:  # `shard.tar.idx`, as some tools name it
            raise ValueError(f"index {str(folder / name)!r}: DALI and this project look for "
                             f"{stem[:-len(webdataset.SHARD_SUFFIX)] + webdataset.INDEX_SUFFIX!r}; rename it")
        raise FileNotFoundError(f"index {str(folder / name)!r} has no shard {stem + webdataset.SHARD_SUFFIX!r} next "
                                "to it: a shard is missing (a copy cut short?); copy it, or delete the index to "
                                "train without it")
    return tuple(folder / name for name in names if _is_shard_name(name))


def _check_shard_path(shard: Path) -> None:
    """A shard named `*.tar`, an existing file, beside its index `*.idx` (both lower case)."""
    index = webdataset.index_path(shard)
    if _is_shard_name(shard.name) and shard.suffix != webdataset.SHARD_SUFFIX:
        raise ValueError(f"WebDataset shard {str(shard)!r}: rename it `*{webdataset.SHARD_SUFFIX}` (lower case, as "
                         f"DALI's tools and this project expect), its index `*{webdataset.INDEX_SUFFIX}`")
    if shard.suffix != webdataset.SHARD_SUFFIX or not shard.is_file():
        raise FileNotFoundError(f"WebDataset shard {str(shard)!r} is not an existing .tar file")
    if index.is_file():
        return
    if os.path.lexists(index):  # a FIFO, device or broken link there was told to "rename it" to its own name
        raise ValueError(f"shard {str(shard)!r}: its index {str(index)!r} is not a regular file (a FIFO, a device, "
                         f"a broken link?): remove it, then write one with DALI's `wds2idx {shard} {index}`")
    other_case = [name for name in os.listdir(shard.parent) if name.lower() == index.name.lower()]
    if other_case:
        raise ValueError(f"shard {str(shard)!r} has its index as {other_case[0]!r}: rename it {index.name!r} (DALI "
                         "and this project look for that)")
    raise FileNotFoundError(f"shard {str(shard)!r} has no index {str(index)!r}: write one with DALI's `wds2idx "
                            f"{shard} {index}`, or prepare the data with `dali-has prepare --webdataset`")


def preparation(data: DataArg) -> dict | None:
    """The manifest of the `dali-has prepare` output `data` is (a folder holding PREPARE_MANIFEST) or lies in (a
    file list or shards in that folder), or None (also for shards of several outputs, unless all hold the same
    classes). Raises ValueError for an output a run has not finished (a run writing it now, or one interrupted:
    part of the data), one holding no image, and shards of outputs whose labels mean different classes."""
    paths = [Path(p) for p in data] if isinstance(data, (list, tuple)) else [Path(data)]
    folders = sorted({path if path.is_dir() else path.parent for path in paths})
    manifests = {}
    for folder in folders:
        path = folder / PREPARE_MANIFEST
        try:
            # a regular file only: reading a FIFO of that name would wait for ever
            manifest = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        except (OSError, ValueError, RecursionError):  # a file of that name that is not ours
            manifest = None
        if not isinstance(manifest, dict):
            continue
        if "complete" in manifest and manifest["complete"] is not True:
            raise ValueError(f"{str(folder)!r} is an unfinished `dali-has prepare` output ({PREPARE_MANIFEST} says "
                             f"\"complete\": {json.dumps(manifest['complete'])}): a run is writing it, or one was "
                             "interrupted and left part of the data. Run the same `dali-has prepare` command again "
                             "to finish it, then use it")
        if manifest.get("prepared") == 0:
            raise ValueError(f"{str(folder)!r} holds no image: `dali-has prepare` left out all "
                             f"{manifest.get('samples')} files of {manifest.get('source')!r} (each with its reason "
                             f"in {path})")
        manifests[folder] = manifest
    found = list(manifests.items())
    for folder, manifest in found[1:]:
        if manifest.get("classes") != found[0][1].get("classes"):
            raise ValueError(f"the shards come from `dali-has prepare` outputs of other classes, {str(found[0][0])!r} "
                             f"and {str(folder)!r} ({PREPARE_MANIFEST}): a label would mean one class in one and "
                             "another in the other; prepare one output from one source holding every class")
    return manifests[folders[0]] if len(manifests) == len(folders) else None


def load_dataset(data: str | os.PathLike) -> Dataset:
    """A folder tree or a file list, whichever `data` is (shards hold no files to list: an error)."""
    kind = data_kind(data)
    if kind == WEBDATASET:
        raise ValueError(f"{data!r} is a WebDataset (tar shards); this needs the image files: use the folder or "
                         "file list the shards were prepared from")
    return list_folder(data) if kind == FOLDER else read_file_list(data)


def dataset_labels(data: DataArg) -> list[int]:
    """The label of every sample, for any kind of data."""
    if data_kind(data) != WEBDATASET:
        return [label for _, label in load_dataset(data).samples]
    return [label for shard in list_shards(data)
            for label in webdataset.read_labels(shard, webdataset.read_index(shard))]


def class_names(data: DataArg) -> list[str] | None:
    """The class names in label order: a folder tree's class folders, or those `dali-has prepare` recorded for the
    file list or shards it wrote from one (its manifest); None for other file lists and shards (labels only)."""
    if data_kind(data) == FOLDER:
        return list(list_folder(data).classes)
    manifest = preparation(data)
    names = manifest.get("classes") if manifest else None
    if not (isinstance(names, list) and names and all(isinstance(name, str) for name in names)):
        return None
    largest = max(dataset_labels(data))
    if largest >= len(names):
        raise ValueError(f"{data!r} holds label {largest}, but the `dali-has prepare` output it lies in names "
                         f"{len(names)} classes ({PREPARE_MANIFEST}): it was changed after preparing; prepare it "
                         "again from the source")
    return names


def num_classes(data: DataArg) -> int:
    """Classes of a training set: its class names (`class_names`; empty class folders count), else the largest
    label plus one."""
    names = class_names(data)
    return len(names) if names is not None else max(dataset_labels(data)) + 1


def write_file_list(list_path: str | os.PathLike, samples: Iterable[tuple[str | os.PathLike, int]]) -> int:
    """Write `(file, label)` pairs as a DALI `file_list` at `list_path` (`file_list_text`); returns the number of
    lines."""
    text = file_list_text(list_path, samples)
    list_path = Path(list_path)
    list_path.parent.mkdir(parents=True, exist_ok=True)
    with open(list_path, "w", encoding="utf-8", newline="\n") as out:
        out.write(text)
    return text.count("\n")


def file_list_text(list_path: str | os.PathLike, samples: Iterable[tuple[str | os.PathLike, int]]) -> str:
    """The text of a DALI `file_list` at `list_path` naming `(file, label)` pairs, one line each.

    Files inside the list's folder are written relative to it (DALI resolves them against that folder,
    so list and data move together); files elsewhere are written as absolute paths, which DALI takes
    as they are (a `..` path would resolve differently when the list's folder is a symlink). A name a list
    cannot hold (`unlistable`) or a label DALI cannot take is a ValueError.
    """
    if reason := unlistable_folder(list_path):
        raise ValueError(reason)
    lines = []
    for file, label in samples:
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label <= validate.MAX_LABEL:
            raise ValueError(f"label {label!r} of {str(file)!r}: DALI file lists need an integer in "
                             f"0..{validate.MAX_LABEL}")
        # What the line holds (a folder above the list may hold a newline); "" would become the current folder.
        name = list_entry(list_path, file) if os.fspath(file) else ""
        if reason := unlistable(name):
            raise ValueError(f"file name {name!r} cannot be written to a DALI file list: {reason}")
        lines.append(f"{name} {label}\n")
    return "".join(lines)


def list_entry(list_path: str | os.PathLike, file: str | os.PathLike) -> str:
    """The name under which a file list at `list_path` names `file` (see `write_file_list`)."""
    folder = Path(os.path.abspath(Path(list_path).parent))
    absolute = Path(os.path.abspath(file))
    return os.fspath(absolute.relative_to(folder)) if absolute.is_relative_to(folder) else os.fspath(absolute)


def unlistable(name: str) -> str | None:
    """Why a DALI file list cannot name `name` (one line per entry, the name ends at its last non-space
    character, UTF-8 as DALI's reader takes names), or None when it can."""
    if not name:
        return "an empty name"
    if "\n" in name or "\r" in name:
        return "it contains a newline or carriage return, and a file list holds one file per line"
    if name != name.rstrip():
        return "it ends in white space (a trailing space, tab, ...), which DALI strips from a file list line"
    if not is_utf8(name):
        return "it is not UTF-8, and DALI's file reader takes UTF-8 names only"
    return None


def unlistable_folder(list_path: str | os.PathLike) -> str | None:
    """Why DALI cannot read a file list at `list_path` whatever it names (its folder, DALI's file_root, is not
    UTF-8: "Unsupported argument type" inside DALI), or None."""
    folder = os.path.dirname(os.path.abspath(list_path))
    if not is_utf8(folder):
        return (f"the folder {folder!r} is not UTF-8, and DALI's file reader takes UTF-8 paths only: choose a "
                "folder whose path is")
    return None


def is_utf8(name: str) -> bool:
    """Whether a file name is UTF-8 (Python holds a name's other bytes as lone surrogates, which do not encode)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
