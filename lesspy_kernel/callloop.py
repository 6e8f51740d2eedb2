"""The call loop: what runs one lane's calls, one at a time, over any Transport (transport/base.py).

A request goes transport -> codec -> dispatch -> codec -> transport: `serve_if_pending` takes it, `_run_call`
reads and decodes it and runs it through the server's executor, `_write_reply` encodes the outcome where the
transport says, and `_serve` publishes it. Streams (a C# IEnumerable) keep their generator here between requests.

The lane's thread waits on its transport and serves what comes; a headless server's spinner may serve a mapped
lane's request instead (transport/spinner.py). Whoever serves a request holds the lane's claim; only the lane's
own caller can overwrite what its transport holds.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

import numpy as np

from . import allocator
from .dispatch import Outcome, close_stream, invoke, next_item, stopped_error
from .executors import Executor
from .hooks import end_forked_child, thread_started
from .interrupts import CallCancelled, RunningCall, StopReason, current_lane
from .loglimit import LogLimiter
from .namespaces import Namespace
from .wire import (REQUEST_CALL, REQUEST_CLOSE, REQUEST_NEXT, REQUEST_STREAM, STATUS_END, STATUS_ERROR, STATUS_OK,
                   ErrorKind, ErrorReply, Tag, TextError, decode_call, error_size, fit_error, value_size, write_error,
                   write_scalar_reply, write_value)
from .transport.base import Transport, TransportError

Reason = Callable[[], Optional[StopReason]]
_NDARRAY = Tag.NDARRAY      # an enum member is a class attribute lookup each time


@dataclass
class LaneHost:
    """What a lane needs from the server that made it; the server builds one for all its lanes."""

    namespace: Namespace                     # where a call's function is looked up
    executor: Executor                       # on which thread a call runs
    stop_event: threading.Event              # set when the server is stopping
    limiter: LogLimiter                      # log lines a client can cause
    record: Callable[[Outcome], None]        # count a call and show it to the observers (before its reply goes)
    lane_closed: Callable[["CallLoop"], None]  # a lane's thread ends: forget it and dispose of it
    forked: bool = False                     # True in a child forked from the serving process (server.py)


class CallLoop:
    """One lane's calls: its transport, its running call, its open stream, and the thread that serves it."""

    def __init__(self, host: LaneHost, transport: Transport) -> None:
        self.host = host
        self.transport = transport
        self.id = transport.id
        self.call = RunningCall(self)
        self.busy = False
        self.calls = 0                            # calls served here (the server's status adds them up)
        self._pending = (0, 0, STATUS_OK)         # the reply to publish: sequence, length, status
        self.stream: Optional[Tuple[str, Any, Any]] = None    # (name, item type, iterator) of an open stream
        self._stream_from = 0                     # the sequence of the call that opened it (cancel words >= it)
        self._args: Optional[Tuple[memoryview, Any]] = None   # the decoded call's request payload and spans
        self._claim = threading.Lock()            # held by the thread serving a request of this lane
        self.thread = threading.Thread(target=self._run, name=f"lesspy-lane-{self.id}", daemon=True)

    @property
    def client(self) -> Any:
        return self.transport.client

    def start(self) -> None:
        self.transport.start()
        self.thread.start()

    # ------------------------------------------------------------ serving

    def _run(self) -> None:
        thread_started()
        stop = self.host.stop_event
        try:
            while not stop.is_set():
                if not self.transport.wait_for_request() or stop.is_set():
                    break
                self.serve_if_pending(wait=True)
        except Exception:
            self.host.limiter.log("lanes failed", logging.ERROR, "lane %d failed", self.id, exc_info=True)
        finally:
            self.transport.ended()
            self.host.lane_closed(self)

    def serve_if_pending(self, wait: bool = False) -> bool:
        """Serve this lane's request here if it has one: the spinner's way in (it skips a lane another thread is
        serving), and with `wait` the lane thread's (it waits for that thread, then finds nothing left)."""
        if not self._claim.acquire(wait):
            return False
        try:
            seq = self.transport.take_request()
            if not seq:
                return False
            self._serve(seq)
            return True
        finally:
            self._claim.release()

    def _serve(self, seq: int) -> None:
        """Run request `seq` and answer it: its reply (or the error of a cut lane file) is written, the observers
        see the call, argument views it left get their own pages, then the reply is published."""
        transport = self.transport
        self.busy = True
        self.call.prepare(seq)
        try:
            outcome = self._run_call(seq)
            if self.host.forked:                # a child the call forked came back here: it ends (server.py)
                end_forked_child(outcome)
            if not (transport.cut_since_last_look() and self._answer_cut(seq, outcome)):
                self._write_reply(seq, outcome)   # (a lane file cut while the call ran: the reply says so instead)
            self.calls += 1
            self.host.record(outcome)         # observers copy arguments before the client may reuse the lane
        finally:
            self.call.finish()
            self.busy = False
        del outcome                           # usually the last reference to its arguments and to a slot's result
        args, self._args = self._args, None
        if transport.cut_since_last_look():   # then the lane closes: no request comes to write over kept views
            self._answer_cut(seq)
        payload, spans = args if args is not None else (None, None)
        transport.keep_arguments(payload, spans)   # kept argument views: before the client writes its next request
        transport.publish(*self._pending)
        if transport.cut_since_last_look() and self._answer_cut(seq):
            transport.publish(*self._pending)   # the reply's header went to a cut file: the error, to the mended one
        if transport.broken:
            transport.close()                 # its files are broken: the client opens a new lane

    def _run_call(self, seq: int) -> Outcome:
        transport = self.transport
        self._args = None
        try:
            kind, payload = transport.read_request()
            if kind in (REQUEST_NEXT, REQUEST_CLOSE):
                return self._stream_request(seq, kind)
            if kind not in (REQUEST_CALL, REQUEST_STREAM):
                raise ValueError(f"request status {kind} is not 0 (call), 1 (next), 2 (close) or 3 (stream)")
            call = decode_call(payload)
            self._args = (payload, call.spans)
            del payload
        except TransportError as e:  # e.g. the client cut its request file: reading the frame would be a SIGBUS
            return failed("?", ErrorKind.MALFORMED_REQUEST, str(e))
        except TextError as e:  # a broken string (lone surrogate), not a protocol mismatch
            return failed("?", ErrorKind.MALFORMED_REQUEST, f"the request could not be decoded: {e}")
        except Exception as e:  # FrameError, or anything a hostile frame provokes: never fatal
            return failed("?", ErrorKind.MALFORMED_REQUEST, f"the request could not be decoded ({e}): the client "
                          "and server disagree about docs/PROTOCOL.md; use matching versions")
        self._drop_stream()                       # a new call: the client gave up on an open stream
        if transport.cancelled == seq:
            return failed(call.name, ErrorKind.CANCELLED, f"{call.name} was not run: its caller abandoned it first")
        streaming = kind == REQUEST_STREAM
        try:
            place = transport.result_place() if call.returns is _NDARRAY and not streaming else None
        except TransportError as e:
            return failed(call.name, ErrorKind.SERVER_ERROR, f"{call.name} was not run: {e}")
        if place is not None:
            return self._execute(call.name, lambda reason: self._invoke_placed(place, call, reason))
        outcome = self._execute(call.name, lambda reason: invoke(call, self.host.namespace, reason, streaming))
        if streaming and outcome.stream is not None:
            self.stream = (call.name, call.returns, outcome.stream)
            self._stream_from = seq
            if transport.cancelled == seq:       # abandoned while its first item was made: that item stays here
                return self._stream_cancelled()
        return outcome

    def _invoke_placed(self, place: Any, call: Any, reason: Reason) -> Outcome:
        """Run the call with NumPy's big arrays allocated where the reply carries its result (on the executing
        thread; allocator.ResultSlot)."""
        previous = place.begin(allocator.expected_bytes(call.args))
        try:
            return invoke(call, self.host.namespace, reason, False)
        finally:
            place.end(previous)

    def _stream_request(self, seq: int, kind: int) -> Outcome:
        """NEXT: the next item of the open stream; CLOSE: close it (its generator's finally blocks run)."""
        if self.stream is None:
            if kind == REQUEST_CLOSE:
                return Outcome("?", Tag.NONE, [], time.time(), end=True)
            return failed("?", ErrorKind.SERVER_ERROR, "no stream is open on this lane (it ended, failed, or was "
                          "closed): call the method again for a new one")
        name, returns, iterator = self.stream
        if self.transport.cancelled >= self._stream_from:   # the caller abandoned one of its requests: it is over
            return self._stream_cancelled(end=kind == REQUEST_CLOSE)
        if kind == REQUEST_CLOSE:
            self.stream = None
            return self._execute(name, lambda reason: _closed(name, iterator))
        outcome = self._execute(name, lambda reason: next_item(name, returns, iterator, reason))
        if outcome.stream is None:
            self.stream = None
        elif self.transport.cancelled >= self._stream_from:   # cancelled while this item was made: not sent
            return self._stream_cancelled()
        return outcome

    def _stream_cancelled(self, end: bool = False) -> Outcome:
        """Close the open stream, whose caller cancelled it (the cancel word names one of its requests), and
        answer with its end (`end`) or a CANCELLED error: a cancelled stream delivers no more items. Its generator
        is closed here even when the cancel already ended the request (the executor, not _execute)."""
        assert self.stream is not None
        name, _, iterator = self.stream
        self.stream = None
        executor = self.host.executor
        try:
            if executor.runs_inline:
                out = _closed(name, iterator)
            else:
                out = executor.run(lambda: _closed(name, iterator), self.host.stop_event)
        except BaseException:                     # a cancel that fired in the closing, or the server stopping
            out = None
        if out is not None and out.error is not None:
            return out
        if end:
            return Outcome(name, Tag.NONE, [], time.time(), end=True)
        return failed(name, ErrorKind.CANCELLED, f"the stream of {name} was cancelled by its caller: it sends no "
                      "more items (its generator was closed); call the method again for a new one")

    def _execute(self, name: str, body: Callable[[Reason], Outcome]) -> Outcome:
        """Run `body` through the server's executor with this lane's call marked running (so it can be
        cancelled before it starts or interrupted while it runs). `body` gets a callable that says why the
        call was stopped."""
        executor = self.host.executor
        try:
            if executor.runs_inline:                 # this thread runs it: no hand-over
                return self._controlled(name, body)
            return executor.run(lambda: self._controlled(name, body), self.host.stop_event)
        except (CallCancelled, KeyboardInterrupt) as e:
            out = failed(name, ErrorKind.CANCELLED, "")
            out.error = stopped_error(name, e, self.call.reason)
            return out
        except BaseException as e:  # the executor gave up (server stopping) or something of ours broke
            if self.host.stop_event.is_set():
                return failed(name, ErrorKind.INTERRUPTED, f"the server is stopping, so {name} did not run")
            return failed(name, ErrorKind.SERVER_ERROR, f"the server could not run {name}: {e}")

    def _controlled(self, name: str, body: Callable[[Reason], Outcome]) -> Outcome:
        control = self.call
        if not control.begin():
            # never started: CANCELLED whatever stopped it (StopReason.error_kind is for a call that ran)
            return failed(name, ErrorKind.CANCELLED, f"{name} was not run: {StopReason.of(control.reason)}")
        try:
            return body(control.why)
        finally:
            control.end()

    def _drop_stream(self) -> None:
        if self.stream is not None:
            _, _, iterator = self.stream
            self.stream = None
            try:
                close_stream(iterator)
            except BaseException:
                self.host.limiter.log("failures to close a stream", logging.ERROR,
                                      "closing an abandoned stream failed", exc_info=True)

    # ------------------------------------------------------------ the reply

    def _write_reply(self, seq: int, outcome: Outcome) -> None:
        """Write the reply to `outcome` where the transport says, and note it for publishing; never raises. A
        result that cannot be encoded is answered with an error saying why."""
        if outcome.end and outcome.error is None:
            self._pending = (seq, 0, STATUS_END)
            return
        try:
            placed = self.transport.place_reply(outcome)   # always asked: a result placed for it must not outlive it
            if outcome.error is None:
                self._pending = (seq, self._encode_value(outcome) if placed is None else placed, STATUS_OK)
                return
        except OverflowError as e:
            outcome.error = ErrorReply(ErrorKind.PAYLOAD_TOO_LARGE, "", f"the result of {outcome.name} is too large "
                                       f"to send: {e}; return it in parts", "")
        except Exception as e:  # a bug of ours, or no room for it: tell the caller, keep serving
            outcome.error = self._not_encoded(outcome, e)
        self._write_error(seq, outcome)

    def _encode_value(self, outcome: Outcome) -> int:
        """Encode the result into the reply; its length. None or a scalar takes one pack."""
        if type(outcome.returns) is Tag:
            n = write_scalar_reply(self.transport.frame, outcome.returns, outcome.value)
            if n:
                return n
        size = value_size(outcome.value, outcome.returns)
        write_value(self.transport.reply_space(size), outcome.value, outcome.returns)
        return size

    def _not_encoded(self, outcome: Outcome, e: Exception) -> ErrorReply:
        """The error for a result that could not be encoded (logged, unless the transport's message says all)."""
        if not isinstance(e, TransportError):
            self.host.limiter.log("results not encoded", logging.ERROR, "encoding the result of %s failed",
                                  self.host.limiter.clip(outcome.name), exc_info=True)
        return ErrorReply(ErrorKind.SERVER_ERROR, type(e).__name__,
                          f"lesspy could not encode the result of {outcome.name}: {e}", "")

    def _write_error(self, seq: int, outcome: Outcome) -> None:
        e = outcome.error
        assert e is not None
        try:
            parts = fit_error(e.python_type, e.message, e.traceback)
            n = write_error(self.transport.reply_space(error_size(*parts)), e.kind, *parts)
        except Exception:  # even the error could not be written: send the shortest one there is
            self.host.limiter.log("error replies not written", logging.ERROR, "writing the error reply of %s failed",
                                  self.host.limiter.clip(outcome.name), exc_info=True)
            parts = ("", "lesspy could not write the error reply; see the server log", "")
            n = write_error(self.transport.reply_space(error_size(*parts)), ErrorKind.SERVER_ERROR, *parts)
        self._pending = (seq, n, STATUS_ERROR)

    def _answer_cut(self, seq: int, outcome: Optional[Outcome] = None) -> bool:
        """The transport found the frames in flight broken (a lane file cut): answer with its error instead of
        the reply (`outcome`: the call's, before its reply is written; it gets that error, and its result is not
        written: moving a result array out of a cut file could not map it again, and what was written into it is
        zeros). True when so; the lane then closes."""
        found = self.transport.cut(mend=True)
        if found is None:
            return False
        kind, message = found
        error = failed("?", kind, message)
        if outcome is not None:
            outcome.error = error.error
            error.name = outcome.name
        try:
            self._write_error(seq, error)
        except Exception as e:                # no room to give the file its size back: the closed lane says it
            logging.getLogger("lesspy_kernel").warning(
                "lane %d: the error reply about its cut file could not be written (%s)", self.id, e)
        return True

    # ------------------------------------------------------------ the result in the reply (a speed path)

    def result_array(self, shape: tuple, dtype: Any) -> np.ndarray:
        return self.transport.result_array(shape, dtype)

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        self.transport.close()

    def dispose(self, stopping: bool) -> None:
        """After the thread ended: close an open stream and the transport. Waits for a spinner that is serving
        this lane's last request."""
        with self._claim:
            self.transport.closed = True
            self._drop_stream()
            self.transport.dispose(stopping)


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


def result_array(shape: Any, dtype: Any = np.float64) -> np.ndarray:
    """A NumPy array to fill and return from a function C# calls. The first one of a call whose result is an
    NdArray lives in the response mapping, so returning it costs no copy; any other (a second one, or in a call
    that returns a tuple, a list or a stream, or outside a lesspy call) is a plain new array."""
    lane = current_lane()
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    if lane is None:
        return np.empty(shape, dtype=dtype)
    return lane.result_array(tuple(shape), dtype)
