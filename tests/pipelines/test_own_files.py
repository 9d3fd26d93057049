"""Files written in a folder of one's own: a link in their place is refused, and one writer holds the lock."""
import pytest

from pipelines.own_files import open_own, sole_writer, temporary, written_whole


def test_a_link_in_the_place_of_a_file_is_refused_and_not_written_through(tmp_path):
    target = tmp_path / "outside.txt"
    target.write_bytes(b"keep me")
    (tmp_path / "link").symlink_to(target)
    for append in (False, True):
        with pytest.raises(ValueError, match="'.*link' is a link; .* follows no link there: remove it"):
            open_own(tmp_path / "link", append=append)
    assert target.read_bytes() == b"keep me"
    with open_own(tmp_path / "own") as file:
        file.write(b"mine")
    assert (tmp_path / "own").read_bytes() == b"mine"


def test_one_writer_holds_the_lock_until_it_is_done(tmp_path):
    with sole_writer(tmp_path / "lock", "busy: another writer"):
        with pytest.raises(ValueError, match="busy: another writer"):
            with sole_writer(tmp_path / "lock", "busy: another writer"):
                pass
    with sole_writer(tmp_path / "lock", "busy"):  # released at the end of the first
        pass


def test_a_fifo_or_device_in_the_place_of_a_file_is_refused_at_once(tmp_path):
    """Opening a FIFO for writing waited for a reader for ever: `train --resume` with a FIFO at metrics.jsonl or
    train.lock, `prepare` with one at prepare.lock, hung."""
    import os

    os.mkfifo(tmp_path / "fifo")
    for append in (False, True):
        with pytest.raises(ValueError, match="'.*fifo' is not a regular file .a FIFO or a device.*remove it"):
            open_own(tmp_path / "fifo", append=append)
    with pytest.raises(ValueError, match="is not a regular file"):
        with sole_writer(tmp_path / "fifo", "busy"):
            pass
    with pytest.raises(ValueError, match="'/dev/null' is not a regular file"):  # opened, then refused
        open_own("/dev/null")


def test_a_file_is_written_whole_or_not_at_all_and_a_link_in_its_place_is_replaced(tmp_path):
    path, outside = tmp_path / "config.json", tmp_path / "outside.txt"
    outside.write_bytes(b"keep me")
    path.symlink_to(outside)
    with written_whole(path) as file:
        file.write(b"new")
    assert path.read_bytes() == b"new" and not path.is_symlink() and outside.read_bytes() == b"keep me"
    with pytest.raises(RuntimeError, match="full disk"), written_whole(path) as file:
        file.write(b"half")
        raise RuntimeError("full disk")
    assert path.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["config.json",
                                                                                          "outside.txt"]
    temporary(path).symlink_to(outside)  # what a killed writer left, as a link: refused, not written through
    with pytest.raises(ValueError, match="is a link"), written_whole(path) as file:
        file.write(b"through the link")
    assert outside.read_bytes() == b"keep me" and path.read_bytes() == b"new"
