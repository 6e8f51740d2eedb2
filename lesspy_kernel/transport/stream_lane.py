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

import logging
import selectors
import socket
import sys
import threading
from typing import Any, Optional, Tuple

import numpy as np

from ..loglimit import LogLimiter
from ..wire import (FLAG_REPLY_IN_REQUEST, HEADER_SIZE, MAX_MESSAGE_PAYLOAD, NDARRAY_ALIGN, ErrorKind,
                    FrameError, MessageHeader, check_client_message, pack_message_header, read_message_header)

INITIAL_PAYLOAD = 64 * 1024     # a lane's first request and reply buffers (grown to what a message needs)
_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)     # a closed peer is an error of the send, never a SIGPIPE
_WOULD_BLOCK = (BlockingIOError, InterruptedError)


def _aligned(size: int) -> np.ndarray:
    """`size` bytes starting at a multiple of NDARRAY_ALIGN: a payload at byte 64 keeps its arrays aligned."""
    raw = np.empty(size + NDARRAY_ALIGN - 1, np.uint8)
    start = -raw.ctypes.data % NDARRAY_ALIGN
    return raw[start:start + size]


class StreamLane:
    """The transport of one lane over a connected stream socket that carries messages."""

    def __init__(self, lane_id: int, client: Any, sock: socket.socket, session: int, limiter: LogLimiter) -> None:
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
        self._readable = selectors.DefaultSelector()
        self._readable.register(sock, selectors.EVENT_READ)
        self._writable = selectors.DefaultSelector()
        self._writable.register(sock, selectors.EVENT_WRITE)

    def start(self) -> None:
        """After the handshake's reply: the socket never blocks from now on (the watchdog reads it too); the lane
        thread waits in a selector."""
        self.sock.setblocking(False)

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
        sock = self.sock
        try:
            h = self._incoming
            if h is None:
                n = sock.recv_into(memoryview(self._head)[self._have:], HEADER_SIZE - self._have)
            else:
                n = sock.recv_into(self._req.data[HEADER_SIZE + self._got:HEADER_SIZE + h.length])
        except _WOULD_BLOCK:
            return False
        except OSError:
            n = 0
        if not n:
            self._eof = True
            return False
        if h is not None:
            self._got += n
            if self._got == h.length:
                self._incoming, self._ready = None, h
                return False
            return True
        self._have += n
        if self._have < HEADER_SIZE:
            return True
        self._have = 0
        return self._on_header(header_only)

    def _on_header(self, header_only: bool) -> bool:
        """A whole header came: a CANCEL is noted, a REQUEST starts (or is whole, without a payload)."""
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

    def _violation(self, what: str) -> bool:
        """A message broke the rules: log it (a client can cause this: limited) and close the lane."""
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
            try:
                self._readable.select()
            except (OSError, ValueError):              # the selector was closed: the lane is gone
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
            while view:
                try:
                    n = self.sock.send(view, _NOSIGNAL)
                except _WOULD_BLOCK:
                    self._writable.select()       # the peer reads slowly: wait (close() wakes this)
                    continue
                view = view[n:]
        except (OSError, ValueError):            # the client went away (or the lane closed): it reads no reply
            self._eof = True

    # ------------------------------------------------------------ trouble and the end

    def cut_since_last_look(self) -> bool:
        return False                              # no file to cut

    def cut(self, mend: bool) -> Optional[Tuple[ErrorKind, str]]:
        return None

    def connection_lost(self) -> bool:
        """The client closed the connection (or broke the rules, which closed the lane). While a call runs, the
        CANCEL messages waiting are taken on the way (an end of stream may stand behind them)."""
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

    def close(self) -> None:
        """Wake the lane thread (a shut-down socket reads as ended, and takes no more writes) and stop taking
        requests."""
        if self.closed:
            return
        self.closed = True
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
        try:
            self.sock.close()
        except OSError:
            pass

    def forget_in_child(self) -> None:
        """Close this copy of the socket without shutdown(), which would end the parent's connection too."""
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
