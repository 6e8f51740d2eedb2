"""Frames as messages (docs/PROTOCOL.md section 10): the 64-byte header of section 2, then the frame's payload.

Where no mapping carries the frames (a websocket relayed by Jupyter Server, and the relay's Unix socket to the
session), each frame travels as one message: the mapping header's bytes with capacity and waiting 0, then
exactly `length` payload bytes. Client to server: a REQUEST (sequence 1, 2, 3, ... per lane, status REQUEST_*) or
a CANCEL (header only, sequence 0, status 0, cancel = the abandoned call's sequence). Server to client: a REPLY
(the request's sequence, status STATUS_*) or a KEEPALIVE (header only, sequence 0, status 0). Bytes in, checked
fields out; nothing here reads or writes a socket.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from .constants import (FLAG_REPLY_IN_REQUEST, PROTOCOL_VERSION, REQUEST_CALL, REQUEST_STREAM, STATUS_END,
                        STATUS_OK)
from .errors import FrameError
from .header import (CANCEL_OFFSET, FLAGS_OFFSET, HEADER, HEADER_SIZE, LENGTH_OFFSET, MAPPING_MAGIC,
                     SEQUENCE_OFFSET, STATUS_OFFSET, VERSION_OFFSET)
from .structs import U32

# a whole message (header and payload) fits a .NET byte[] and an int length: 2^31 - 1 bytes
MAX_MESSAGE_PAYLOAD = 2**31 - 1 - HEADER_SIZE
MESSAGE_SEQUENCE_NONE = 0       # the sequence of a CANCEL and of a KEEPALIVE: they answer no request


class MessageHeader(NamedTuple):
    """The fields of a message header a receiver acts on (capacity and waiting are ignored)."""

    sequence: int
    length: int
    status: int
    session: int
    cancel: int
    flags: int

    @property
    def is_cancel(self) -> bool:
        """Client to server: a CANCEL (sequence 0), not a REQUEST."""
        return self.sequence == MESSAGE_SEQUENCE_NONE

    @property
    def is_keepalive(self) -> bool:
        """Server to client: a KEEPALIVE (sequence 0), not a REPLY."""
        return self.sequence == MESSAGE_SEQUENCE_NONE


def pack_message_header(buf: memoryview, sequence: int, length: int, status: int, session: int,
                        cancel: int = 0, flags: int = 0) -> None:
    """Write a message header into the first 64 bytes of `buf` (its payload follows in the same buffer)."""
    HEADER.pack_into(buf, 0, MAPPING_MAGIC, PROTOCOL_VERSION, HEADER_SIZE, 0, sequence, length, status, 0, session,
                     cancel)
    if flags:
        U32.pack_into(buf, FLAGS_OFFSET, flags)


def message_header(sequence: int, length: int, status: int, session: int, cancel: int = 0, flags: int = 0) -> bytes:
    """A message header as bytes."""
    out = bytearray(HEADER_SIZE)
    pack_message_header(memoryview(out), sequence, length, status, session, cancel, flags)
    return bytes(out)


def cancel_message(sequence: int, session: int) -> bytes:
    """A CANCEL: the caller abandoned request `sequence` (its reply still comes)."""
    if sequence <= 0:
        raise ValueError(f"a CANCEL names the sequence of a request (1 or more), not {sequence}")
    return message_header(MESSAGE_SEQUENCE_NONE, 0, REQUEST_CALL, session, cancel=sequence)


def keepalive_message(session: int) -> bytes:
    """A KEEPALIVE: the relay is there (a client that hears nothing for 5 heartbeats treats the connection as lost)."""
    return message_header(MESSAGE_SEQUENCE_NONE, 0, STATUS_OK, session)


def read_message_header(buf: memoryview, size: Optional[int] = None,
                        max_payload: int = MAX_MESSAGE_PAYLOAD) -> MessageHeader:
    """Check the layout of a received message header (magic, version, header size, length) and return its
    fields. `size`: the whole message's size when it arrived in one piece (a websocket message): the length must
    be the bytes after the header. Raises FrameError saying what is wrong."""
    if len(buf) < HEADER_SIZE:
        raise FrameError(0, f"a message starts with a {HEADER_SIZE}-byte header; this one has {len(buf)} bytes")
    magic, version, hsize, _, sequence, length, status, _, session, cancel = HEADER.unpack_from(buf, 0)
    if magic != MAPPING_MAGIC:
        raise FrameError(0, f"message magic {bytes(magic)!r}, expected {MAPPING_MAGIC!r}")
    if version != PROTOCOL_VERSION:
        raise FrameError(VERSION_OFFSET, f"message protocol version {version}, expected {PROTOCOL_VERSION}: use "
                         "matching versions of LessPy and lesspy-kernel")
    if hsize != HEADER_SIZE:
        raise FrameError(VERSION_OFFSET + 2, f"message header size {hsize}, expected {HEADER_SIZE}")
    if size is not None and length != size - HEADER_SIZE:
        raise FrameError(LENGTH_OFFSET, f"the header says {length} payload bytes but {size - HEADER_SIZE} follow it")
    if length > max_payload:
        raise FrameError(LENGTH_OFFSET, f"a payload of {length:,} bytes exceeds the {max_payload:,} bytes a message "
                         "may carry here")
    return MessageHeader(sequence, length, status, session, cancel, U32.unpack_from(buf, FLAGS_OFFSET)[0])


def check_client_message(h: MessageHeader) -> None:
    """The rules of a client's message (REQUEST or CANCEL); raises FrameError. A receiver that clears flag bit 0
    instead of refusing it (as the session's lane does) passes `h._replace(flags=...)`."""
    if h.is_cancel:
        if h.length:
            raise FrameError(LENGTH_OFFSET, f"a CANCEL (sequence 0) is a header only; this one says {h.length} "
                             "payload bytes")
        if h.status != REQUEST_CALL:
            raise FrameError(STATUS_OFFSET, f"a CANCEL (sequence 0) has status 0, not {h.status}")
        if not h.cancel:
            raise FrameError(CANCEL_OFFSET, "a message with sequence 0 is a CANCEL and names the request it abandons "
                             "in its cancel field; this one names none (0)")
        return
    if not REQUEST_CALL <= h.status <= REQUEST_STREAM:
        raise FrameError(STATUS_OFFSET, f"request status {h.status} is not 0 (call), 1 (next), 2 (close) or "
                         "3 (stream)")
    if h.flags & FLAG_REPLY_IN_REQUEST:
        raise FrameError(FLAGS_OFFSET, "request flag bit 0 (a reply that points into the request) must be 0 in a "
                         "message: there is no shared request buffer for a reply to point into")
    if h.cancel:
        raise FrameError(CANCEL_OFFSET, f"a REQUEST (sequence {h.sequence}) has cancel 0, not {h.cancel}; a cancel "
                         "travels as a CANCEL message (sequence 0)")


def check_server_message(h: MessageHeader) -> None:
    """The rules of a server's message (REPLY or KEEPALIVE); raises FrameError."""
    if h.is_keepalive:
        if h.length or h.status != STATUS_OK:
            raise FrameError(SEQUENCE_OFFSET, f"a KEEPALIVE (sequence 0) is a header only with status 0; this one "
                             f"says {h.length} payload bytes, status {h.status}")
        return
    if not STATUS_OK <= h.status <= STATUS_END:
        raise FrameError(STATUS_OFFSET, f"reply status {h.status} is not 0 (value), 1 (error) or 2 (end of stream)")
