"""What a loader checks in a DALI checkpoint before handing it to DALI.

DALI restores a reader's state without checking it, and two of its entries can make it wait for ever: a damaged
or crafted checkpoint hung `dali-has train --resume` with no message, and Ctrl-C could not stop it. So the
reader's part is read first:
* its shuffling generator (libstdc++'s std::default_random_engine, minstd_rand0), saved as decimal text: text
  that is not a state the engine takes (letters, 0, 2^31 - 1) restores a generator stuck at 0, and the first
  batch waits for ever;
* its `age`, how far into an epoch it was (DALI reads that many samples again on restoring: 2^31 - 1 did not
  finish): a loader's states are taken between epochs, where it is 0;
* its epoch count, an int32 that a state of this loader never holds negative.

The layout is DALI 2.4's (dali.proto): Checkpoint {1: repeated OpCheckpoint {1: operator_name, 2:
operator_state}}, a reader's operator_state is ReaderStateSnapshot {1: LoaderStateSnapshot {1: rng, 2:
current_epoch, 3: age}}. A DALI that writes another layout makes the resume tests fail, which is where to update it.
"""
from __future__ import annotations

# The states minstd_rand0 takes: it multiplies modulo 2^31 - 1, so 0 (and its multiples) stays 0 for ever.
ENGINE_STATES = range(1, 2**31 - 1)
EPOCHS = range(0, 2**31)  # current_epoch, an int32 (a negative one is written as a 10-byte varint, >= 2^63)

_VARINT, _LENGTH_DELIMITED = 0, 2


def _fields(message: bytes) -> list[tuple[int, int, object]]:
    """(field number, wire type, value) of a protobuf message: an int for a varint, bytes for a length-delimited
    field. Raises ValueError on anything else or on truncated bytes (DALI's checkpoints use no other wire types)."""
    fields, at = [], 0

    def varint() -> int:
        nonlocal at
        value, shift = 0, 0
        while True:
            if at >= len(message) or shift > 63:
                raise ValueError("a varint is cut short or longer than 64 bits")
            byte = message[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while at < len(message):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            fields.append((number, wire, varint()))
        elif wire == _LENGTH_DELIMITED:
            size = varint()
            if at + size > len(message):
                raise ValueError("a field runs past the end")
            fields.append((number, wire, message[at:at + size]))
            at += size
        else:
            raise ValueError(f"wire type {wire}, which DALI's checkpoints do not use")
    return fields


def _only(fields: list, number: int, what: str) -> bytes:
    found = [value for n, wire, value in fields if n == number and wire == _LENGTH_DELIMITED]
    if len(found) != 1:
        raise ValueError(f"{len(found)} {what} (expected one)")
    return found[0]


def check_reader_state(checkpoint: bytes, reader: str) -> None:
    """Raise ValueError unless `checkpoint` holds one state of the operator named `reader` that the reader can
    have written between epochs (see the module docstring)."""
    try:
        operators = [_fields(op) for n, wire, op in _fields(checkpoint) if n == 1 and wire == _LENGTH_DELIMITED]
        states = [_only(op, 2, "operator states") for op in operators
                  if _only(op, 1, "operator names") == reader.encode()]
        if len(states) != 1:
            raise ValueError(f"{len(states)} states of the reader {reader!r} (expected one)")
        loader = _fields(_only(_fields(states[0]), 1, "loader states"))
        rng = _only(loader, 1, "generator states")
    except ValueError as error:
        raise ValueError(f"not a DALI checkpoint of this loader's pipeline: {error}") from None
    varints = {number: value for number, wire, value in loader if wire == _VARINT}  # protobuf may leave out 0
    epoch, age = varints.get(2, 0), varints.get(3, 0)
    if epoch not in EPOCHS or age != 0:
        raise ValueError(f"the reader's state says epoch {epoch}, {age} samples into it; a loader's states are "
                         f"taken between epochs (0 samples into one, epoch {EPOCHS.start}..{EPOCHS.stop - 1}), and "
                         "DALI reads every sample of a state's age again on restoring it")
    if not (rng.isascii() and rng.isdigit() and len(rng) <= 10 and int(rng) in ENGINE_STATES):
        shown = rng[:24] + (b"..." if len(rng) > 24 else b"")
        raise ValueError(f"the reader's generator state {shown!r} is not one DALI writes (a decimal number "
                         f"{ENGINE_STATES.start}..{ENGINE_STATES.stop - 1}), and DALI's reader can wait for ever on "
                         "such a state")
