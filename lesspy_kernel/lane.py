"""One lane: a verified connection and its two mappings, carrying one call at a time (PROTOCOL.md section 2).

Each lane has its own server thread, which blocks on the lane's socket. One thread spins: it looks at request
sequence words, a few microseconds busily and then yielding the CPU between looks, so a call that follows the
previous one closely is picked up with no system call (only one spins, since spinning holds the GIL). On a
headless server that is a thread of its own which watches every lane and serves their calls itself: a call then
costs no thread wake-up and no GIL handoff, which made many threads of small calls slower than one (Spinner).
In a kernel the lane threads take turns at spinning on their own lane. Whoever serves a lane's request holds
the lane's claim; only the lane's own caller can overwrite what its mappings hold.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple

import numpy as np

from . import allocator, handshake
from .dispatch import Outcome, close_stream, invoke, next_item, stopped_error
from .hooks import end_forked_child, thread_started
from .interrupts import CallCancelled, RunningCall, current_lane
from .mapping import DiskFull, Mapping, Truncated, fault_total, full_fence, guard_first
from .wire import (DTYPE_CODE_OF, DTYPE_CODES, FIRST_WORD, FLAG_REPLY_IN_REQUEST, HEADER_SIZE, REQUEST_CALL,
                   REQUEST_CLOSE, REQUEST_NEXT, REQUEST_STREAM, SEQUENCE_WORD, SESSION_WORD, STATUS_END, STATUS_ERROR,
                   STATUS_OK, ErrorKind, ErrorReply, Tag, TextError, decode_call, error_size, fit_error,
                   ndarray_data_offset, value_size, write_error, write_placed_ndarray, write_reply_in_request,
                   write_scalar_reply, write_value)

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("lesspy_kernel")
SPIN_SECONDS = 5e-6         # how long a lane thread spins for the next request, then it yields the CPU between
YIELD_SECONDS = 150e-6      # looks (at once back when nobody else wants it) until this, before it blocks
RESCUE_AFTER = 0.002        # a call the spinner serves for longer than this gives the other lanes back to their threads
HEADER_LOOK = 1.0           # a blocked lane thread looks at its request header this often (a cut zeroes `waiting`)
_NDARRAY = Tag.NDARRAY          # an enum member is a class attribute lookup each time


class Spinner:
    """The one thread of a server that spins, and (headless) the lanes it watches and serves.

    Headless (`serve_all`), a thread of its own spins over every lane: while it runs it "covers" them (their
    `waiting` words are 0, so clients send no wake-up byte) and serves their requests itself, one per lane per
    round; a call then costs no thread wake-up and no GIL handoff. When nothing came for YIELD_SECONDS it
    uncovers them (`waiting` = 1, a fence, then a last look at each sequence word: a lane whose request came
    meanwhile has its thread woken, since its client saw `waiting` 0 and sent no byte) and sleeps until a lane
    thread, woken by a byte, kicks it. A call that runs long on the spinner would hold up the covered lanes, so
    the watchdog uncovers them after RESCUE_AFTER (`rescue`) and their own threads serve them meanwhile.

    In a kernel (calls run on its main thread) the lane threads take turns at the role instead, each spinning on
    its own lane (`acquire`).
    """

    def __init__(self, server: "Server", serve_all: bool) -> None:
        self.server = server
        self.serve_all = serve_all
        self.lanes: Tuple["Lane", ...] = ()       # the server's open lanes (the server keeps this current)
        self.active = False                       # the spinning thread covers the lanes right now
        self.epoch = 0                            # bumped when the watchdog uncovers the lanes under a long call
        self.serving = False                      # the spinner is running a call
        self.served = 0                           # calls the spinner began (the watchdog tells a long one by it)
        self._seen = (0, 0.0)                     # the watchdog's: (served, when it first saw that call running)
        self._kick = threading.Event()
        self._lock = threading.Lock()
        self._turn = threading.Lock()             # a kernel's lane threads: the one spinning holds it
        self.thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------ a kernel: lane threads take turns

    def acquire(self) -> bool:
        return self._turn.acquire(False)

    def release(self) -> None:
        self._turn.release()

    # ------------------------------------------------------------ headless: one thread serves every lane

    def start(self) -> None:
        if self.serve_all:
            self.thread = threading.Thread(target=self._run, name="lesspy-spinner", daemon=True)
            self.thread.start()

    def kick(self) -> None:
        """A lane thread served a call that came with a byte: let the spinner cover the lanes again."""
        if self.serve_all and not self.active:
            self._kick.set()

    def stop(self) -> None:
        self._kick.set()

    def _run(self) -> None:
        thread_started()
        server = self.server
        while not server.stopping:
            self._kick.wait()
            self._kick.clear()
            if server.stopping:
                break
            try:
                self._spin()
            except CallCancelled:                # a cancel that arrived as a call ended: it is over
                pass
            except Exception:
                log.exception("the spinning thread failed a round; the lanes' own threads serve meanwhile")

    def _spin(self) -> None:
        server = self.server
        lanes: Tuple[Lane, ...] = ()
        epoch = -1
        self.active = True
        try:
            now = time.perf_counter()
            spin_end, yield_end = now + SPIN_SECONDS, now + YIELD_SECONDS
            while not server.stopping:
                if self.lanes is not lanes or self.epoch != epoch:
                    lanes, epoch = self._cover()
                served = False
                for lane in lanes:
                    try:
                        pending = lane.req.words[SEQUENCE_WORD] != lane._last
                    except ValueError:           # remapped or closed under us: look again next round
                        continue
                    if pending:
                        self.served += 1
                        self.serving = True
                        served = lane.serve_if_pending() or served
                        self.serving = False
                now = time.perf_counter()
                if served:
                    spin_end, yield_end = now + SPIN_SECONDS, now + YIELD_SECONDS
                elif now > spin_end:
                    if now > yield_end:
                        break
                    os.sched_yield()             # the client may share this CPU (and the GIL goes)
        finally:
            with self._lock:
                self.active = False
                self._uncover(lanes)

    def _cover(self) -> Tuple[Tuple["Lane", ...], int]:
        """Take over the current lanes' wake-ups; returns them and the epoch they were covered in."""
        with self._lock:
            lanes = self.lanes
            for lane in lanes:
                lane.covered = True
                try:
                    lane.req.waiting = 0
                except ValueError:                # closed under us: it leaves the set soon
                    pass
            return lanes, self.epoch

    def _uncover(self, lanes: Tuple["Lane", ...]) -> None:
        for lane in lanes:
            lane.covered = False
            try:
                lane.req.waiting = 1
            except ValueError:
                pass
        full_fence()
        for lane in lanes:
            if lane.has_request():
                lane.wake()

    def rescue(self) -> None:
        """The watchdog's part, every RESCUE_INTERVAL while the spinner is active: when it has been running the
        same call for RESCUE_AFTER, give the other lanes back to their threads."""
        served, now = self.served, time.monotonic()
        if not self.serving:
            return
        if self._seen[0] != served:
            self._seen = (served, now)
            return
        if now - self._seen[1] < RESCUE_AFTER:
            return
        with self._lock:
            if self.served != served or not self.serving or not self.active:
                return
            self._seen = (served, float("inf"))  # once per call
            self.epoch += 1                       # the spinner covers them again after this call
            self._uncover(self.lanes)


class Lane:
    """One lane of one client. Created by the server after the handshake; runs until its socket closes."""

    def __init__(self, server: "Server", lane_id: int, client: Any, sock: socket.socket,
                 mappings: Tuple[Mapping, Mapping]) -> None:
        self.server = server
        self.id = lane_id
        self.client = client
        self.sock = sock
        self.req, self.resp = mappings
        self.call = RunningCall(self)
        self.busy = False
        self.closed = False
        self._last = 0
        self.calls = 0                            # calls served here (the server's status adds them up)
        self._call_length = 0                     # payload length of the current call's request (0: not a call)
        # where the allocator puts a call's first big array (allocator.py); None where it cannot
        self.slot = allocator.slot_for(self.resp)
        self._call_slot: Optional[allocator.ResultSlot] = None   # the slot of the current call, if it uses one
        self._args: Optional[Tuple[memoryview, int, Any]] = None  # the call's request buffer, length and spans
        self._args_moved = False                  # kept argument views were moved out of the request file
        self._views = allocator.views_counter()  # how many views share a call's request buffer (None: no extension)
        if self._views is not None:
            allocator.watch_requests(self)        # a fork during a call copies its argument pages (allocator.py)
        self._client_closed = False               # the client closed the connection (release() frees every block)
        self._pending = (0, 0, STATUS_OK)         # the reply to publish: sequence, length, status
        self.stream: Optional[Tuple[str, Any, Any]] = None    # (name, item type, iterator) of an open stream
        self._stream_from = 0                     # the sequence of the call that opened it (cancel words >= it)
        self.covered = False                      # a spinner watches this lane's requests (see Spinner)
        self._send_failed = False                 # a wake-up byte could not be sent (logged once per lane)
        self._faults_seen = fault_total() if fault_total is not None else 0   # SIGBUS guard (mapping.py)
        self._cut_said = False                    # a cut lane file was logged and the lane is closing
        self._claim = threading.Lock()            # held by the thread serving a request of this lane
        self._wake_r, self._wake_w = socket.socketpair()      # lets a spinner wake this lane's blocked thread
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()          # the lane thread blocks on both sockets
        self._selector.register(self.sock, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self.thread = threading.Thread(target=self._run, name=f"lesspy-lane-{lane_id}", daemon=True)

    def start(self) -> None:
        """After the handshake's reply: from now on the socket is read only when a selector says so, and the
        watchdog peeks at it too (connection_lost), so it never blocks."""
        self.sock.setblocking(False)
        self.thread.start()

    @staticmethod
    def create_mappings(server: "Server", lane_id: int) -> Tuple[Mapping, Mapping]:
        """The two files of lane `lane_id`, created and mapped."""
        folder = server.folder
        req = Mapping(folder.lane_file(lane_id, "req"), server.capacity, server.session)
        try:
            return req, Mapping(folder.lane_file(lane_id, "resp"), server.capacity, server.session, reserved=True)
        except BaseException:
            req.close(unlink=True)
            raise

    # ------------------------------------------------------------ waiting for a request

    def has_request(self) -> bool:
        """A request this lane has not served yet is in its request mapping."""
        try:
            return self.req.words[SEQUENCE_WORD] != self._last and not self.closed
        except ValueError:                        # unmapped: the lane is closing
            return False

    def wake(self) -> None:
        """Make this lane's thread look at its request mapping (it may be blocked on its socket)."""
        try:
            self._wake_w.send(b"\0")
        except OSError:                           # a wake-up is already pending, or the lane is closing
            pass

    def _wait_for_request(self) -> bool:
        """Until this lane has a request (True) or its connection closed (False). Spin, then block."""
        spinner = self.server.spinner
        while True:
            if self.has_request():
                return True
            if not spinner.serve_all and spinner.acquire():
                try:
                    self._spin_own()
                finally:
                    spinner.release()
                if self.has_request():
                    return True
            if self._block() is None:
                return False

    def _spin_own(self) -> None:
        """Look at this lane's sequence word only (a notebook: its calls run on the kernel's main thread)."""
        words = self.req.words
        last = self._last
        now = time.perf_counter()
        spin_end, yield_end = now + SPIN_SECONDS, now + YIELD_SECONDS
        while words[SEQUENCE_WORD] == last:          # spin: a call that follows closely costs no system call
            now = time.perf_counter()
            if now > spin_end:
                if now > yield_end:
                    return
                os.sched_yield()                 # then yield: the client may share this CPU (and the GIL goes)

    def serve_if_pending(self, wait: bool = False) -> bool:
        """Serve this lane's request here if it has one: the spinner's way in (it skips a lane another thread is
        serving), and with `wait` the lane thread's (it waits for that thread, then finds nothing left)."""
        if not self._claim.acquire(wait):
            return False
        try:
            words = self.req.words
            try:
                seq = words[SEQUENCE_WORD]
            except ValueError:                   # unmapped: the lane is closing
                return False
            if seq == self._last or self.closed:
                return False
            if (seq < self._last or words[0] != FIRST_WORD or
                    words[SESSION_WORD] != self.server.session) and self._broken_header(seq):
                return False                      # cut inside its first page (zeros there): it closes
            self._serve(seq)
            return True
        finally:
            self._claim.release()

    def _block(self) -> Optional[bool]:
        """Block on the socket and the wake-up socket: True when a request is there, False when the spinner
        woke this thread (look again), None when the connection closed."""
        while True:
            announce = not self.covered          # a covering spinner looks for us: no byte needed (Spinner)
            if announce:
                self.req.waiting = 1
                full_fence()
            if self.has_request():
                if announce:
                    self.req.waiting = 0
                return True
            try:
                readable = [key.fileobj for key, _ in self._selector.select(HEADER_LOOK)]
            except (OSError, ValueError):
                return None
            if not readable:                 # a while without a byte: a request file cut inside its first page
                if announce:                 # reads zeros there, `waiting` too, so its client sends no byte
                    self.req.waiting = 0
                try:
                    if self.has_request():
                        return True
                    words = self.req.words
                    if (words[0] != FIRST_WORD or words[SESSION_WORD] != self.server.session) and \
                            self._broken_header(self._last):
                        return None
                except ValueError:           # unmapped: the lane is closing
                    return None
                continue
            if guard_first is not None:      # a handler installed meanwhile must not take this lane's SIGBUS
                guard_first()
            if announce:
                self.req.waiting = 0
            if self.sock in readable:
                try:
                    byte = self.sock.recv(1)
                except (BlockingIOError, InterruptedError):   # the watchdog took it (connection_lost)
                    byte = handshake.CALL
                except OSError:
                    byte = b""
                if byte == handshake.SHUTDOWN:
                    self.client.shutdown_requested = True
                elif byte == handshake.CALL and fault_total is not None and fault_total() != self._faults_seen \
                        and self._check_cut(self._last, answer=False):   # a request the cut file lost: it closes
                    return None
                elif byte != handshake.CALL:
                    if byte:
                        self.server.limiter.log("lanes closed for a wrong byte", logging.WARNING,
                                                "lane %d: byte 0x%02x on the notify socket is not CALL or SHUTDOWN; "
                                                "closing the lane", self.id, byte[0])
                    return None
            if self._wake_r in readable:
                try:
                    self._wake_r.recv(64)
                except OSError:
                    pass
                return False

    # ------------------------------------------------------------ serving

    def _run(self) -> None:
        thread_started()
        try:
            while not self.server.stopping:
                if not self._wait_for_request() or self.server.stopping:
                    break
                self.serve_if_pending(wait=True)
                self.server.spinner.kick()       # calls came with bytes: the spinner may take the lanes over
        except Exception:
            self.server.limiter.log("lanes failed", logging.ERROR, "lane %d failed", self.id, exc_info=True)
        finally:
            # before the server shuts the socket down itself: did the client close it (it reads no reply then)? Not
            # when the server closed the lane itself (`closed`: a cut file, a broken header): a socket it shut down
            # reads as closed too, while its client may still be reading the last reply (the error saying why), whose
            # blocks release() would then punch out from under it (zeros: "unknown error kind 0")
            self._client_closed = ((self.slot is not None and self.slot.moved) or self._args_moved) and \
                not self.closed and self.connection_lost()
            self.server.lane_closed(self)

    def _serve(self, seq: int) -> None:
        self._last = seq
        self.busy = True
        self.call.prepare(seq)
        try:
            outcome = self._run_call(seq)
            if self.server.forked:              # a child the call forked came back here: it ends (server.py)
                end_forked_child(outcome)
            if fault_total is not None and fault_total() != self._faults_seen and self._check_cut(seq, outcome=outcome):
                pass                            # a lane file was cut while the call ran: the reply says so instead
            else:
                self._write_reply(seq, outcome)
            self.calls += 1
            self.server.record(outcome)       # observers copy arguments before the client may reuse the lane
        finally:
            self.call.finish()
            self.busy = False
        del outcome                           # usually the last reference to its arguments and to a slot's result
        args, self._args = self._args, None
        if fault_total is not None and fault_total() != self._faults_seen:   # ~25 ns: a lane file was cut?
            self._check_cut(seq)              # (then the lane closes: no request comes to write over kept views)
        if args is not None and self._views is not None and self._views(args[0]) > 2 and not self._cut_said:
            self._keep_args(*args)            # an argument view is kept: before the client may write its next request
        self._publish_reply()
        if fault_total is not None and fault_total() != self._faults_seen and self._check_cut(seq):
            self._publish_reply()             # the reply's header went to a cut file: the error, to the mended one
        if self._cut_said:
            self.close()                      # its files are broken: the client opens a new lane
        slot = self._call_slot
        if slot is not None and slot.address:     # something else keeps it: it must not see the next reply
            slot.move_out()

    def _run_call(self, seq: int) -> Outcome:
        self._call_length = 0
        self._call_slot = None
        self._args = None
        try:
            length, status = self.req.read_request()
            if status in (REQUEST_NEXT, REQUEST_CLOSE):
                return self._stream_request(seq, status)
            if status not in (REQUEST_CALL, REQUEST_STREAM):
                raise ValueError(f"request status {status} is not 0 (call), 1 (next), 2 (close) or 3 (stream)")
            payload = self.req.arguments(length)   # read-only: argument views can never be made writable
            call = decode_call(payload)
            self._args = (payload, length, call.spans)
            del payload
            if status == REQUEST_CALL:
                self._call_length = length
        except Truncated as e:  # the client cut its request file: reading the frame would be a SIGBUS
            return failed("?", ErrorKind.MALFORMED_REQUEST, str(e))
        except TextError as e:  # a broken string (lone surrogate), not a protocol mismatch
            return failed("?", ErrorKind.MALFORMED_REQUEST, f"the request could not be decoded: {e}")
        except Exception as e:  # FrameError, or anything a hostile frame provokes: never fatal
            return failed("?", ErrorKind.MALFORMED_REQUEST, f"the request could not be decoded ({e}): the client "
                          "and server disagree about docs/PROTOCOL.md; use matching versions")
        self._drop_stream()                       # a new call: the client gave up on an open stream
        if self.req.cancel == seq:
            return failed(call.name, ErrorKind.CANCELLED, f"{call.name} was not run: its caller abandoned it first")
        streaming = status == REQUEST_STREAM
        slot = self.slot
        if call.returns is _NDARRAY and not streaming and slot is not None and allocator.has_room():
            try:
                self.resp.check_whole()          # arrays may be placed anywhere in it: a cut file would be a SIGBUS
            except Truncated as e:
                return failed(call.name, ErrorKind.SERVER_ERROR, f"{call.name} was not run: {e}")
            self._call_slot = slot
            return self._execute(call.name, lambda reason: self._invoke_in_slot(slot, call, reason))
        outcome = self._execute(call.name, lambda reason: invoke(call, self.server.namespace, reason, streaming))
        if streaming and outcome.stream is not None:
            self.stream = (call.name, call.returns, outcome.stream)
            self._stream_from = seq
            if self.req.cancel == seq:           # abandoned while its first item was made: that item stays here
                return self._stream_cancelled()
        return outcome

    def _keep_args(self, payload: memoryview, length: int, spans: Any) -> None:
        """Something still refers to views of this call's arguments (a global, a closure, a generator between
        stream items, a thread, a traceback...): they must keep their values, as NumPy arrays do, while the
        client writes its next requests into the same file. Their pages get private copies at the same
        addresses and the request file is mapped anew (allocator.move_request); no write to them is lost
        meanwhile. Called only with the extension (`_views`); without it (not Linux) they go on sharing the file
        (PROTOCOL.md: copy them there)."""
        try:
            allocator.move_request(self.req, length, spans)
            self._args_moved = True
        except Exception:      # no memory for the copies: they may see later requests; say so
            log.exception("lane %d: arguments kept after their call could not be given their own pages; they may "
                          "show later requests' bytes (copy them, np.array(a), to keep them)", self.id)

    def arguments_in_flight(self) -> Optional[Tuple[int, int]]:
        """(address, length) of the request pages the running call's argument views lie in, or None (a fork)."""
        args = self._args
        return None if args is None else (self.req.address, HEADER_SIZE + args[1])

    def _invoke_in_slot(self, slot: allocator.ResultSlot, call: Any, reason: Callable[[], Optional[str]]) -> Outcome:
        """Run the call with NumPy's big arrays allocated in the response mapping (on the executing thread)."""
        previous = slot.begin(allocator.expected_bytes(call.args))
        try:
            return invoke(call, self.server.namespace, reason, False)
        finally:
            slot.end(previous)

    def _stream_request(self, seq: int, status: int) -> Outcome:
        """NEXT: the next item of the open stream; CLOSE: close it (its generator's finally blocks run)."""
        if self.stream is None:
            if status == REQUEST_CLOSE:
                return Outcome("?", Tag.NONE, [], time.time(), end=True)
            return failed("?", ErrorKind.SERVER_ERROR, "no stream is open on this lane (it ended, failed, or was "
                          "closed): call the method again for a new one")
        name, returns, iterator = self.stream
        if self.req.cancel >= self._stream_from:  # the caller abandoned one of this stream's requests: it is over
            return self._stream_cancelled(end=status == REQUEST_CLOSE)
        if status == REQUEST_CLOSE:
            self.stream = None
            out = self._execute(name, lambda reason: _closed(name, iterator))
            return out
        outcome = self._execute(name, lambda reason: next_item(name, returns, iterator, reason))
        if outcome.stream is None:
            self.stream = None
        elif self.req.cancel >= self._stream_from:   # cancelled while this item was made: it is not sent
            return self._stream_cancelled()
        return outcome

    def _stream_cancelled(self, end: bool = False) -> Outcome:
        """Close the open stream, whose caller cancelled it (the cancel word names one of its requests), and
        answer with its end (`end`) or a CANCELLED error: a cancelled stream delivers no more items. Its generator
        is closed here even when the cancel already ended the request (the executor, not _execute)."""
        assert self.stream is not None
        name, _, iterator = self.stream
        self.stream = None
        executor = self.server.executor
        try:
            if executor.runs_inline:
                out = _closed(name, iterator)
            else:
                out = executor.run(lambda: _closed(name, iterator), self.server.stop_event)
        except BaseException:                     # a cancel that fired in the closing, or the server stopping
            out = None
        if out is not None and out.error is not None:
            return out
        if end:
            return Outcome(name, Tag.NONE, [], time.time(), end=True)
        return failed(name, ErrorKind.CANCELLED, f"the stream of {name} was cancelled by its caller: it sends no "
                      "more items (its generator was closed); call the method again for a new one")

    def _execute(self, name: str, body: Callable[[Callable[[], Optional[str]]], Outcome]) -> Outcome:
        """Run `body` through the server's executor with this lane's call marked running (so it can be
        cancelled before it starts or interrupted while it runs). `body` gets a callable that says why the
        call was stopped."""
        executor = self.server.executor
        try:
            if executor.runs_inline:                 # this thread runs it: no hand-over
                return self._controlled(name, body)
            return executor.run(lambda: self._controlled(name, body), self.server.stop_event)
        except (CallCancelled, KeyboardInterrupt) as e:
            out = failed(name, ErrorKind.CANCELLED, "")
            out.error = stopped_error(name, e, self.call.reason)
            return out
        except BaseException as e:  # the executor gave up (server stopping) or something of ours broke
            if self.server.stopping:
                return failed(name, ErrorKind.INTERRUPTED, f"the server is stopping, so {name} did not run")
            return failed(name, ErrorKind.SERVER_ERROR, f"the server could not run {name}: {e}")

    def _controlled(self, name: str, body: Callable[[Callable[[], Optional[str]]], Outcome]) -> Outcome:
        control = self.call
        if not control.begin():
            return failed(name, ErrorKind.CANCELLED, f"{name} was not run: {control.reason or 'its caller abandoned it'}")
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
                self.server.limiter.log("failures to close a stream", logging.ERROR,
                                        "closing an abandoned stream failed", exc_info=True)

    def _write_reply(self, seq: int, outcome: Outcome) -> None:
        """Encode the result (or the error) into the response mapping, growing it when needed. Never raises."""
        try:
            if outcome.end and outcome.error is None:
                self._pending = (seq, 0, STATUS_END)
                return
            slot = self._call_slot
            if slot is not None and slot.address:      # the call's first big array lives where replies go
                if outcome.error is None and _lies_at(outcome.value, slot.place, self.resp) and _unshared(outcome):
                    slot.last = outcome.value.nbytes
                    self._write_ndarray_header(outcome.value)
                    return
                slot.move_out()                        # kept elsewhere: it must not see this reply, nor C# it
            if outcome.error is None:
                if outcome.returns is _NDARRAY and self._call_length and self._write_in_request(outcome.value):
                    return
                if type(outcome.returns) is Tag:          # the fast paths: None, or a scalar in one pack
                    n = write_scalar_reply(self.resp.view, outcome.returns, outcome.value)
                    if n:
                        self._pending = (seq, n, STATUS_OK)
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
            if not isinstance(e, (DiskFull, Truncated)):    # those say all in the reply (and its log line)
                self.server.limiter.log("results not encoded", logging.ERROR, "encoding the result of %s failed",
                                        self.server.limiter.clip(outcome.name), exc_info=True)
            outcome.error = ErrorReply(ErrorKind.SERVER_ERROR, type(e).__name__,
                                       f"lesspy could not encode the result of {outcome.name}: {e}", "")
        self._write_error(seq, outcome)

    def _write_error(self, seq: int, outcome: Outcome) -> None:
        e = outcome.error
        assert e is not None
        try:
            parts = fit_error(e.python_type, e.message, e.traceback)
            self.resp.grow(error_size(*parts))
            n = write_error(self.resp.payload(self.resp.payload_capacity), e.kind, *parts)
        except Exception:  # even the error could not be written: send the shortest one there is
            self.server.limiter.log("error replies not written", logging.ERROR, "writing the error reply of %s failed",
                                    self.server.limiter.clip(outcome.name), exc_info=True)
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
            except OSError as e:                 # said once per lane: a client that stops reading fails every send
                if not self._send_failed:
                    self._send_failed = True
                    log.info("lane %d: the reply's wake-up byte could not be sent (%s): the client went away or "
                             "stopped reading its notify socket (said once per lane)", self.id,
                             "its socket buffer is full" if isinstance(e, BlockingIOError) else e)

    # ------------------------------------------------------------ the result-in-the-mapping fast path

    def result_array(self, shape: tuple, dtype: Any) -> np.ndarray:
        """The call's first result_array() is placed where the reply's NDARRAY data goes (allocator.py): returning
        it sends it without a copy. Any other (a second one, or in a call whose result is not an NdArray, or a
        stream) is a plain array, copied into the reply like any value."""
        dt = np.dtype(dtype)
        if dt.name not in DTYPE_CODES:
            raise TypeError(f"dtype {dt} cannot be sent to C#; use one of {', '.join(DTYPE_CODES)}")
        shape = tuple(int(s) for s in shape)
        slot = self._call_slot
        if slot is None:
            return np.empty(shape, dt)
        return slot.result_array(shape, dt)

    def _write_ndarray_header(self, value: np.ndarray) -> None:
        """Send `value`, whose data already lies where a top-level NDARRAY reply puts it (_lies_at), by writing
        only the header in front of it."""
        n = write_placed_ndarray(self.resp.payload(ndarray_data_offset(value.ndim)), value)
        self._pending = (self.call.sequence, n, STATUS_OK)

    def _write_in_request(self, value: Any) -> bool:
        """An NdArray result that is an argument, or a contiguous part of one, already lies in the request file:
        when the client allows it (request flag), the reply says where instead of copying it. False: not so."""
        if type(value) is not np.ndarray or value.dtype not in DTYPE_CODE_OF or not value.flags.c_contiguous \
                or value.nbytes == 0:
            return False
        offset = value.__array_interface__["data"][0] - (self.req.address + HEADER_SIZE)
        if offset < 0 or offset + value.nbytes > self._call_length or offset % value.dtype.itemsize \
                or not self.req.flags & FLAG_REPLY_IN_REQUEST:
            return False
        n = write_reply_in_request(self.resp.payload(self.resp.payload_capacity), value, offset)
        self._pending = (self.call.sequence, n, STATUS_OK)
        return True

    # ------------------------------------------------------------ closing

    def _check_cut(self, seq: int, answer: bool = True, outcome: Optional[Outcome] = None) -> bool:
        """The SIGBUS guard (mapping.py) mended a fault since the last look; True when it was in this lane's
        mappings: the client cut a lane file while the lane was open. What was read from it (the request, the
        arguments) or written to it (the reply) is then not what the other side has, so the call is answered with
        an error instead (in the response file, given its size back first if it was the one cut), it is logged
        once, and the lane is to be closed (its files are broken); the server goes on serving the others.
        `answer`: write that error (only while serving the lane's request, holding its claim). `outcome`: the call's,
        before its reply is written (a fault while it ran): it gets that error, and its result is not written (moving
        a result array out of a cut file could not map it again, and what was written into it is zeros)."""
        assert fault_total is not None
        self._faults_seen = fault_total()
        allocator.note_moved_faults()             # an array kept after its call lost pages: logged once
        cut = [m for m in (self.req, self.resp) if m.faulted()]
        if not cut:
            return False
        names = " and ".join(m.path.name for m in cut)
        try:
            short = any(os.fstat(m.fileno()).st_size < m.capacity for m in cut)
        except OSError:
            short = True
        if short:
            message = (f"{names} {'was' if len(cut) == 1 else 'were'} cut by another process while lane {self.id} "
                       "was open: lesspy met pages past the file's end (a SIGBUS, which it caught) and found or left "
                       "zeros there, so this call's request, arguments or reply cannot be trusted and its result was "
                       "not sent. Lane files belong to lesspy: never truncate or replace them. The lane is closed; "
                       "open a new one")
        else:                                     # not shorter: its file system could not give a page (full, failing)
            message = (f"the file system of {names} could not give lesspy a page of it while lane {self.id} was open "
                       "(a SIGBUS, which it caught: the file system is full or failing, or another process cut the "
                       "file and extended it again), so this call's request, arguments or reply cannot be trusted "
                       "and its result was not sent. Free space in the work folder's file system (or check it); the "
                       "lane is closed; open a new one")
        try:
            if answer and self.resp.faulted():    # the error goes where the client reads it
                self.resp.restore_size()
                if self.slot is not None and self.slot.address:
                    self.slot.move_out()      # a result array lives in it: never unmapped under it
                self.resp.mend(self.server.session)
            if answer:
                kind = ErrorKind.MALFORMED_REQUEST if self.req.faulted() else ErrorKind.SERVER_ERROR
                error = failed("?", kind, message)
                if outcome is not None:
                    outcome.error = error.error
                    error.name = outcome.name
                self._write_error(seq, error)
        except Exception as e:                # no room to give the file its size back: the closed lane says it
            log.warning("lane %d: the error reply about its cut file could not be written (%s)", self.id, e)
        if not self._cut_said:
            self._cut_said = True
            log.warning("lane %d of client pid %s: %s", self.id, getattr(self.client, "pid", "?"), message)
        return True

    def _broken_header(self, seq: int) -> bool:
        """The request header no longer says what the client wrote (True; the lane is closed): a sequence that went
        backwards (or is 0 after a call), or a magic word or session id cut short (zeros from some byte on). A file
        cut inside its first page reads as zeros past the cut without any SIGBUS (Linux zeroes the rest of that
        page), so this is how such a cut shows; answering it would write over the last reply for a request nobody
        made, and the client would wait for ever (`waiting` reads 0 too). The lane is closed at once (its client
        gets a closed connection), logged once. False: other bytes in the magic word (a client that breaks the
        protocol), answered with MALFORMED_REQUEST as before; a changed session id is not the server's concern."""
        words = self.req.words
        if seq >= self._last and not _cut_short(words[0], FIRST_WORD) and \
                not _cut_short(words[SESSION_WORD], self.server.session):
            return False
        try:
            size = os.lseek(self.req.fileno(), 0, os.SEEK_END)
        except OSError:
            size = -1
        name = self.req.path.name
        if 0 <= size < self.req.capacity:
            message = (f"{name} was cut by another process while lane {self.id} was open (it is {size:,} byte"
                       f"{'' if size == 1 else 's'} long, not {self.req.capacity:,}): its header reads as zeros past "
                       f"the cut (sequence {seq} after {self._last}), so no request can be read from it. Lane files "
                       "belong to lesspy: never truncate or replace them. The lane is closed; open a new one")
        else:
            message = (f"the header of {name} was written over while lane {self.id} was open (sequence {seq} after "
                       f"{self._last}, or its magic word or session id changed): another process wrote into the "
                       "lane file. Lane files belong to lesspy: never write into them but through the protocol. The "
                       "lane is closed; open a new one")
        if not self._cut_said:
            self._cut_said = True
            log.warning("lane %d of client pid %s: %s", self.id, getattr(self.client, "pid", "?"), message)
        self.close()
        return True

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
        """After the thread ended: close an open stream and the sockets, unmap and remove the files. Waits for a
        spinner that is serving this lane's last request."""
        with self._claim:
            self.closed = True
            self._drop_stream()
            self._selector.close()
            for sock in (self.sock, self._wake_r, self._wake_w):
                try:
                    sock.close()
                except OSError:
                    pass
        if self.slot is not None and self.slot.moved and not self.server.stopping:
            # kept results moved out of it pin none of its blocks, nor the last reply's unless a client may read it
            self.slot.release(0 if self._client_closed else HEADER_SIZE + self._pending[1])
        if self._args_moved and self._client_closed and not self.server.stopping:
            allocator.free_blocks(self.req)       # kept arguments moved out of it pin none of its blocks
        self.req.close(unlink=True)
        self.resp.close(unlink=True)

    def connection_lost(self) -> bool:
        """True when the client closed the connection (the watchdog asks while a call runs). Wake-up bytes the
        lane thread has not read (it found the request without them) may stand before the end of the stream:
        they are only hints, so they are taken here (a SHUTDOWN is noted) and the stream looked at again."""
        try:
            waiting = self.sock.recv(64, socket.MSG_PEEK)
            if waiting and self.sock.recv(len(waiting)) == waiting:
                if handshake.SHUTDOWN in waiting:
                    self.client.shutdown_requested = True
                waiting = self.sock.recv(1, socket.MSG_PEEK)
            return waiting == b""
        except (BlockingIOError, InterruptedError, socket.timeout):
            return False
        except OSError:
            return True


def _cut_short(value: int, expected: int) -> bool:
    """A header word that is `expected` up to some byte and zeros after it (the first byte included): what a cut
    inside the header leaves (little-endian words)."""
    if value == expected:
        return False
    for n in range(8):
        if value == expected & ((1 << (8 * n)) - 1):
            return True
    return False


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


def _lies_at(value: Any, address: Optional[int], resp: Mapping) -> bool:
    """`value` can be sent by writing only an NDARRAY header: its data is at `address`, where that header puts it."""
    return (address is not None and type(value) is np.ndarray and value.__array_interface__["data"][0] == address
            and value.dtype in DTYPE_CODE_OF and value.flags.c_contiguous
            and address - resp.address - HEADER_SIZE == ndarray_data_offset(value.ndim)
            and address - resp.address + value.nbytes <= resp.capacity)


def _unshared(outcome: Outcome) -> bool:
    """Nothing but the outcome refers to its array result, nor to the array it is a view of, nor weakly: no code
    can write it while C# reads it (it is freed once the reply is out). Otherwise C# gets a copy."""
    value = outcome.value
    # references: outcome.value, `value`, getrefcount's argument, and outcome.result when it is the same array (no
    # local holds outcome.result: one would be a reference more, and every such result was moved out and copied)
    if sys.getrefcount(value) != 3 + (outcome.result is value) or weakref.getweakrefcount(value):
        return False
    base = value.base
    if base is None:
        return True
    of_result = outcome.result is base
    return (type(base) is np.ndarray and base.base is None and weakref.getweakrefcount(base) == 0
            and sys.getrefcount(base) == 3 + of_result)      # value.base, `base`, the argument (+ outcome.result)


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
