"""wire/websocket.py: the websocket framing the session speaks on a handed-over connection, as bytes."""

from __future__ import annotations

import os

import pytest

from lesspy_kernel.wire import websocket as ws


def _client_frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    n = len(payload)
    head = bytearray([(0x80 if fin else 0) | opcode])
    if n < 126:
        head.append(0x80 | n)
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return bytes(head) + mask + ws.masked(payload, mask)


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536, 1 << 20])
def test_frame_headers_of_every_length_form(n):
    frame = _client_frame(ws.OP_BINARY, os.urandom(n), mask=b"abcd")
    size = ws.header_size(frame[:2])
    h = ws.parse_frame_header(frame[:size])
    assert h == ws.FrameHead(True, ws.OP_BINARY, n, b"abcd", size)
    server = ws.frame_header(ws.OP_BINARY, n)
    assert ws.parse_frame_header(server, require_mask=False) == ws.FrameHead(True, ws.OP_BINARY, n, b"", len(server))


def test_unmasking_in_pieces_at_any_offset_matches_the_whole():
    data, mask = os.urandom(4099), os.urandom(4)
    buf = bytearray(ws.masked(data, mask))
    view = memoryview(buf)
    for start, end in [(0, 1), (1, 6), (6, 7), (7, 1000), (1000, 1003), (1003, 4099)]:
        ws.unmask(view[start:end], mask, start)
    assert bytes(buf) == data


@pytest.mark.parametrize("frame, code, text", [
    (bytes([0x82 | 0x40, 0x80]) + b"mask", 1002, "reserved"),
    (bytes([0x83, 0x80]) + b"mask", 1002, "opcode"),
    (bytes([0x09, 0x80]) + b"mask", 1002, "control frame"),          # a fragmented ping
    (bytes([0x89, 0x80 | 126, 0, 200]) + b"mask", 1002, "control frame"),
    (bytes([0x82, 0x05]), 1002, "mask"),
])
def test_frames_that_break_the_rules(frame, code, text):
    with pytest.raises(ws.WebSocketError) as e:
        ws.parse_frame_header(frame)
    assert e.value.code == code and text in str(e.value)


def test_close_frames():
    frame = ws.close_frame(4404, "x" * 300)
    h = ws.parse_frame_header(frame, require_mask=False)
    assert h.opcode == ws.OP_CLOSE and h.length <= 125
    code, reason = ws.parse_close(frame[h.size:])
    assert code == 4404 and reason.endswith("...")
    assert ws.parse_close(b"") == (1005, "")
