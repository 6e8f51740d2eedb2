"""A lane whose frames travel as messages on its socket (PROTOCOL.md section 10): the Jupyter Server relay's way
into a session (handshake purpose FRAMES). A Transport (base.py) without mappings and without speed paths.

Each message is a 64-byte header (wire/message.py) and its payload, back to back on the stream. The lane's thread
reads a REQUEST whole into a request buffer before it is served; CANCEL messages only update `cancelled`, which
the watchdog and the call loop also read while a call runs (only header-only messages may come then). A reply is
its header and payload in one buffer, sent with one write. A message that breaks the rules (a bad header, a
REQUEST while one is being served, a payload over the limit) closes the lane: the relay checked it already, so
the peer is not one that follows the protocol.
"""

from __future__ import annotations

import json
import logging
import selectors
import socket
import struct
import sys
import threading
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ..loglimit import LogLimiter
from ..wire import (FLAG_REPLY_IN_REQUEST, HEADER_SIZE, LENGTH_OFFSET, MAX_MESSAGE_PAYLOAD, NDARRAY_ALIGN,
                    SEQUENCE_OFFSET, SESSION_OFFSET,
                    STATUS_ERROR, ErrorKind, FrameError, MessageHeader, check_client_message, encode_error,
                    pack_message_header, read_message_header)
from ..wire import websocket as ws
from ..wire.message import keepalive_message, message_header
from ..wire.structs import U64

INITIAL_PAYLOAD = 64 * 1024     # a lane's first request and reply buffers (grown to what a message needs)
_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)     # a closed peer is an error of the send, never a SIGPIPE
_WOULD_BLOCK = (BlockingIOError, InterruptedError)


class ShortMessage(Exception):
    """The websocket message ended before the lesspy message its header announced."""


class RawFraming:
    """Messages back to back on the stream (the relay's Unix socket): the stream's bytes are the messages'."""

    checks_like_relay = False       # a bad message closes the lane (the relay checked it already)
    buffered = False

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv_into(self, view: memoryview) -> int:
        return self.sock.recv_into(view)

    def left_in_message(self) -> Optional[int]:
        return None

    def message_end(self) -> Optional[str]:
        return None

    def skip_message(self) -> None:
        pass

    def prefix(self, length: int) -> bytes:
        return b""

    def take_waiting(self) -> List[bytes]:
        return []


class WebSocketFraming:
    """Messages as websocket binary messages (RFC 6455) on a connection the relay handed over: masked client
    frames are unmasked in place into the lane's buffers, pings answered, a close frame ends the stream. The lane
    checks messages the way the relay does (`checks_like_relay`)."""

    checks_like_relay = True
    SKIP_CHUNK = 64 * 1024

    def __init__(self, sock: socket.socket, early: bytes, send_lock: threading.Lock) -> None:
        self.sock = sock
        self.early = bytearray(early)              # bytes Jupyter Server read before the hand-off
        self.send_lock = send_lock
        self._head = bytearray(ws.MAX_FRAME_HEADER)
        self._head_have = 0
        self._frame: Optional[ws.FrameHead] = None     # the frame whose payload is being read
        self._frame_pos = 0
        self._control = bytearray()                # a control frame's payload being read
        self._msg_open = False                     # a websocket message started whose last frame was not read
        self._end_pending = False                  # the lesspy message ended; its websocket message must end too
        self._lesspy_open = False                  # bytes of a lesspy message were returned, it is not whole yet
        self._skipping = False                     # the rest of this websocket message is dropped
        self.outbox: List[bytes] = []              # control frames waiting for the send lock (pongs, close)
        self.unsent = b""                          # the rest of a frame a non-blocking send could not finish
        self.peer_closed = False
        self.close_sent = False
        self.last_send = time.monotonic()

    @property
    def buffered(self) -> bool:
        return bool(self.early)

    # ------------------------------------------------------------ receiving

    def _raw(self, view: memoryview) -> int:
        if self.early:
            n = min(len(view), len(self.early))
            view[:n] = self.early[:n]
            del self.early[:n]
            return n
        return self.sock.recv_into(view)

    def recv_into(self, view: memoryview) -> int:
        """Up to len(view) bytes of the current lesspy message, unmasked. 0: the stream ended (EOF or a close
        frame). Raises BlockingIOError (nothing now), ws.WebSocketError (close with its code), ShortMessage."""
        while True:
            f = self._frame
            if f is not None:
                want = f.length - self._frame_pos
                if self._skipping:
                    n = self._raw(memoryview(bytearray(min(want, self.SKIP_CHUNK))))
                else:
                    n = self._raw(view[:want])
                if not n:
                    return 0
                if not self._skipping:
                    ws.unmask(view[:n], f.mask, self._frame_pos)
                self._frame_pos += n
                if self._frame_pos == f.length:
                    self._frame_done()
                if self._skipping:
                    if self._frame is None and not self._msg_open:
                        self._skipping = False          # that websocket message is over
                    continue
                self._lesspy_open = True
                return n
            if self._lesspy_open and not self._msg_open:
                self._lesspy_open = False               # the next message starts at the next frame
                raise ShortMessage()
            if not self._next_frame():
                return 0

    def _frame_done(self) -> None:
        f = self._frame
        assert f is not None
        self._frame = None
        self._msg_open = not f.fin

    def _next_frame(self) -> bool:
        """Read a frame header (and a control frame whole). False: the stream ended."""
        head = memoryview(self._head)
        need = 2 if self._head_have < 2 else ws.header_size(head)
        while self._head_have < need:
            n = self._raw(head[self._head_have:need])
            if not n:
                return False
            self._head_have += n
            if self._head_have >= 2:
                need = ws.header_size(head)
        f = ws.parse_frame_header(head)
        if f.opcode in ws.CONTROL_OPCODES:
            while len(self._control) < f.length:
                chunk = bytearray(f.length - len(self._control))
                n = self._raw(memoryview(chunk))
                if not n:
                    return False
                self._control += chunk[:n]
            self._head_have = 0
            payload = bytearray(self._control)
            self._control = bytearray()
            ws.unmask(memoryview(payload), f.mask, 0)
            return self._on_control(f.opcode, bytes(payload))
        self._head_have = 0
        if f.opcode == ws.OP_TEXT:
            raise ws.WebSocketError("lesspy takes binary messages only (a text message came)", ws.CLOSE_UNSUPPORTED)
        if f.opcode == ws.OP_CONTINUATION:
            if not self._msg_open:
                raise ws.WebSocketError("a continuation frame outside a message")
        elif self._msg_open:
            raise ws.WebSocketError("a new message before the last one's final frame")
        if self._end_pending:
            if f.opcode != ws.OP_CONTINUATION or f.length:
                raise ws.WebSocketError("the websocket message goes on past the end of its lesspy message")
        if f.opcode == ws.OP_BINARY and f.fin and not f.length:
            raise ws.WebSocketError(f"a lesspy message starts with a {HEADER_SIZE}-byte header; this one has 0 bytes")
        self._frame, self._frame_pos = f, 0
        if not f.length:
            self._frame_done()
        if self._end_pending and not self._msg_open:
            self._end_pending = False
        return True

    def _on_control(self, opcode: int, payload: bytes) -> bool:
        if opcode == ws.OP_PING:
            self.outbox.append(ws.frame_header(ws.OP_PONG, len(payload)) + payload)
            self.flush(blocking=False)
        elif opcode == ws.OP_CLOSE:
            code, _ = ws.parse_close(payload)
            self.peer_closed = True
            if not self.close_sent:            # the closing handshake: echo its code
                self.outbox.append(ws.close_frame(code if code not in (1005, 1006, 1015) else 1000, ""))
                self.close_sent = True
                self.flush(blocking=False)
            return False
        return True                            # a pong: nothing to do

    def left_in_message(self) -> Optional[int]:
        """The bytes left in the websocket message when its size is known now (its current frame is its last)."""
        f = self._frame
        if f is not None and f.fin:
            return f.length - self._frame_pos
        if f is None and not self._msg_open:
            return 0
        return None

    def message_end(self) -> Optional[str]:
        """The lane has read a whole lesspy message: its websocket message must end there too. A text saying what
        is wrong if it does not (the rest of that websocket message is then skipped)."""
        self._lesspy_open = False
        f = self._frame
        if f is not None and self._frame_pos < f.length:
            self._skipping = True
            return "more bytes follow the payload its header announced in the same websocket message"
        if self._msg_open:
            self._end_pending = True           # only empty continuation frames may follow (checked as they come)
        return None

    def skip_message(self) -> None:
        """Drop what is left of the current websocket message (after an error reply to it)."""
        self._lesspy_open = False
        if self._frame is not None or self._msg_open:
            self._skipping = True

    # ------------------------------------------------------------ sending

    def prefix(self, length: int) -> bytes:
        return ws.frame_header(ws.OP_BINARY, length)

    def take_waiting(self) -> List[bytes]:
        """(under the send lock) What must go before the next frame: the rest of an unfinished one, control
        frames."""
        waiting = [self.unsent] if self.unsent else []
        self.unsent = b""
        while self.outbox:                     # popped one by one: a reading thread may append meanwhile
            waiting.append(self.outbox.pop(0))
        return waiting

    def _send_some(self, data: bytes) -> int:
        return self.sock.send(data, _NOSIGNAL)

    def flush(self, blocking: bool) -> bool:
        """Send what waits (an unfinished frame, then control frames) if the send lock is free. True: all sent."""
        if not self.send_lock.acquire(blocking):
            return False
        try:
            return self._flush_locked()
        finally:
            self.send_lock.release()

    def _flush_locked(self) -> bool:
        """Under the send lock, without blocking."""
        try:
            while self.unsent or self.outbox:
                if not self.unsent:
                    self.unsent = self.outbox.pop(0)
                n = self._send_some(self.unsent)
                self.unsent = self.unsent[n:]
                self.last_send = time.monotonic()
        except _WOULD_BLOCK:
            return False
        except OSError:
            return False
        return True

    def send_nowait(self, frame: bytes) -> None:
        """A frame sent without blocking when the lock is free and nothing waits before it (a KEEPALIVE):
        whatever does not fit is finished before any later frame."""
        if not self.send_lock.acquire(False):
            return
        try:
            if self._flush_locked():
                self.unsent = frame
                self._flush_locked()
        finally:
            self.send_lock.release()


def _aligned(size: int) -> np.ndarray:
    """`size` bytes starting at a multiple of NDARRAY_ALIGN: a payload at byte 64 keeps its arrays aligned."""
    raw = np.empty(size + NDARRAY_ALIGN - 1, np.uint8)
    start = -raw.ctypes.data % NDARRAY_ALIGN
    return raw[start:start + size]


class StreamLane:
    """The transport of one lane over a connected stream socket that carries messages."""

    def __init__(self, lane_id: int, client: Any, sock: socket.socket, session: int, limiter: LogLimiter,
                 handoff: Optional["Handoff"] = None) -> None:
        self.id = lane_id
        self.client = client                      # server.Client: its pid and id
        self.sock = sock
        self.session = session
        self.limiter = limiter
        self.max_payload = MAX_MESSAGE_PAYLOAD     # of a request and of a reply (the relay may allow less)
        self.closed = False
        self.broken = False                       # a message broke the rules: the lane closes
        self._lock = threading.Lock()             # the socket's reads and the state below
        self._head = bytearray(HEADER_SIZE)       # the header of the message being received
        self._have = 0                            # its bytes received so far
        self._incoming: Optional[MessageHeader] = None   # a REQUEST whose payload is being received
        self._got = 0                             # its payload bytes received so far
        self._ready: Optional[MessageHeader] = None      # a whole REQUEST not taken yet
        self._taken: Optional[MessageHeader] = None      # the REQUEST being served (its reply not sent yet)
        self._last_sequence = 0
        self._cancel = 0
        self._eof = False
        # The request buffer: arrays decoded from a request are views of it. Views a call kept (a global, a
        # generator between stream items, a traceback) keep the buffer referenced; the next request with a payload
        # then goes to a new buffer, so they keep their values (_request_buffer).
        self._req = _aligned(HEADER_SIZE + INITIAL_PAYLOAD)
        self._out = _aligned(HEADER_SIZE + INITIAL_PAYLOAD)     # header room, then the reply's payload
        self._send_lock = threading.Lock()        # one frame at a time on the socket (replies, keepalives, pongs)
        self.framing: Union[RawFraming, WebSocketFraming] = RawFraming(sock)
        self.tether: Optional[socket.socket] = None   # the relay's connection, when it handed the websocket over
        self.heartbeat = 0.0
        self.goodbye = (ws.CLOSE_SESSION_GONE, "")
        if handoff is not None:
            self._take_over(handoff)
        self._readable = selectors.DefaultSelector()
        self._readable.register(self.sock, selectors.EVENT_READ)
        if self.tether is not None:
            self._readable.register(self.tether, selectors.EVENT_READ, "tether")
        self._writable = selectors.DefaultSelector()
        self._writable.register(self.sock, selectors.EVENT_WRITE)

    def _take_over(self, handoff: "Handoff") -> None:
        """Speak websocket frames on the connection the relay handed over; the relay's socket stays as the tether
        (its end means Jupyter Server is gone, and the websocket closes with it)."""
        self.tether, self.sock = self.sock, handoff.sock
        self.framing = WebSocketFraming(handoff.sock, handoff.early, self._send_lock)
        self.max_payload = handoff.max_message
        self.heartbeat = handoff.heartbeat_ms / 1000.0
        self.goodbye = (ws.CLOSE_SESSION_GONE, f"lesspy session {handoff.name!r} closed the connection (stopped, "
                                               "restarted, or its kernel went away)")
        tcp_keepalive(handoff.sock, handoff.heartbeat_ms)

    def start(self) -> None:
        """After the handshake's reply: the socket never blocks from now on (the watchdog reads it too); the lane
        thread waits in a selector."""
        self.sock.setblocking(False)
        if self.tether is not None:
            self.tether.setblocking(False)

    def say_hello(self, hello: Dict[str, Any]) -> None:
        """The first message on a handed-over websocket: the hello the relay would have sent (a text frame)."""
        text = json.dumps(hello).encode("utf-8")
        with self._send_lock:
            self._send_all([ws.frame_header(ws.OP_TEXT, len(text)), text])

    # ------------------------------------------------------------ receiving

    def _request_buffer(self, length: int) -> np.ndarray:
        """The buffer a request of `length` payload bytes is received into: the lane's own when it is large
        enough and nothing but the lane refers to it (no argument view of an earlier request), else a new one."""
        buf = self._req
        if len(buf) < HEADER_SIZE + length or sys.getrefcount(buf) > 3:   # self._req, `buf`, the argument
            size = HEADER_SIZE + max(length, INITIAL_PAYLOAD)
            if len(buf) < HEADER_SIZE + length:
                size = max(size, min(2 * len(buf), HEADER_SIZE + self.max_payload))
            del buf
            self._req = _aligned(size)
            return self._req
        return buf

    def _step(self, header_only: bool) -> bool:
        """Read what the socket holds of the next message, never past its end (under the lock). True: read some
        (look again); False: nothing more now (would block), the end of the stream, or the lane closed.
        `header_only`: a call runs, so only a CANCEL may come."""
        framing = self.framing
        h = self._incoming
        try:
            if h is None:
                n = framing.recv_into(memoryview(self._head)[self._have:])
            else:
                n = framing.recv_into(self._req.data[HEADER_SIZE + self._got:HEADER_SIZE + h.length])
        except _WOULD_BLOCK:
            return False
        except ws.WebSocketError as e:
            return self._violation(str(e), e.code)
        except ShortMessage:
            if h is None:
                return self._violation(f"a lesspy message starts with a {HEADER_SIZE}-byte header; this one has "
                                       f"{self._have} bytes")
            self._incoming = None
            return self._answer_malformed(h.sequence, f"the header says {h.length} payload bytes but {self._got} "
                                          "follow it")
        except OSError:
            n = 0
        if not n:
            self._eof = True
            return False
        if h is not None:
            self._got += n
            if self._got == h.length:
                self._incoming = None
                problem = framing.message_end()
                if problem:
                    return self._answer_malformed(h.sequence, problem)
                self._ready = h
                return False
            return True
        self._have += n
        if self._have < HEADER_SIZE:
            return True
        self._have = 0
        return self._on_header(header_only)

    def _on_header(self, header_only: bool) -> bool:
        """A whole header came: a CANCEL is noted, a REQUEST starts (or is whole, without a payload)."""
        if self.framing.checks_like_relay:
            return self._on_websocket_header(header_only)
        try:
            h = read_message_header(memoryview(self._head), max_payload=self.max_payload)
            # flag bit 0 (a reply pointing into the request) is cleared: this lane never sends one
            h = h._replace(flags=h.flags & ~FLAG_REPLY_IN_REQUEST)
            check_client_message(h)
        except FrameError as e:
            return self._violation(f"a malformed message header ({e.what})")
        if h.is_cancel:
            self._cancel = h.cancel
            return True
        if header_only or self._ready is not None:
            return self._violation(f"request {h.sequence} came while request "
                                   f"{(self._taken or self._ready or h).sequence} had no reply yet (one call at a "
                                   "time per lane)")
        if h.sequence <= self._last_sequence:
            return self._violation(f"request sequence {h.sequence} after {self._last_sequence} (sequences grow)")
        self._last_sequence = h.sequence
        if h.length:
            self._request_buffer(h.length)
            self._incoming, self._got = h, 0
            return True
        self._ready = h
        return False

    def _on_websocket_header(self, header_only: bool) -> bool:
        """The relay's checks (jupyter/relay.py check_message), in its order: a REQUEST while one is served
        closes with 1008, a sequence that does not grow with 1002; another bad REQUEST gets a MALFORMED_REQUEST
        error reply and the lane goes on; a bad CANCEL closes with 1002."""
        head = memoryview(self._head)
        sequence = U64.unpack_from(head, SEQUENCE_OFFSET)[0]
        if sequence and (header_only or self._ready is not None or self._taken is not None):
            busy = (self._taken or self._ready)
            return self._violation(f"a request (sequence {sequence}) while request "
                                   f"{busy.sequence if busy else '?'} has no reply yet: one call at a time per lane "
                                   "(open another websocket for another lane)", ws.CLOSE_POLICY)
        if sequence and sequence <= self._last_sequence:
            return self._violation(f"request sequence {sequence} is not above the previous one "
                                   f"({self._last_sequence})")
        length = U64.unpack_from(head, LENGTH_OFFSET)[0]
        left = self.framing.left_in_message()
        try:
            if left is not None and length != left:
                raise FrameError(LENGTH_OFFSET, f"the header says {length} payload bytes but {left} follow it")
            if length > self.max_payload:
                return self._violation(f"a payload of {length:,} bytes is over this relay's max_message "
                                       f"({self.max_payload:,})", ws.CLOSE_TOO_BIG)
            h = read_message_header(head, max_payload=self.max_payload)
            h = h._replace(flags=h.flags & ~FLAG_REPLY_IN_REQUEST)
            check_client_message(h)
            if sequence and h.session != self.session:
                raise FrameError(SESSION_OFFSET, f"the request names session {h.session}, this lane serves session "
                                 f"{self.session} (the session was restarted: reconnect)")
        except FrameError as e:
            if not sequence:
                return self._violation(str(e))
            self.framing.skip_message()
            return self._answer_malformed(sequence, str(e))
        if h.is_cancel:
            problem = self.framing.message_end()
            if problem:
                return self._violation(f"a CANCEL: {problem}")
            self._cancel = h.cancel
            return True
        self._last_sequence = h.sequence
        if h.length:
            self._request_buffer(h.length)
            self._incoming, self._got = h, 0
            return True
        problem = self.framing.message_end()
        if problem:
            return self._answer_malformed(h.sequence, problem)
        self._ready = h
        return False

    def _answer_malformed(self, sequence: int, what: str) -> bool:
        """A REQUEST that fails the checks, over a handed-over websocket: a MALFORMED_REQUEST error reply, as the
        relay sends (the lane thread, no call running); the lane goes on."""
        self._last_sequence = max(self._last_sequence, sequence)
        payload = encode_error(ErrorKind.MALFORMED_REQUEST, "", what, "")
        message = message_header(sequence, len(payload), STATUS_ERROR, self.session) + payload
        try:
            with self._send_lock:
                self._send_all(self.framing.take_waiting() + [self.framing.prefix(len(message)), message])
        except (OSError, ValueError):
            self._eof = True
            return False
        return True

    def _violation(self, what: str, code: int = ws.CLOSE_PROTOCOL_ERROR) -> bool:
        """A message broke the rules: log it (a client can cause this: limited) and close the lane."""
        self.goodbye = (code, what)
        self.limiter.log("lanes closed for a message that broke the rules", logging.WARNING,
                         "lane %d of client pid %s: %s; closing the lane", self.id,
                         getattr(self.client, "pid", "?"), what)
        self.broken = True
        self.close()
        return False

    def wait_for_request(self) -> bool:
        """Until a whole REQUEST is in (True) or the connection ended (False). Only this thread makes a REQUEST
        whole, so what it has not read yet is in the socket: the selector says when."""
        while self._ready is None and not self._eof and not self.closed:
            if not self.framing.buffered:
                try:
                    events = self._readable.select()
                except (OSError, ValueError):              # the selector was closed: the lane is gone
                    return False
                if any(key.data == "tether" for key, _ in events) and self._tether_gone():
                    return False
            with self._lock:
                while self._ready is None and not self._eof and not self.closed and self._step(False):
                    pass
        return self._ready is not None and not self.closed

    def take_request(self) -> int:
        with self._lock:
            h = self._ready
            if h is None or self.closed:
                return 0
            self._ready, self._taken = None, h
            return h.sequence

    def read_request(self) -> Tuple[int, memoryview]:
        """(kind, payload) of the request taken: a read-only view of the request buffer (decoded arrays are views
        of it; see _request_buffer for why a later request never writes under one)."""
        h = self._taken
        assert h is not None
        return h.status, self._req.data[HEADER_SIZE:HEADER_SIZE + h.length].toreadonly()

    def _read_pending(self) -> None:
        """While a request is served: take the CANCEL messages that came (never blocks)."""
        with self._lock:
            if self._taken is not None:
                while not self._eof and not self.closed and self._step(True):
                    pass

    @property
    def cancelled(self) -> int:
        if self._taken is not None:
            self._read_pending()
        return self._cancel

    # ------------------------------------------------------------ replies

    @property
    def frame(self) -> memoryview:
        return self._out.data

    def reply_space(self, size: int) -> memoryview:
        if size > self.max_payload:
            if self.tether is not None:
                raise OverflowError(f"a reply of {size:,} bytes is more than this Jupyter Server's lesspy relay "
                                    f"passes (LessPyRelay.max_message_size = {self.max_payload:,})")
            raise OverflowError(f"a reply of {size:,} bytes exceeds the {self.max_payload:,} bytes a message may "
                                "carry")
        if len(self._out) < HEADER_SIZE + size:       # (only this lane's thread writes and sends it)
            grown = max(HEADER_SIZE + size, min(2 * len(self._out), HEADER_SIZE + self.max_payload))
            self._out = _aligned(grown)
        return self._out.data[HEADER_SIZE:HEADER_SIZE + size]

    def publish(self, seq: int, length: int, status: int) -> None:
        """Send the reply: its header, written before the payload in the same buffer, and the payload in one
        write. The request counts as answered first, so that the next REQUEST, which may follow at once, is
        never taken for one that came while a call ran."""
        out = self._out
        pack_message_header(out.data, seq, length, status, self.session)
        with self._lock:
            self._taken = None
        view = out.data[:HEADER_SIZE + length]
        try:
            with self._send_lock:
                framing = self.framing
                self._send_all(framing.take_waiting() + [framing.prefix(HEADER_SIZE + length), view])
        except (OSError, ValueError):            # the client went away (or the lane closed): it reads no reply
            self._eof = True

    def _send_all(self, parts: Sequence[Union[bytes, memoryview]]) -> None:
        """Send `parts` in order with as few writes as the socket allows (under the send lock); waits while the
        peer reads slowly (close() wakes this)."""
        views = [memoryview(p).cast("B") for p in parts if len(p)]
        while views:
            try:
                n = self.sock.sendmsg(views, [], _NOSIGNAL)
            except _WOULD_BLOCK:
                self._writable.select()
                continue
            while n:
                if n >= len(views[0]):
                    n -= len(views.pop(0))
                else:
                    views[0] = views[0][n:]
                    n = 0
        if isinstance(self.framing, WebSocketFraming):
            self.framing.last_send = time.monotonic()

    def tick(self, now: float) -> None:
        """The watchdog's turn (a handed-over websocket only): a KEEPALIVE every heartbeat, never while an
        earlier frame is unsent (never blocks: the lane's thread may be sending)."""
        framing = self.framing
        if not isinstance(framing, WebSocketFraming) or self.closed:
            return
        if peer_gone(self.sock):
            self.goodbye = (ws.CLOSE_GOING_AWAY, "the client stopped acknowledging")
            self._eof = True
            self.close()                      # wakes the lane thread (a call running is cancelled: disconnected)
            return
        if framing.unsent or framing.outbox:
            framing.flush(blocking=False)
        elif now - framing.last_send >= self.heartbeat:
            framing.send_nowait(self._keepalive)

    @property
    def _keepalive(self) -> bytes:
        message = keepalive_message(self.session)
        return ws.frame_header(ws.OP_BINARY, len(message)) + message

    # ------------------------------------------------------------ trouble and the end

    def cut_since_last_look(self) -> bool:
        return False                              # no file to cut

    def cut(self, mend: bool) -> Optional[Tuple[ErrorKind, str]]:
        return None

    def connection_lost(self) -> bool:
        """The client closed the connection (or broke the rules, which closed the lane). While a call runs, the
        CANCEL messages waiting are taken on the way (an end of stream may stand behind them)."""
        if self.tether is not None and self._tether_gone():
            return True
        if self._taken is not None:
            self._read_pending()
        elif not (self._eof or self.closed):
            try:
                self._eof = self.sock.recv(1, socket.MSG_PEEK) == b""
            except _WOULD_BLOCK:
                pass
            except OSError:
                self._eof = True
        return self._eof or self.closed

    def _tether_gone(self) -> bool:
        """Whether the relay's end of the tether closed (Jupyter Server stopped): the websocket closes too."""
        assert self.tether is not None
        try:
            gone = self.tether.recv(1, socket.MSG_PEEK) == b""
        except _WOULD_BLOCK:
            return False
        except (OSError, ValueError):
            gone = True
        if gone:
            self.goodbye = (ws.CLOSE_GOING_AWAY, "Jupyter Server stopped (its lesspy relay is gone)")
            self._eof = True
            self.close()
        return gone

    def close(self) -> None:
        """Wake the lane thread (a shut-down socket reads as ended, and takes no more writes) and stop taking
        requests. A handed-over websocket gets a close frame first (when no other frame is being sent)."""
        if self.closed:
            return
        self.closed = True
        framing = self.framing
        if isinstance(framing, WebSocketFraming) and not framing.close_sent:
            framing.close_sent = True
            framing.outbox.append(ws.close_frame(*self.goodbye))
            framing.flush(blocking=False)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def ended(self) -> None:
        pass                                      # nothing outlives the lane that would need to know

    def dispose(self, stopping: bool) -> None:
        self.closed = True
        for sel in (self._readable, self._writable):
            sel.close()
        if self.tether is not None:
            self.tether.close()
            _drain(self.sock)        # unread bytes would make close() reset the connection before the close frame
        try:
            self.sock.close()
        except OSError:
            pass

    def forget_in_child(self) -> None:
        """Close this copy of the socket without shutdown(), which would end the parent's connection too."""
        if self.tether is not None:
            self.tether.close()
        try:
            self.sock.close()
        except OSError:
            pass

    # ------------------------------------------------------------ speed paths: none (base.py)

    def result_place(self) -> Any:
        return None

    def result_array(self, shape: tuple, dtype: Any) -> np.ndarray:
        return np.empty(shape, dtype)

    def place_reply(self, outcome: Any) -> Optional[int]:
        return None

    def keep_arguments(self, payload: Optional[memoryview], spans: Any) -> None:
        pass                                      # kept views keep the request buffer: see _request_buffer


# ------------------------------------------------------------------------------------------------ the hand-off

HANDOFF = struct.Struct("<II")      # after the fd: the JSON's length, then the early bytes' length
HANDOFF_NEEDS_UNIX = "a websocket is handed over on a Unix socket only"     # the refusal on a TCP notify socket
HANDOFF_TIMEOUT = 5.0
MAX_HANDOFF_JSON = 4096


class Handoff(NamedTuple):
    """A websocket connection the relay handed over, and what the relay told about it."""

    sock: socket.socket
    name: str
    max_message: int
    heartbeat_ms: int
    early: bytes


def handoff_bytes(name: str, max_message: int, heartbeat_ms: int, early: bytes) -> bytes:
    """What the relay sends with the descriptor (after the WEBSOCKET handshake was accepted)."""
    info = json.dumps({"session": name, "max_message": max_message, "heartbeat_ms": heartbeat_ms}).encode("utf-8")
    return HANDOFF.pack(len(info), len(early)) + info + early


def receive_handoff(sock: socket.socket, timeout: float = HANDOFF_TIMEOUT) -> Handoff:
    """Receive the descriptor of a websocket's TCP connection on `sock`, a connection that proved the session's
    key. Raises ValueError (not a TCP stream socket, a bad description) or OSError."""
    deadline = time.monotonic() + timeout        # for all of it: the server's accept loop waits here
    sock.settimeout(timeout)
    data, fds, flags, _ = socket.recv_fds(sock, HANDOFF.size + MAX_HANDOFF_JSON, 1)
    received = [socket.socket(fileno=fd) for fd in fds]
    try:
        if flags & getattr(socket, "MSG_CTRUNC", 0) or len(received) != 1:
            raise ValueError(f"a hand-off carries one descriptor ({len(received)} came)")
        tcp = received[0]
        kind = tcp.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        proto = tcp.getsockopt(socket.SOL_SOCKET, getattr(socket, "SO_PROTOCOL", 38))
        if tcp.family not in (socket.AF_INET, socket.AF_INET6) or kind != socket.SOCK_STREAM or \
                proto != socket.IPPROTO_TCP:
            raise ValueError("a hand-off carries a TCP connection only")
        while len(data) < HANDOFF.size:
            data += _recv_some(sock, HANDOFF.size - len(data), deadline)
        info_len, early_len = HANDOFF.unpack_from(data)
        if info_len > MAX_HANDOFF_JSON or early_len > MAX_MESSAGE_PAYLOAD:
            raise ValueError("a hand-off description too long")
        need = HANDOFF.size + info_len + early_len
        while len(data) < need:
            data += _recv_some(sock, need - len(data), deadline)
        info = json.loads(data[HANDOFF.size:HANDOFF.size + info_len])
        max_message, heartbeat_ms = int(info["max_message"]), int(info["heartbeat_ms"])
        if not (0 <= max_message <= MAX_MESSAGE_PAYLOAD and 10 <= heartbeat_ms <= 3_600_000):
            raise ValueError("a hand-off's max_message or heartbeat_ms out of range")
        handoff = Handoff(tcp, str(info["session"]), max_message, heartbeat_ms,
                          bytes(data[HANDOFF.size + info_len:need]))
    except BaseException:
        for s in received:
            s.close()
        raise
    finally:
        sock.settimeout(None)
    return handoff


def _recv_some(sock: socket.socket, n: int, deadline: float) -> bytes:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the hand-off did not arrive in time")
    sock.settimeout(left)
    chunk = sock.recv(min(n, 1 << 20))
    if not chunk:
        raise ConnectionError("the relay closed the connection during the hand-off")
    return chunk


DEAD_PEER_MS = 10_000      # bytes sent and no acknowledgement at all for this long: the peer is gone
_TCP_INFO = struct.Struct("<24xI28xI")    # struct tcp_info: tcpi_unacked (offset 24), tcpi_last_ack_recv (56)


def peer_gone(sock: socket.socket) -> bool:
    """Whether the TCP peer stopped acknowledging anything for DEAD_PEER_MS while data waits for its ACK (the
    KEEPALIVEs guarantee data goes out). A client that merely stops reading still acknowledges (zero-window
    probes), so it is not taken for gone; TCP_USER_TIMEOUT would be (Linux counts a zero window against it)."""
    option = getattr(socket, "TCP_INFO", None)
    if option is None:
        return False
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, option, 104)
    except OSError:
        return False
    if len(info) < _TCP_INFO.size:
        return False
    unacked, last_ack_ms = _TCP_INFO.unpack_from(info)
    return unacked > 0 and last_ack_ms > DEAD_PEER_MS


def tcp_keepalive(sock: socket.socket, heartbeat_ms: int) -> None:
    """A peer that vanished is noticed within seconds: TCP keepalive probes while nothing is in flight
    (peer_gone covers data in flight)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 2), ("TCP_KEEPINTVL", 1), ("TCP_KEEPCNT", 3)):
        option = getattr(socket, name, None)
        if option is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
            except OSError:
                pass


def _drain(sock: socket.socket, limit: int = 1 << 20) -> None:
    """Read (and drop) what the peer sent that nobody will read, without blocking."""
    try:
        sock.setblocking(False)
        while limit > 0:
            chunk = sock.recv(min(limit, 65536))
            if not chunk:
                return
            limit -= len(chunk)
    except OSError:
        pass
