"""`dali-has scan`: find the files of a dataset that our pipeline cannot use, and say why.

"Usable" means DALI's CPU image decoder (`fn.decoders.image`, the one the CPU training pipeline runs)
decodes the file. Each file is first probed cheaply in Python threads (read, JPEG frame header parsed
by hand, PIL for format/mode/EXIF from the header only); files with absurd header dimensions are
refused without decoding (a decompression bomb would allocate gigabytes). Everything else is decoded
by DALI in batches; a batch that fails is decoded again file by file to name the culprits, because a
DALI error invalidates the whole pipeline and does not always name the sample. Files of no format DALI
knows are always decoded alone: in a batch of 32 or more, DALI 2.4 was seen to crash (SIGSEGV) on them.

Observed with DALI 2.4 on CPU: zero-byte, text, GIF, truncated JPEGs (no end-of-image marker) and
JPEGs whose header says 0 or more than 65500 pixels fail to decode; PNG named .jpg, CMYK (converted to
RGB, equal to PIL's conversion), grayscale (replicated to RGB), progressive and EXIF-rotated JPEGs
(rotated, `adjust_orientation=True`) decode. A JPEG cut mid-scan that still ends in an end-of-image
marker decodes, with only a libjpeg warning on stderr, in DALI as in PIL: it is not caught.
"""
from __future__ import annotations

import io
import os
import warnings
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from dali_has import validate
from pipelines.files import Dataset, load_dataset
from pipelines.settings import default_num_threads

ERROR, WARNING, NOTE = "error", "warning", "note"

# DALI's decoder refuses longer sides ("Maximum supported image dimension is 65500 pixels").
MAX_SIDE = 65500
# PIL's decompression-bomb limit (2 * Image.MAX_IMAGE_PIXELS at its default): more is refused undecoded.
MAX_PIXELS = 178_956_970
# Formats `fn.decoders.image` lists as supported, by PIL's names (PPM covers PNM/PGM/PBM; MPO is a JPEG).
DALI_FORMATS = frozenset({"JPEG", "MPO", "JPEG2000", "TIFF", "PNG", "BMP", "PPM", "WEBP"})

# JPEG markers: SOF0-SOF15 except DHT (C4), JPG (C8), DAC (CC); markers that carry no length field.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD8)})
_SOS, _EOI = 0xDA, b"\xff\xd9"


@dataclass(frozen=True)
class JpegHeader:
    height: int
    width: int
    components: int
    progressive: bool
    has_eoi: bool  # an end-of-image marker follows the first scan (False: the file was cut short)


def parse_jpeg_header(data: bytes) -> JpegHeader | None:
    """Frame header of a JPEG and whether it is complete; None if `data` is not a parsable JPEG.

    Hand-written rather than PIL: PIL refuses 0-pixel and bomb-sized headers without saying the size,
    and this reads only the marker segments before the first scan, never the image data.
    """
    if not data.startswith(b"\xff\xd8"):
        return None
    frame = None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in _NO_LENGTH:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in _SOF and i + 10 <= len(data):
            height, width = int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
            frame = (height, width, data[i + 9], marker in _PROGRESSIVE_SOF)
        if marker == _SOS:
            # Entropy-coded data escapes 0xFF as FF00, so a later FFD9 can only be the EOI marker;
            # searched from the end, where a complete file has it.
            return None if frame is None else JpegHeader(*frame, has_eoi=data.rfind(_EOI, i + 2 + length) != -1)
        i += 2 + length
    return None if frame is None else JpegHeader(*frame, has_eoi=False)  # cut before the first scan


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
    """Facts about one file, gathered without decoding its pixels."""

    data: bytes = b""
    read_error: str | None = None
    jpeg: JpegHeader | None = None
    format: str | None = None  # PIL's name, None if PIL does not recognise it
    mode: str | None = None
    size: tuple[int, int] | None = None  # width, height
    orientation: int | None = None
    bomb: bool = False  # PIL refused it as a decompression bomb


def _probe(path: Path) -> _Probe:
    try:
        data = path.read_bytes()
    except OSError as error:
        return _Probe(read_error=error.strerror or str(error))
    probe = _Probe(data=data, jpeg=parse_jpeg_header(data))
    if probe.jpeg is not None:
        probe.size = (probe.jpeg.width, probe.jpeg.height)
        if _size_problem(probe.size):
            return probe  # PIL would refuse it without saying why
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                probe.format, probe.mode, probe.size = image.format, image.mode, image.size
                probe.orientation = image.getexif().get(0x0112)
    except Image.DecompressionBombError:
        probe.bomb = True
    except Exception:  # PIL only explains; whether the file is usable is DALI's decode to decide
        pass
    return probe


def _size_problem(size: tuple[int, int] | None) -> tuple[str, str] | None:
    """(kind, message) when header dimensions rule out decoding."""
    if size is None:
        return None
    width, height = size
    if width == 0 or height == 0:
        return "bad-dimensions", f"its header says {width}x{height} pixels: a zero dimension"
    if max(width, height) > MAX_SIDE:
        return "bad-dimensions", f"its header says {width}x{height} pixels: DALI decodes at most {MAX_SIDE} per side"
    if width * height > MAX_PIXELS:
        return "too-large", f"its header says {width}x{height} pixels, a decompression-bomb size (> {MAX_PIXELS})"
    return None


def _known_format(probe: _Probe) -> bool:
    return probe.jpeg is not None or probe.format in DALI_FORMATS


def _named_as(name: str, probe: _Probe) -> str:
    """' named .jpg' when the extension promises another format than the content has."""
    suffix = Path(name).suffix
    expected = Image.registered_extensions().get(suffix.lower())
    actual = "JPEG" if probe.format == "MPO" else probe.format
    return f" named {suffix}" if actual and expected and actual != expected else ""


_REPLACE = "Replace it with a good copy or remove it (`--write-list` writes a list without it)"


def _judge(name: str, probe: _Probe, decode_error: str | None) -> list[Problem]:
    """The problems of one file, given the probe and DALI's decode result (None: decoded, or not tried)."""
    def problem(severity, kind, message, advice=_REPLACE):
        return Problem(name, severity, kind, message, advice)

    if probe.read_error is not None:
        return [problem(ERROR, "unreadable", f"cannot be read: {probe.read_error}", "Fix its permissions or remove it")]
    if not probe.data:
        return [problem(ERROR, "empty", "is empty (0 bytes)")]
    if size_problem := _size_problem(probe.size):
        return [problem(ERROR, *size_problem)]
    if probe.bomb:
        return [problem(ERROR, "too-large", f"is a decompression-bomb size (over {MAX_PIXELS} pixels)")]
    if decode_error is not None:
        if probe.jpeg is not None and not probe.jpeg.has_eoi:
            return [problem(ERROR, "truncated", "is a truncated JPEG: its data ends before the end-of-image marker")]
        if probe.format is None:
            return [problem(ERROR, "not-an-image", f"is not an image file (it starts with {probe.data[:16]!r})")]
        if probe.format not in DALI_FORMATS:
            return [problem(
                ERROR, "unsupported-format",
                f"is a {probe.format} file{_named_as(name, probe)}: DALI's decoder does not read {probe.format}",
                "Convert it to JPEG, e.g. PIL `Image.open(f).convert('RGB').save(new, 'JPEG')`, or remove it",
            )]
        return [problem(ERROR, "undecodable", f"DALI cannot decode it: {decode_error}")]

    found = []
    if named := _named_as(name, probe):
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
    if probe.jpeg is not None and probe.orientation not in (None, 1):  # what DALI does checked for JPEG only
        found.append(problem(
            NOTE, "exif-rotated", f"has EXIF orientation {probe.orientation}",
            "Usable: DALI rotates/flips it upright when decoding; boxes drawn on the stored pixels will not match",
        ))
    return found


def _dali_reason(error: Exception) -> str:
    """The part of a DALI pipeline error that says what went wrong, without traceback and context."""
    text = str(error).split("encountered:")[-1]
    lines = [line.strip() for line in text.splitlines()]
    keep = [line for line in lines if line and not line.startswith(("C++ context", "Current pipeline object"))]
    return " ".join(keep) or str(error)


class _Decoder:
    """DALI's CPU image decoder over batches of encoded files; reports which ones it fails on."""

    def __init__(self, batch_size: int, num_threads: int):
        self._batch_size, self._num_threads = batch_size, num_threads
        self._pipe = None

    def _build(self):
        from nvidia.dali import fn, pipeline_def, types

        @pipeline_def(batch_size=self._batch_size, num_threads=self._num_threads, device_id=None,
                      prefetch_queue_depth=1)
        def decode():
            encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
            return fn.decoders.image(encoded, device="cpu", output_type=types.RGB).shape()  # pixels stay in DALI

        pipe = decode()
        pipe.build()
        return pipe

    def _run(self, blobs: list[bytes]) -> None:
        if self._pipe is None:
            self._pipe = self._build()
        try:
            self._pipe.feed_input("encoded", [np.frombuffer(blob, dtype=np.uint8) for blob in blobs])
            self._pipe.run()
        except RuntimeError:
            self._pipe = None  # DALI marks a pipeline invalid after an error: build a new one
            raise

    def failures(self, blobs: list[bytes]) -> list[str | None]:
        """DALI's error for each blob, None for those that decode."""
        if not blobs:
            return []
        try:
            self._run(blobs)
            return [None] * len(blobs)
        except RuntimeError as error:
            if len(blobs) == 1:
                return [_dali_reason(error)]
        return [self.failures([blob])[0] for blob in blobs]


def scan_dataset(data: str | os.PathLike | Dataset, *, batch_size: int = 64, num_threads: int | None = None,
                 progress: bool = True) -> ScanReport:
    """Probe and DALI-decode every file of a folder tree or file list; problems in dataset order."""
    batch_size = validate.positive_int("batch_size", batch_size)
    num_threads = validate.positive_int("num_threads", default_num_threads() if num_threads is None else num_threads)
    dataset = data if isinstance(data, Dataset) else load_dataset(data)
    decoder = _Decoder(batch_size, num_threads)
    problems: list[Problem] = []

    def finish(batch):
        probes = [(name, future.result()) for name, future in batch]
        # Files refused on their header alone (empty, absurd size) are not handed to the decoder.
        decodable = [i for i, (name, p) in enumerate(probes)
                     if all(q.severity != ERROR for q in _judge(name, p, None))]
        # DALI 2.4's CPU decoder can crash the process (SIGSEGV, observed) when a batch of 32 or more holds a
        # file of no format it knows; such files are decoded alone, where it raises an error instead.
        known = [i for i in decodable if _known_format(probes[i][1])]
        errors = dict(zip(known, decoder.failures([probes[i][1].data for i in known])))
        errors.update((i, decoder.failures([probes[i][1].data])[0]) for i in decodable if i not in errors)
        for i, (name, probe) in enumerate(probes):
            problems.extend(_judge(name, probe, errors.get(i)))
        bar.update(len(batch))

    # Files are read and probed in threads one batch ahead of the batch DALI is decoding.
    with ThreadPoolExecutor(num_threads) as pool, tqdm(total=len(dataset), unit="file", desc="scan",
                                                         disable=not progress) as bar:
        pending = deque()
        for start in range(0, len(dataset), batch_size):
            names = [name for name, _ in dataset.samples[start:start + batch_size]]
            pending.append([(name, pool.submit(_probe, dataset.root / name)) for name in names])
            if len(pending) > 1:
                finish(pending.popleft())
        while pending:
            finish(pending.popleft())
    return ScanReport(dataset=dataset, problems=tuple(problems))
