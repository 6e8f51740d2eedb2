"""One lane: a verified connection and its two mappings, carrying one call at a time (PROTOCOL.md section 2).

Each lane has its own server thread. It waits for the next request by looking at the request's sequence
word, spinning a few microseconds and then yielding the CPU between looks (a call that follows the previous
one closely is picked up with no system call; one lane spins at a time, since spinning holds the GIL), then
blocks on the socket; it runs the call through the server's executor and hands the reply over the same way.
Only the lane's own caller can overwrite what its mappings hold.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple

import numpy as np

from . import handshake
from .celloutput import forget_thread_parent
from .dispatch import Outcome, close_stream, invoke, next_item, stopped_error
from .interrupts import CallCancelled, RunningCall, current_lane
from .mapping import Mapping, full_fence
from .protocol import (DTYPE_CODES, HEADER_SIZE, REQUEST_CALL, REQUEST_CLOSE, REQUEST_NEXT, REQUEST_STREAM,
                       SEQUENCE_OFFSET, STATUS_END, STATUS_ERROR, STATUS_OK, ErrorKind, ErrorReply, Tag, decode_call,
                       error_size, fit_error, value_size, write_error, write_value)

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("lesspy_kernel")
_U64 = struct.Struct("<Q")
_SEQ_WORD = SEQUENCE_OFFSET // 8
SPIN_SECONDS = 5e-6         # how long a lane thread spins for the next request, then it yields the CPU between
YIELD_SECONDS = 150e-6      # looks (at once back when nobody else wants it) until this, before it blocks
_spinner = threading.Lock()  # held by the one lane thread that spins; the others block at once
# scalar results written with one pack (tag + value), as protocol.write_value would write them
_SMALL = {Tag.INT32: struct.Struct("<Bi"), Tag.INT64: struct.Struct("<Bq"), Tag.FLOAT64: struct.Struct("<Bd"),
          Tag.FLOAT32: struct.Struct("<Bf"), Tag.BOOL: struct.Struct("<B?")}
_SMALL_TYPES = frozenset((int, float, bool))


class Lane:
    """One lane of one client. Created by the server after the handshake; runs until its socket closes."""

    def __init__(self, server: "Server", lane_id: int, client: Any, sock: socket.socket, capacity: int) -> None:
        self.server = server
        self.id = lane_id
        self.client = client
        self.sock = sock
        folder = server.folder
        self.req = Mapping(folder.lane_file(lane_id, "req"), capacity, server.session)
        try:
            self.resp = Mapping(folder.lane_file(lane_id, "resp"), capacity, server.session)
        except BaseException:
            self.req.close(unlink=True)
            raise
        self.call = RunningCall(self)
        self.busy = False
        self.closed = False
        self._last = 0
        self._result_at: Optional[int] = None     # address of a result_array() made during the current call
        self._pending = (0, 0, STATUS_OK)         # the reply to publish: sequence, length, status
        self.stream: Optional[Tuple[str, Any, Any]] = None    # (name, item type, iterator) of an open stream
        self.thread = threading.Thread(target=self._run, name=f"lesspy-lane-{lane_id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    # ------------------------------------------------------------ waiting for a request

    def _next_request(self) -> Optional[int]:
        """The sequence of the next request, or None when the connection closed. Spin, then block."""
        words = self.req.words
        last = self._last
        if _spinner.acquire(False):                  # one lane at a time spins: spinning holds the GIL
            try:
                now = time.perf_counter()
                spin_end, yield_end = now + SPIN_SECONDS, now + YIELD_SECONDS
                while True:                          # spin: a call that follows closely costs no system call
                    seq = words[_SEQ_WORD]
                    if seq != last:
                        return seq
                    now = time.perf_counter()
                    if now > spin_end:
                        if now > yield_end:
                            break
                        os.sched_yield()             # then yield: the client may share this CPU (and the GIL goes)
            finally:
                _spinner.release()
        while True:
            self.req.waiting = 1
            full_fence()
            seq = words[_SEQ_WORD]
            if seq != last:
                self.req.waiting = 0
                return seq
            try:
                byte = self.sock.recv(1)
            except OSError:
                byte = b""
            self.req.waiting = 0
            if byte == handshake.CALL:
                continue
            if byte == handshake.SHUTDOWN:
                self.client.shutdown_requested = True
                continue
            if byte:
                log.warning("lane %d: byte 0x%02x on the notify socket is not CALL or SHUTDOWN; closing the lane",
                            self.id, byte[0])
            return None

    # ------------------------------------------------------------ serving

    def _run(self) -> None:
        forget_thread_parent()
        try:
            while not self.server.stopping:
                seq = self._next_request()
                if seq is None or self.server.stopping:
                    break
                self._serve(seq)
        except Exception:
            log.exception("lane %d failed", self.id)
        finally:
            self.server.lane_closed(self)

    def _serve(self, seq: int) -> None:
        self._last = seq
        self.busy = True
        self.call.prepare(seq)
        try:
            outcome = self._run_call(seq)
            self._write_reply(seq, outcome)
            self.server.record(outcome)       # observers copy arguments before the client may reuse the lane
        finally:
            self.call.finish()
            self.busy = False
        self._publish_reply()

    def _run_call(self, seq: int) -> Outcome:
        try:
            length, status = self.req.read_request()
            if status in (REQUEST_NEXT, REQUEST_CLOSE):
                return self._stream_request(seq, status)
            if status not in (REQUEST_CALL, REQUEST_STREAM):
                raise ValueError(f"request status {status} is not 0 (call), 1 (next), 2 (close) or 3 (stream)")
            call = decode_call(self.req.payload(length))
        except Exception as e:  # FrameError, or anything a hostile frame provokes: never fatal
            return failed("?", ErrorKind.MALFORMED_REQUEST, f"the request could not be decoded ({e}): the client "
                          "and server disagree about docs/PROTOCOL.md; use matching versions")
        self._drop_stream()                       # a new call: the client gave up on an open stream
        if self.req.cancel == seq:
            return failed(call.name, ErrorKind.CANCELLED, f"{call.name} was not run: its caller abandoned it first")
        streaming = status == REQUEST_STREAM
        outcome = self._execute(call.name, lambda reason: invoke(call, self.server.namespace, reason, streaming))
        if streaming and outcome.stream is not None:
            self.stream = (call.name, call.returns, outcome.stream)
        return outcome

    def _stream_request(self, seq: int, status: int) -> Outcome:
        """NEXT: the next item of the open stream; CLOSE: close it (its generator's finally blocks run)."""
        if self.stream is None:
            if status == REQUEST_CLOSE:
                return Outcome("?", Tag.NONE, [], time.time(), end=True)
            return failed("?", ErrorKind.SERVER_ERROR, "no stream is open on this lane (it ended, failed, or was "
                          "closed): call the method again for a new one")
        name, returns, iterator = self.stream
        if self.req.cancel == seq:
            status = REQUEST_CLOSE
        if status == REQUEST_CLOSE:
            self.stream = None
            out = self._execute(name, lambda reason: _closed(name, iterator))
            return out
        outcome = self._execute(name, lambda reason: next_item(name, returns, iterator, reason))
        if outcome.stream is None:
            self.stream = None
        return outcome

    def _execute(self, name: str, body: Callable[[Callable[[], Optional[str]]], Outcome]) -> Outcome:
        """Run `body` through the server's executor with this lane's call marked running (so it can be
        cancelled before it starts or interrupted while it runs)."""
        control = self.call

        def run_call() -> Outcome:
            if not control.begin():
                return failed(name, ErrorKind.CANCELLED, f"{name} was not run: {control.reason or 'its caller abandoned it'}")
            try:
                return body(lambda: control.reason)
            finally:
                control.end()

        try:
            return self.server.executor.run(run_call, self.server.stop_event)
        except (CallCancelled, KeyboardInterrupt) as e:
            out = failed(name, ErrorKind.CANCELLED, "")
            out.error = stopped_error(name, e, control.reason)
            return out
        except BaseException as e:  # the executor gave up (server stopping) or something of ours broke
            if self.server.stopping:
                return failed(name, ErrorKind.INTERRUPTED, f"the server is stopping, so {name} did not run")
            return failed(name, ErrorKind.SERVER_ERROR, f"the server could not run {name}: {e}")

    def _drop_stream(self) -> None:
        if self.stream is not None:
            _, _, iterator = self.stream
            self.stream = None
            try:
                close_stream(iterator)
            except BaseException:
                log.exception("closing an abandoned stream failed")

    def _write_reply(self, seq: int, outcome: Outcome) -> None:
        """Encode the result (or the error) into the response mapping, growing it when needed. Never raises."""
        try:
            if outcome.end and outcome.error is None:
                self._pending = (seq, 0, STATUS_END)
                return
            if outcome.error is None:
                if self._result_at is not None and self._write_in_place(outcome):
                    return
                if type(outcome.returns) is Tag:          # the fast paths: None, or a scalar in one pack
                    if outcome.value is None and outcome.returns is Tag.NONE:
                        self.resp.view[HEADER_SIZE] = Tag.NONE
                        self._pending = (seq, 1, STATUS_OK)
                        return
                    small = _SMALL.get(outcome.returns)
                    if small is not None and type(outcome.value) in _SMALL_TYPES:
                        small.pack_into(self.resp.view, HEADER_SIZE, outcome.returns, outcome.value)
                        self._pending = (seq, small.size, STATUS_OK)
                        return
                size = value_size(outcome.value, outcome.returns)
                self.resp.grow(size)
                write_value(self.resp.payload(size), outcome.value, outcome.returns)
                self._pending = (seq, size, STATUS_OK)
                return
        except OverflowError as e:
            outcome.error = ErrorReply(ErrorKind.PAYLOAD_TOO_LARGE, "", f"the result of {outcome.name} is too large "
                                       f"to send: {e}; return it in parts", "")
        except Exception as e:  # a bug of ours, or no memory to grow: tell the caller, keep serving
            log.exception("encoding the result of %s failed", outcome.name)
            outcome.error = ErrorReply(ErrorKind.SERVER_ERROR, type(e).__name__,
                                       f"lesspy could not encode the result of {outcome.name}: {e}", "")
        finally:
            self._result_at = None
        self._write_error(seq, outcome)

    def _write_error(self, seq: int, outcome: Outcome) -> None:
        e = outcome.error
        assert e is not None
        try:
            parts = fit_error(e.python_type, e.message, e.traceback)
            self.resp.grow(error_size(*parts))
            n = write_error(self.resp.payload(self.resp.payload_capacity), e.kind, *parts)
        except Exception:  # even the error could not be written: send the shortest one there is
            log.exception("writing the error reply of %s failed", outcome.name)
            n = write_error(self.resp.payload(self.resp.payload_capacity), ErrorKind.SERVER_ERROR, "",
                            "lesspy could not write the error reply; see the server log", "")
        self._pending = (seq, n, STATUS_ERROR)

    def _publish_reply(self) -> None:
        seq, length, status = self._pending
        self.resp.publish(seq, length, status)
        full_fence()
        if self.resp.waiting:
            try:
                self.sock.sendall(handshake.REPLY)
            except OSError:
                log.info("lane %d: the client went away before its reply", self.id)

    # ------------------------------------------------------------ the result-in-the-mapping fast path

    def result_array(self, shape: tuple, dtype: Any) -> np.ndarray:
        """An array placed where the reply's NDARRAY data goes: returning it sends it without a copy."""
        dt = np.dtype(dtype)
        if dt.name not in DTYPE_CODES:
            raise TypeError(f"dtype {dt} cannot be sent to C#; use one of {', '.join(DTYPE_CODES)}")
        shape = tuple(int(s) for s in shape)
        offset = _ndarray_data_offset(len(shape))
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        self.resp.grow(offset + nbytes)
        start = HEADER_SIZE + offset
        arr = np.frombuffer(self.resp.view[start:start + nbytes], dtype=dt).reshape(shape)
        self._result_at = self.resp.address + start
        return arr

    def _write_in_place(self, outcome: Outcome) -> bool:
        """Send a result made by result_array() by writing only its header. False: use the normal path."""
        value = outcome.value
        if outcome.returns != Tag.NDARRAY or not isinstance(value, np.ndarray):
            return False
        if value.__array_interface__["data"][0] != self._result_at or not value.flags.c_contiguous \
                or value.dtype.name not in DTYPE_CODES or value.dtype.byteorder == ">":
            if _overlaps(value, self.resp):
                outcome.value = np.array(value)          # it lives in the mapping but elsewhere: copy it out first
            return False
        head = bytes([Tag.NDARRAY, DTYPE_CODES[value.dtype.name], value.ndim]) + \
            b"".join(_U64.pack(s) for s in value.shape)
        offset = _ndarray_data_offset(value.ndim)
        payload = self.resp.payload(offset)
        payload[:len(head)] = head
        payload[len(head):offset] = bytes(offset - len(head))
        self._pending = (self.call.sequence, offset + value.nbytes, STATUS_OK)
        return True

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        """Wake the lane thread (shutdown makes a blocked recv return) and close the socket."""
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def release(self) -> None:
        """After the thread ended: close an open stream and the socket, unmap and remove the files."""
        self._drop_stream()
        try:
            self.sock.close()
        except OSError:
            pass
        self.req.close(unlink=True)
        self.resp.close(unlink=True)

    def connection_lost(self) -> bool:
        """True when the client closed the connection (only asked while a call runs: nobody reads it then)."""
        try:
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError, socket.timeout):
            return False
        except OSError:
            return True


def _closed(name: str, iterator: Any) -> Outcome:
    out = Outcome(name, Tag.NONE, [], time.time(), end=True)
    try:
        close_stream(iterator)
    except BaseException as e:  # an exception from the generator's finally: tell the caller
        out.end = False
        out.error = ErrorReply(ErrorKind.PYTHON_ERROR, type(e).__name__, f"closing {name}'s stream failed: {e}", "")
    return out


def failed(name: str, kind: ErrorKind, message: str) -> Outcome:
    return Outcome(name, Tag.NONE, [], time.time(), error=ErrorReply(kind, "", message, ""))


def _ndarray_data_offset(ndim: int) -> int:
    """Where a top-level NDARRAY reply's data starts: its header padded to a multiple of 64."""
    head = 3 + 8 * ndim
    return (head + 63) // 64 * 64


def _overlaps(value: np.ndarray, mapping: Mapping) -> bool:
    start = value.__array_interface__["data"][0]
    base = mapping.address
    return base <= start < base + mapping.capacity


def result_array(shape: Any, dtype: Any = np.float64) -> np.ndarray:
    """A NumPy array to fill and return from a function C# calls: it lives in the response mapping, so
    returning it (as an NdArray result) costs no copy. Outside a lesspy call it is a plain new array."""
    lane = current_lane()
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    if lane is None:
        return np.empty(shape, dtype=dtype)
    return lane.result_array(tuple(shape), dtype)
