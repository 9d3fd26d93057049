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


def varint(number: int, value: int) -> bytes:
    key, encoded = bytes([number << 3]), b""
    while True:
        encoded += bytes([value & 0x7F | (0x80 if value > 0x7F else 0)])
        value >>= 7
        if not value:
            return key + encoded


def reader(rng: bytes, epoch: int = 1, age: int = 0) -> bytes:
    """ReaderStateSnapshot {loader_state {rng, current_epoch, age}} as DALI 2.4 writes it."""
    return field(1, field(1, rng) + varint(2, epoch) + varint(3, age))


def checkpoint(rng: bytes = b"1058407991", name: bytes = b"Reader", **state) -> bytes:
    philox = b"Philox_00000000E5D882D5_00000000000000D0:0000000000000000_0"
    return operator(name, reader(rng, **state)) + operator(b"__ImageRandomCrop_2", philox) + field(2, b"{}")


@pytest.mark.parametrize("rng", [b"1", b"1058407991", b"2147483646"])
def test_states_the_generator_can_take_pass(rng):
    check_reader_state(checkpoint(rng), "Reader")


@pytest.mark.parametrize("rng", [b"0", b"2147483647", b"4294967294", b"abcdefghij", b"-1", b"+5", b" 5", b"",
                                 "\u0661".encode(), b"0" * 11 + b"1", b"9" * 100])
def test_states_a_reader_never_writes_are_refused(rng):
    with pytest.raises(ValueError, match="the reader's generator state .* is not one DALI writes"):
        check_reader_state(checkpoint(rng), "Reader")


def test_the_hand_made_record_is_byte_for_byte_what_dali_wrote():
    # The reader's record of a real checkpoint (a loader's state after its first epoch, DALI 2.4).
    assert checkpoint().startswith(b"\n\x1c\n\x06Reader\x12\x12\n\x10\n\n1058407991\x10\x01\x18\x00")


@pytest.mark.parametrize("state", [dict(epoch=0), dict(epoch=7), dict(epoch=2**31 - 1)])
def test_states_taken_between_epochs_pass(state):
    check_reader_state(checkpoint(**state), "Reader")


@pytest.mark.parametrize("state, says", [
    (dict(age=1), "epoch 1, 1 samples into it"),
    (dict(age=2**31 - 1), "epoch 1, 2147483647 samples into it"),  # restoring it did not finish
    (dict(epoch=2**64 - 1), "epoch 18446744073709551615, 0 samples"),  # int32 -1, as protobuf writes it
    (dict(epoch=2**31), "epoch 2147483648, 0 samples"),
])
def test_states_not_between_epochs_are_refused(state, says):
    with pytest.raises(ValueError, match=f"the reader's state says {says}.*taken between epochs"):
        check_reader_state(checkpoint(**state), "Reader")


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
    (b"\x0a\xff", "a varint is cut short"),
    (b"\x0d\x00\x00\x00\x00", "wire type 5"),
    (b"\x08" + b"\xff" * 10 + b"\x01", "a varint is cut short or longer than 64 bits"),
])
def test_a_checkpoint_of_another_shape_is_refused(data, says):
    with pytest.raises(ValueError, match=f"not a DALI checkpoint of this loader's pipeline: {says}"):
        check_reader_state(data, "Reader")
