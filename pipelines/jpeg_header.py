"""A JPEG's frame header and whether the file is complete, read from its marker segments (no pixel is decoded).

Shared by the listing check (`pipelines.file_check`), which refuses JPEGs cut short before DALI's decoder stops
on them mid-epoch, and `dali-has scan` (`pipelines.scan`), which reports their size, channels and progressive
coding. Hand-written rather than PIL: PIL refuses 0-pixel and bomb-sized headers without saying the size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# Markers: SOF0-SOF15 except DHT (C4), JPG (C8), DAC (CC); markers that carry no length field.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD8)})
_SOS = 0xDA
EOI = b"\xff\xd9"  # end of image
_FILL_RUN = 1 << 16  # fill bytes looked at in one step


@dataclass(frozen=True)
class JpegHeader:
    height: int
    width: int
    components: int
    progressive: bool
    has_eoi: bool  # an end-of-image marker follows the first scan (False: the file was cut short)


def parse_jpeg_header(data) -> Optional[JpegHeader]:
    """Frame header of a JPEG (`data`: its bytes, or an object read like them) and whether it is complete; None if it is
    not a parsable JPEG. Walks the marker segments by their lengths up to the first scan, so markers inside
    them (an EXIF thumbnail's own end-of-image) are skipped, then looks for the end-of-image marker after it."""
    if data[:2] != b"\xff\xd8":
        return None
    frame = None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill bytes before a marker, skipped a run at a time (a file may hold millions)
            run = data[i + 1:i + 1 + _FILL_RUN]
            i += len(run) - len(run.lstrip(b"\xff"))
            continue
        if marker in _NO_LENGTH:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in _SOF and i + 10 <= len(data):
            height, width = int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
            frame = (height, width, data[i + 9], marker in _PROGRESSIVE_SOF)
        if marker == _SOS:
            # Entropy-coded data escapes 0xFF as FF00, so a later FFD9 can only be the end-of-image marker;
            # searched from the end, where a complete file has it (bytes after it, e.g. padding, are allowed).
            return None if frame is None else JpegHeader(*frame, has_eoi=data.rfind(EOI, i + 2 + length) != -1)
        i += 2 + length
    return None if frame is None else JpegHeader(*frame, has_eoi=False)  # cut before the first scan
