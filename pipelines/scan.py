"""`dali-has scan`: find the files of a dataset that our pipeline cannot use, and say why.

"Usable" means the loader accepts the file and DALI's CPU image decoder (`fn.decoders.image`, the one the
CPU training pipeline runs) decodes it. First every file goes through the loader's own listing check
(`pipelines.file_check`, cached): regular file, bounded size, a signature and a header DALI parses, sane
dimensions. Files it refuses are errors and never reach DALI, and for those PIL names the format if it can.
The accepted files are read (at most `MAX_FILE_BYTES` each) and probed in Python threads (JPEG frame header
parsed by hand, PIL for format/mode/EXIF from the header only), then decoded by DALI in batches; a failing
batch is bisected down to the culprits (`pipelines.bad_files.DecodeCheck`), because a DALI error invalidates
the whole pipeline and does not always name the sample. Decoding files of unknown formats alone, as earlier
versions did to dodge DALI 2.4's crash on them in large batches, is no longer needed: such files never pass
the listing check, and files whose headers parse make DALI raise, not crash.

Observed with DALI 2.4 on CPU: zero-byte, text, GIF, truncated JPEGs (no end-of-image marker) and JPEGs
whose header says 0 or more than 65500 pixels fail to decode (the listing check refuses all of them now);
PNG named .jpg, CMYK (converted to RGB, equal to PIL's conversion), grayscale (replicated to RGB),
progressive JPEGs and EXIF-rotated images (turned upright, `pipelines.orientation`) decode. A JPEG cut mid-scan that
still ends in an end-of-image marker decodes, with only a libjpeg warning on stderr, in DALI as in PIL: it
is not caught.
"""
from __future__ import annotations

import io
import os
import warnings
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from dali_has import validate
from pipelines.bad_files import DecodeCheck
from pipelines.file_check import Verdict, check_dataset, read_image_file
from pipelines.files import PIXELS_SUFFIX, Dataset, load_dataset, stores_pixels
from pipelines.jpeg_header import JpegHeader, parse_jpeg_header
from pipelines.orientation import exif_orientation
from pipelines.settings import PASS_BATCH_SIZE, PipelineOptions, default_num_threads

ERROR, WARNING, NOTE = "error", "warning", "note"

@dataclass(frozen=True)
class Problem:
    path: str  # as listed in the dataset, relative to its root
    severity: str  # ERROR (unusable), WARNING (usable, worth fixing) or NOTE (usable, for information)
    kind: str
    message: str  # what is wrong
    advice: str  # what to do


@dataclass(frozen=True)
class ScanReport:
    dataset: Dataset
    problems: tuple[Problem, ...]

    @property
    def unusable(self) -> frozenset[str]:
        return frozenset(p.path for p in self.problems if p.severity == ERROR)

    def usable_samples(self) -> list[tuple[Path, int]]:
        bad = self.unusable
        return [(self.dataset.root / name, label) for name, label in self.dataset.samples if name not in bad]

    def summary(self) -> str:
        def counts(severity):
            kinds = Counter(p.kind for p in self.problems if p.severity == severity)
            return ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))

        total, bad = len(self.dataset), len(self.unusable)
        line = f"{total} files, {total - bad} usable, {bad} unusable"
        for severity, label in ((ERROR, "errors"), (WARNING, "warnings"), (NOTE, "notes")):
            if detail := counts(severity):
                line += f"; {label}: {detail}"
        return line

    def to_dict(self) -> dict:
        return {
            "root": str(self.dataset.root),
            "files": len(self.dataset),
            "unusable": len(self.unusable),
            "summary": self.summary(),
            "problems": [asdict(p) for p in self.problems],
        }


@dataclass
class _Probe:
    """Facts about one file the listing check accepted, gathered without decoding its pixels."""

    data: bytes = b""
    read_error: str | None = None
    jpeg: JpegHeader | None = None
    format: str | None = None  # PIL's name, None if PIL does not recognise it
    mode: str | None = None
    orientation: int | None = None


def _probe(path: Path) -> _Probe:
    try:
        data = read_image_file(path)
    except OSError as error:
        return _Probe(read_error=error.strerror or str(error))
    probe = _Probe(data=data, jpeg=parse_jpeg_header(data))
    probe.format, probe.mode, probe.orientation = _pil_facts(io.BytesIO(data))
    return probe


def _pil_facts(file) -> tuple[str | None, str | None, int | None]:
    """PIL's format name, mode and EXIF orientation from the header; Nones where PIL cannot tell."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                return image.format, image.mode, exif_orientation(image)
    except Exception:  # PIL only explains; whether a file is usable is for the check and DALI's decode to say
        return None, None, None


def _named_as(name: str, fmt: str | None) -> str:
    """' named .jpg' when the extension promises another format than the content has."""
    suffix = Path(name).suffix
    expected = Image.registered_extensions().get(suffix.lower())
    actual = "JPEG" if fmt == "MPO" else fmt
    return f" named {suffix}" if actual and expected and actual != expected else ""


_REPLACE = "Replace it with a good copy or remove it (`--write-list` writes a list without it)"
_ADVICE = {"unreadable": "Fix its permissions or remove it",
           "missing": "Restore it (or the file the link points to) or remove it",
           "not-a-file": "Remove it: only regular files (or links to them) can be images"}


def _refused(name: str, path: Path, verdict: Verdict) -> Problem:
    """The problem of a file the listing check refused, with PIL's name for its format where it has one."""
    kind, message = verdict.kind, verdict.detail
    if kind == "not-an-image":
        fmt = _pil_facts(path)[0]
        if fmt is not None:
            return Problem(name, ERROR, "unsupported-format",
                           f"is a {fmt} file{_named_as(name, fmt)}: DALI's decoder does not read {fmt}",
                           "Convert it to JPEG, e.g. PIL `Image.open(f).convert('RGB').save(new, 'JPEG')`, "
                           "or remove it")
    if kind == "bad-header":
        try:
            with open(path, "rb") as file:
                jpeg = parse_jpeg_header(file.read(1 << 20))
        except OSError:
            jpeg = None
        if jpeg is not None and not jpeg.has_eoi:
            kind, message = "truncated", "is a truncated JPEG: it ends inside its headers"
    return Problem(name, ERROR, kind, message, _ADVICE.get(kind, _REPLACE))


def _judge(name: str, probe: _Probe, decode_error: str | None) -> list[Problem]:
    """The problems of an accepted file, given the probe and DALI's decode result (None: decoded)."""
    def problem(severity, kind, message, advice=_REPLACE):
        return Problem(name, severity, kind, message, advice)

    if probe.read_error is not None:
        return [problem(ERROR, "unreadable", f"cannot be read: {probe.read_error}", _ADVICE["unreadable"])]
    if decode_error is not None:
        return [problem(ERROR, "undecodable", f"DALI cannot decode it: {decode_error}")]

    found = []
    if named := _named_as(name, probe.format):
        found.append(problem(
            WARNING, "wrong-extension", f"is a {probe.format} file{named}",
            "Usable: DALI detects the format from the content; but only JPEG decodes on the GPU, so rename "
            "it or convert it to JPEG",
        ))
    if probe.jpeg is not None and probe.mode == "CMYK":
        found.append(problem(
            WARNING, "cmyk", "is a CMYK JPEG: DALI's CPU decoder converts it to RGB (as PIL does)",
            "Usable; convert it to an RGB JPEG so every decoder and tool sees the same colours",
        ))
    if probe.jpeg is not None and probe.jpeg.components == 1:
        found.append(problem(NOTE, "grayscale", "is a grayscale JPEG", "Usable: the decoder replicates it to RGB"))
    if probe.jpeg is not None and probe.jpeg.progressive:
        found.append(problem(
            NOTE, "progressive", "is a progressive JPEG",
            "Usable: decodes on CPU; the GPU hardware JPEG decoder takes baseline JPEGs only and falls back "
            "to the slower CUDA decoder for these",
        ))
    if probe.orientation not in (None, 1):
        found.append(problem(
            NOTE, "exif-rotated", f"has EXIF orientation {probe.orientation}",
            "Usable: DALI rotates/flips it upright when decoding, and `dali-has eval` turns boxes drawn on the "
            "stored pixels with it",
        ))
    return found


def scan_dataset(data: str | os.PathLike | Dataset, *, batch_size: int = PASS_BATCH_SIZE,
                 num_threads: int | None = None, progress: bool = True) -> ScanReport:
    """Check, probe and DALI-decode every file of a folder tree or file list; problems in dataset order."""
    batch_size = validate.positive_int("batch_size", batch_size)
    num_threads = validate.positive_int("num_threads", default_num_threads() if num_threads is None else num_threads)
    dataset = data if isinstance(data, Dataset) else load_dataset(data)
    if stores_pixels(dataset):
        raise ValueError(f"{str(dataset.root)!r} holds decoded pixels ({PIXELS_SUFFIX} files): scan checks encoded "
                         "images; the listing check every loader runs already checks each pixel file whole "
                         "(format, type, shape and size)")
    verdicts = dict(check_dataset(dataset, dataset.root if isinstance(data, Dataset) else data,
                                  progress=progress).refused)
    decoder = DecodeCheck(PipelineOptions(batch_size=batch_size, num_threads=num_threads), batch_size=batch_size)
    problems: list[Problem] = []

    def finish(batch):
        probes = [(name, future.result()) for name, future in batch if future is not None]
        readable = [i for i, (_, probe) in enumerate(probes) if probe.read_error is None]
        errors = dict(zip(readable, decoder.failures([probes[i][1].data for i in readable])))
        judged = {name: _judge(name, probe, errors.get(i)) for i, (name, probe) in enumerate(probes)}
        for name, future in batch:
            problems.extend(judged[name] if future is not None else
                            [_refused(name, dataset.root / name, verdicts[name])])
        bar.update(len(batch))

    # Accepted files are read and probed in threads one batch ahead of the batch DALI is decoding.
    with ThreadPoolExecutor(num_threads) as pool, tqdm(total=len(dataset), unit="file", desc="scan",
                                                         disable=not progress) as bar:
        pending = deque()
        for start in range(0, len(dataset), batch_size):
            names = [name for name, _ in dataset.samples[start:start + batch_size]]
            pending.append([(name, None if name in verdicts else pool.submit(_probe, dataset.root / name))
                            for name in names])
            if len(pending) > 1:
                finish(pending.popleft())
        while pending:
            finish(pending.popleft())
    return ScanReport(dataset=dataset, problems=tuple(problems))
