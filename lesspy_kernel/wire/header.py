"""The 64-byte mapping header (docs/PROTOCOL.md section 2) and where a top-level array's data starts: every
offset and word index of a lane file, and the functions that write and check a header."""

from __future__ import annotations

import struct
from typing import Tuple

from .constants import PROTOCOL_VERSION
from .errors import FrameError

HEADER_SIZE = 64
MAPPING_MAGIC = b"LPYM"
# magic, version, header size, capacity, sequence, payload length, status, waiting, session id, cancel, flags, reserved
HEADER = struct.Struct("<4sHHQQQIIQQ8x")
VERSION_OFFSET = 4
CAPACITY_OFFSET = 8
SEQUENCE_OFFSET = 16
LENGTH_OFFSET = 24
STATUS_OFFSET = 32
WAITING_OFFSET = 36
SESSION_OFFSET = 40
CANCEL_OFFSET = 48
FLAGS_OFFSET = 56               # request file only: u32 flags the client sets with each call
# The header read through typed views, one aligned load or store per field: indices of its u64 words and u32 ints
MAGIC_WORD = 0                  # magic, version and header size (FIRST_WORD in a valid header)
CAPACITY_WORD = CAPACITY_OFFSET // 8
SEQUENCE_WORD = SEQUENCE_OFFSET // 8
LENGTH_WORD = LENGTH_OFFSET // 8
SESSION_WORD = SESSION_OFFSET // 8
CANCEL_WORD = CANCEL_OFFSET // 8
STATUS_INT = STATUS_OFFSET // 4
WAITING_INT = WAITING_OFFSET // 4
FLAGS_INT = FLAGS_OFFSET // 4
# the first word of every valid header (magic, version, header size), checked with one comparison
FIRST_WORD = int.from_bytes(HEADER.pack(MAPPING_MAGIC, PROTOCOL_VERSION, HEADER_SIZE, 0, 0, 0, 0, 0, 0, 0)[:8],
                            "little")


def payload_offset(n: int) -> int:
    """Where byte `n` of the payload lies in a lane file."""
    return HEADER_SIZE + n


def write_header(buf: memoryview, capacity: int, session: int = 0) -> None:
    """Initialise a fresh mapping's header (magic, version, header size, capacity, session id)."""
    HEADER.pack_into(buf, 0, MAPPING_MAGIC, PROTOCOL_VERSION, HEADER_SIZE, capacity, 0, 0, 0, 0, session, 0)


def restore_header(buf: memoryview, capacity: int, session: int) -> None:
    """Write a fresh header over `buf`, all but its `waiting` field: the other side's, which it may have set
    already (a 0 written there would cancel the wake-up byte it waits for)."""
    fresh = bytearray(HEADER_SIZE)
    write_header(memoryview(fresh), capacity, session)
    buf[:WAITING_OFFSET] = fresh[:WAITING_OFFSET]
    buf[WAITING_OFFSET + 4:HEADER_SIZE] = fresh[WAITING_OFFSET + 4:]


def read_header(buf: memoryview) -> Tuple[int, int, int]:
    """Check a mapping's header and return (sequence, payload length, status)."""
    if len(buf) < HEADER_SIZE:
        raise FrameError(0, f"a mapping needs at least {HEADER_SIZE} bytes, this one has {len(buf)}")
    magic, version, hsize, capacity, seq, length, status = HEADER.unpack_from(buf, 0)[:7]
    if magic != MAPPING_MAGIC:
        raise FrameError(0, f"mapping magic {magic!r}, expected {MAPPING_MAGIC!r}")
    if version != PROTOCOL_VERSION or hsize != HEADER_SIZE:
        raise FrameError(VERSION_OFFSET, f"mapping version {version} header {hsize}, expected {PROTOCOL_VERSION}/{HEADER_SIZE}")
    if length > len(buf) - HEADER_SIZE:
        raise FrameError(LENGTH_OFFSET, f"payload length {length} exceeds the mapping's {len(buf) - HEADER_SIZE} payload bytes")
    return seq, length, status


# An NDARRAY's data (and an NDARRAY_AT's) starts at a multiple of this within the payload: aligned for any dtype
# and for SIMD loads, wherever the value sits in the frame
NDARRAY_ALIGN = 64


def ndarray_data_offset(ndim: int) -> int:
    """Where a top-level NDARRAY value's data starts in a payload: after its tag, dtype code, ndim and shape,
    padded to a multiple of NDARRAY_ALIGN."""
    return (3 + 8 * ndim + NDARRAY_ALIGN - 1) // NDARRAY_ALIGN * NDARRAY_ALIGN
