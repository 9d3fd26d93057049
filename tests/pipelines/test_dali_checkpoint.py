"""check_reader_state on hand-made DALI 2.4 checkpoints (a real one, written by a loader, is in test_loader)."""
from __future__ import annotations

import pytest

from pipelines.dali_checkpoint import check_reader_state


def field(number: int, value: bytes) -> bytes:
    """A length-delimited protobuf field (lengths under 128 take one byte)."""
    assert len(value) < 128
    return bytes([number << 3 | 2, len(value)]) + value


def operator(name: bytes, state: bytes) -> bytes:
    return field(1, field(1, name) + field(2, state))


def reader(rng: bytes) -> bytes:
    """ReaderStateSnapshot {loader_state {rng, current_epoch=1, age=0}} as DALI 2.4 writes it."""
    return field(1, field(1, rng) + b"\x10\x01\x18\x00")


def checkpoint(rng: bytes = b"1058407991", name: bytes = b"Reader") -> bytes:
    philox = b"Philox_00000000E5D882D5_00000000000000D0:0000000000000000_0"
    return operator(name, reader(rng)) + operator(b"__ImageRandomCrop_2", philox) + field(2, b"{}")


@pytest.mark.parametrize("rng", [b"1", b"1058407991", b"2147483646"])
def test_states_the_generator_can_take_pass(rng):
    check_reader_state(checkpoint(rng), "Reader")


@pytest.mark.parametrize("rng", [b"0", b"2147483647", b"4294967294", b"abcdefghij", b"-1", b"+5", b" 5", b"",
                                 "\u0661".encode(), b"0" * 11 + b"1", b"9" * 100])
def test_states_a_reader_never_writes_are_refused(rng):
    with pytest.raises(ValueError, match="the reader's generator state .* is not one DALI writes"):
        check_reader_state(checkpoint(rng), "Reader")


def test_a_long_state_is_shown_cut_short():
    with pytest.raises(ValueError, match=r"state b'x{24}\.\.\.' is not"):
        check_reader_state(checkpoint(b"x" * 100), "Reader")


@pytest.mark.parametrize("data, says", [
    (checkpoint(name=b"Other"), "0 states of the reader 'Reader'"),
    (checkpoint() + operator(b"Reader", reader(b"5")), "2 states of the reader 'Reader'"),
    (operator(b"Reader", b""), "0 loader states"),
    (operator(b"Reader", field(1, b"")), "0 generator states"),
    (field(1, field(1, b"Reader")), "0 operator states"),
    (checkpoint()[:-1], "a field runs past the end"),
    (b"\x0a\xff", "a varint runs past the end"),
    (b"\x0d\x00\x00\x00\x00", "wire type 5"),
    (b"\x08" + b"\xff" * 10 + b"\x01", "a varint runs past the end"),  # longer than 64 bits
])
def test_a_checkpoint_of_another_shape_is_refused(data, says):
    with pytest.raises(ValueError, match=f"not a DALI checkpoint of this loader's pipeline: {says}"):
        check_reader_state(data, "Reader")
