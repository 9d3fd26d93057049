"""`pipelines.jpeg_header`: frame facts and completeness from a JPEG's marker segments."""
import mmap

from pipelines.jpeg_header import parse_jpeg_header
from tests.pipelines.bad_images import image, jpeg_bytes, patch_jpeg_size


def test_jpeg_header():
    header = parse_jpeg_header(jpeg_bytes(image(size=(40, 30))))
    assert (header.width, header.height, header.components, header.progressive, header.has_eoi) == (
        40, 30, 3, False, True)
    assert parse_jpeg_header(jpeg_bytes(image("L"), progressive=True)).components == 1
    assert parse_jpeg_header(jpeg_bytes(progressive=True)).progressive
    data = jpeg_bytes()
    assert not parse_jpeg_header(data[:-2]).has_eoi
    assert not parse_jpeg_header(data[:300]).has_eoi  # cut inside the headers, before the first scan
    assert parse_jpeg_header(data + b"\0" * 10).has_eoi  # padding after EOI is fine
    header = parse_jpeg_header(patch_jpeg_size(data, 0, 65535))
    assert (header.height, header.width) == (0, 65535)
    assert parse_jpeg_header(b"\x89PNG\r\n") is None
    assert parse_jpeg_header(b"\xff\xd8garbage") is None


def test_a_mapped_file_reads_as_its_bytes(tmp_path):
    # The listing check maps the rare JPEG that does not end in its marker instead of reading it into memory.
    for data in (jpeg_bytes(), jpeg_bytes()[:-2], jpeg_bytes(progressive=True) + b"\0" * 10):
        path = tmp_path / "x.jpg"
        path.write_bytes(data)
        with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, prot=mmap.PROT_READ) as mapped:
            assert parse_jpeg_header(mapped) == parse_jpeg_header(data)
