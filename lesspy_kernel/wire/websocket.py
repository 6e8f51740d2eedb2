"""Websocket framing (RFC 6455) as bytes: frame headers, masking, close frames. The session speaks it on a
connection Jupyter Server's relay handed over (docs/PROTOCOL.md section 10); nothing here reads a socket."""

from __future__ import annotations

import struct
from typing import NamedTuple, Tuple, Union

import numpy as np

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
DATA_OPCODES = (OP_CONTINUATION, OP_TEXT, OP_BINARY)
CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)
MAX_CONTROL_PAYLOAD = 125
MAX_FRAME_HEADER = 14                   # 2 + 8 (64-bit length) + 4 (mask key)

# close codes (the relay's: docs/PROTOCOL.md section 10)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_SESSION_GONE = 4404

_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")


class WebSocketError(Exception):
    """A frame that breaks RFC 6455 or lesspy's use of it: the connection closes with `code`."""

    def __init__(self, message: str, code: int = CLOSE_PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


class FrameHead(NamedTuple):
    fin: bool
    opcode: int
    length: int             # payload bytes
    mask: bytes             # the 4-byte masking key (b"" when unmasked)
    size: int               # header bytes


def header_size(first_two: Union[bytes, bytearray, memoryview]) -> int:
    """The size of a frame header from its first two bytes."""
    n = first_two[1] & 0x7F
    return 2 + (2 if n == 126 else 8 if n == 127 else 0) + (4 if first_two[1] & 0x80 else 0)


def parse_frame_header(buf: Union[bytes, bytearray, memoryview], require_mask: bool = True) -> FrameHead:
    """A whole frame header (header_size(buf) bytes). Raises WebSocketError for reserved bits, an unknown opcode,
    a control frame that is fragmented or too long, or (`require_mask`: a client's frame) no mask."""
    b0, b1 = buf[0], buf[1]
    if b0 & 0x70:
        raise WebSocketError("a frame with reserved bits set (no extension was agreed)")
    opcode = b0 & 0x0F
    fin = bool(b0 & 0x80)
    if opcode not in DATA_OPCODES and opcode not in CONTROL_OPCODES:
        raise WebSocketError(f"websocket opcode {opcode:#x} is not defined")
    n = b1 & 0x7F
    pos = 2
    if n == 126:
        n = _U16.unpack_from(buf, 2)[0]
        pos = 4
    elif n == 127:
        n = _U64.unpack_from(buf, 2)[0]
        pos = 10
        if n >> 63:
            raise WebSocketError("a frame length with its top bit set")
    if opcode in CONTROL_OPCODES and (n > MAX_CONTROL_PAYLOAD or not fin):
        raise WebSocketError("a control frame longer than 125 bytes or fragmented")
    mask = b""
    if b1 & 0x80:
        mask = bytes(buf[pos:pos + 4])
        pos += 4
    elif require_mask:
        raise WebSocketError("a client frame without a mask (RFC 6455 5.1)")
    return FrameHead(fin, opcode, n, mask, pos)


def frame_header(opcode: int, length: int, fin: bool = True) -> bytes:
    """A server frame's header (unmasked)."""
    b0 = (0x80 if fin else 0) | opcode
    if length < 126:
        return bytes((b0, length))
    if length < 1 << 16:
        return bytes((b0, 126)) + _U16.pack(length)
    return bytes((b0, 127)) + _U64.pack(length)


def unmask(data: memoryview, mask: bytes, offset: int) -> None:
    """XOR `data` in place with `mask`, `data` starting at byte `offset` of its frame's payload."""
    n = len(data)
    if not n:
        return
    k = offset & 3
    key = mask[k:] + mask[:k]
    whole = n & ~3
    if whole:
        words = np.frombuffer(data[:whole], np.uint32)
        np.bitwise_xor(words, np.frombuffer(key, np.uint32)[0], out=words)
    for i in range(whole, n):           # at most 3 bytes
        data[i] ^= key[i - whole]


def masked(data: bytes, mask: bytes) -> bytes:
    """`data` masked with `mask` (a copy; for a client's frames and tests)."""
    out = bytearray(data)
    unmask(memoryview(out), mask, 0)
    return bytes(out)


def close_payload(code: int, reason: str) -> bytes:
    """A close frame's payload: the code and at most 123 bytes of reason (cut at a character)."""
    raw = reason.encode("utf-8")
    if len(raw) > MAX_CONTROL_PAYLOAD - 2:
        raw = raw[:MAX_CONTROL_PAYLOAD - 5].decode("utf-8", "ignore").encode("utf-8") + b"..."
    return _U16.pack(code) + raw


def close_frame(code: int, reason: str) -> bytes:
    """A whole server close frame."""
    payload = close_payload(code, reason)
    return frame_header(OP_CLOSE, len(payload)) + payload


def parse_close(payload: bytes) -> Tuple[int, str]:
    """(code, reason) of a close frame's payload (1005, "" when it has none)."""
    if len(payload) < 2:
        return 1005, ""
    return _U16.unpack_from(payload)[0], payload[2:].decode("utf-8", "replace")
