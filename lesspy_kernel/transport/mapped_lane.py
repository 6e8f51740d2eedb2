"""A lane over two memory-mapped files and a notify socket (PROTOCOL.md section 2): today's Transport.

The request file carries the client's frames, the response file the server's; each header's sequence word hands a
frame over, and its `waiting` word says whether the other side blocks on the socket and needs a wake-up byte.
The lane's thread spins for a request, then blocks on the socket (and on a wake-up pair a Spinner uses); a
headless server's Spinner may serve the lane instead (spinner.py).

The speed paths are this transport's: a result computed straight into the response file (allocator.py), a result
that lies in the request (NDARRAY_IN_REQUEST), argument views kept after their call given their own pages.

A lane file another process cut is caught here (the SIGBUS guard, mapping.py, and a header cut short), reported
to the call loop through `cut`, and the lane closes.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import sys
import time
import weakref
from typing import Any, Optional, Tuple

import numpy as np

from .. import allocator
from ..loglimit import LogLimiter
from ..wire import (CANCEL_WORD, DTYPE_CODE_OF, DTYPE_CODES, FIRST_WORD, FLAG_REPLY_IN_REQUEST, MAGIC_WORD,
                    REQUEST_CALL, SEQUENCE_WORD, SESSION_WORD, ErrorKind, Tag, ndarray_data_offset, payload_offset,
                    write_placed_ndarray, write_reply_in_request)
from ..wire import handshake
from .mapping import Mapping, fault_total, full_fence, guard_first
from .spinner import SPIN_SECONDS, YIELD_SECONDS, Spinner

log = logging.getLogger("lesspy_kernel")
HEADER_LOOK = 1.0           # a blocked lane thread looks at its request header this often (a cut zeroes `waiting`)
_NDARRAY = Tag.NDARRAY      # an enum member is a class attribute lookup each time


class MappedLane:
    """The transport of one lane: its two mappings, its notify socket and its thread's ways of waiting."""

    def __init__(self, lane_id: int, client: Any, sock: socket.socket, mappings: Tuple[Mapping, Mapping],
                 session: int, spinner: Spinner, limiter: LogLimiter) -> None:
        self.id = lane_id
        self.client = client                      # server.Client: its pid, and whether it asked for a SHUTDOWN
        self.sock = sock
        self.req, self.resp = mappings
        self.session = session
        self.spinner = spinner
        self.limiter = limiter
        self.closed = False
        self.covered = False                      # a spinner watches this lane's requests (see Spinner)
        self.last_taken = 0                       # the sequence of the last request taken (the spinner reads it)
        self._waited = False                      # the lane's thread waited for a request before
        self._call_length = 0                     # payload length of the current call's request (0: not a call)
        # where the allocator puts a call's first big array (allocator.py); None where it cannot
        self.slot = allocator.slot_for(self.resp)
        self._call_slot: Optional[allocator.ResultSlot] = None   # the slot of the current call, if it uses one
        self._in_flight = 0                       # payload length of the request a running call's arguments lie in
        self._args_moved = False                  # kept argument views were moved out of the request file
        self._views = allocator.views_counter()  # how many views share a call's request buffer (None: no extension)
        if self._views is not None:
            allocator.watch_requests(self)        # a fork during a call copies its argument pages (allocator.py)
        self._client_closed = False               # the client closed the connection (dispose frees every block)
        self._last_reply = 0                      # payload length of the last reply published
        self._send_failed = False                 # a wake-up byte could not be sent (logged once per lane)
        self._faults_seen = fault_total() if fault_total is not None else 0   # SIGBUS guard (mapping.py)
        self.broken = False                       # a cut lane file was logged and the lane is closing
        self._wake_r, self._wake_w = socket.socketpair()      # lets a spinner wake this lane's blocked thread
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()          # the lane thread blocks on both sockets
        self._selector.register(self.sock, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)

    @staticmethod
    def create_mappings(folder: Any, lane_id: int, capacity: int, session: int) -> Tuple[Mapping, Mapping]:
        """The two files of lane `lane_id` in the work folder, created and mapped."""
        req = Mapping(folder.lane_file(lane_id, "req"), capacity, session)
        try:
            return req, Mapping(folder.lane_file(lane_id, "resp"), capacity, session, reserved=True)
        except BaseException:
            req.close(unlink=True)
            raise

    def start(self) -> None:
        """After the handshake's reply: from now on the socket is read only when a selector says so, and the
        watchdog peeks at it too (connection_lost), so it never blocks."""
        self.sock.setblocking(False)

    # ------------------------------------------------------------ waiting for a request

    def has_request(self) -> bool:
        """A request this lane has not taken yet is in its request mapping."""
        try:
            return self.req.words[SEQUENCE_WORD] != self.last_taken and not self.closed
        except ValueError:                        # unmapped: the lane is closing
            return False

    def wake(self) -> None:
        """Make this lane's thread look at its request mapping (it may be blocked on its socket)."""
        try:
            self._wake_w.send(b"\0")
        except OSError:                           # a wake-up is already pending, or the lane is closing
            pass

    def wait_for_request(self) -> bool:
        """Until this lane has a request (True) or its connection closed (False). Spin, then block."""
        spinner = self.spinner
        if self._waited:
            spinner.kick()                       # calls came with bytes: the spinner may take the lanes over
        self._waited = True
        while True:
            if self.has_request():
                return True
            if not spinner.serve_all and spinner.take_turn():
                try:
                    self._spin_own()
                finally:
                    spinner.end_turn()
                if self.has_request():
                    return True
            if self._block() is None:
                return False

    def _spin_own(self) -> None:
        """Look at this lane's sequence word only (a notebook: its calls run on the kernel's main thread)."""
        words = self.req.words
        last = self.last_taken
        now = time.perf_counter()
        spin_end, yield_end = now + SPIN_SECONDS, now + YIELD_SECONDS
        while words[SEQUENCE_WORD] == last:      # spin: a call that follows closely costs no system call
            now = time.perf_counter()
            if now > spin_end:
                if now > yield_end:
                    return
                os.sched_yield()                 # then yield: the client may share this CPU (and the GIL goes)

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
                    if (words[MAGIC_WORD] != FIRST_WORD or words[SESSION_WORD] != self.session) and \
                            self._broken_header(self.last_taken):
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
                elif byte == handshake.CALL and self.cut_since_last_look() and self.cut(mend=False) is not None:
                    return None                  # a request the cut file lost: it closes
                elif byte != handshake.CALL:
                    if byte:
                        self.limiter.log("lanes closed for a wrong byte", logging.WARNING,
                                         "lane %d: byte 0x%02x on the notify socket is not CALL or SHUTDOWN; "
                                         "closing the lane", self.id, byte[0])
                    return None
            if self._wake_r in readable:
                try:
                    self._wake_r.recv(64)
                except OSError:
                    pass
                return False

    # ------------------------------------------------------------ a request

    def take_request(self) -> int:
        """The sequence of a request not taken yet, 0 when none (or its header broke: the lane closes)."""
        words = self.req.words
        try:
            seq = words[SEQUENCE_WORD]
        except ValueError:                       # unmapped: the lane is closing
            return 0
        if seq == self.last_taken or self.closed:
            return 0
        if (seq < self.last_taken or words[MAGIC_WORD] != FIRST_WORD or
                words[SESSION_WORD] != self.session) and self._broken_header(seq):
            return 0                              # cut inside its first page (zeros there): it closes
        self.last_taken = seq
        return seq

    def read_request(self) -> Tuple[int, memoryview]:
        """(kind, payload) of the request just taken. The payload is read-only: argument views can never be made
        writable (Mapping.arguments)."""
        self._call_length = 0
        self._call_slot = None
        self._in_flight = 0
        length, kind = self.req.read_request()
        payload = self.req.arguments(length)
        self._in_flight = length
        if kind == REQUEST_CALL:
            self._call_length = length
        return kind, payload

    @property
    def cancelled(self) -> int:
        return self.req.words[CANCEL_WORD]

    # ------------------------------------------------------------ the reply

    @property
    def frame(self) -> memoryview:
        return self.resp.view

    def reply_space(self, size: int) -> memoryview:
        self.resp.grow(size)
        return self.resp.payload(size)

    def publish(self, seq: int, length: int, status: int) -> None:
        """Publish the reply, and send a wake-up byte when the client blocks on the socket. Then a result array
        something else still keeps (an observer) is moved out of the response file: it must not see the next
        reply."""
        self._last_reply = length
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
        slot = self._call_slot
        if slot is not None and slot.address:
            slot.move_out()

    # ------------------------------------------------------------ speed paths

    def result_place(self) -> Optional[allocator.ResultSlot]:
        """Where the first big array of a call whose result is an NdArray goes: the place in the response file
        where the reply's data goes (allocator.py). None: the heap. Truncated when the file was cut (an array may
        be placed anywhere in it: touching a cut part would be a SIGBUS)."""
        slot = self.slot
        if slot is None or not allocator.has_room():
            return None
        self.resp.check_whole()
        self._call_slot = slot
        return slot

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

    def place_reply(self, outcome: Any) -> Optional[int]:
        """The reply's length when its NdArray result needs no encoding: it was computed where the reply's data
        goes and nothing else refers to it (only its header is written), or it lies in the request and the client
        allows a reply that says where. A result placed in the response file and not sent so is moved out first:
        it must not see this reply, nor C# it."""
        slot = self._call_slot
        if slot is not None and slot.address:
            if outcome.error is None and _lies_at(outcome.value, slot.place, self.resp) and _unshared(outcome):
                slot.last = outcome.value.nbytes
                return write_placed_ndarray(self.resp.payload(ndarray_data_offset(outcome.value.ndim)),
                                            outcome.value)
            slot.move_out()
        if outcome.error is None and outcome.returns is _NDARRAY and self._call_length:
            return self._in_request(outcome.value)
        return None

    def _in_request(self, value: Any) -> Optional[int]:
        """An NdArray result that is an argument, or a contiguous part of one, already lies in the request file:
        when the client allows it (request flag), the reply says where instead of copying it."""
        if type(value) is not np.ndarray or value.dtype not in DTYPE_CODE_OF or not value.flags.c_contiguous \
                or value.nbytes == 0:
            return None
        offset = value.__array_interface__["data"][0] - self.req.payload_address
        if offset < 0 or offset + value.nbytes > self._call_length or offset % value.dtype.itemsize \
                or not self.req.flags & FLAG_REPLY_IN_REQUEST:
            return None
        return write_reply_in_request(self.resp.payload(self.resp.payload_capacity), value, offset)

    def keep_arguments(self, payload: Optional[memoryview], spans: Any) -> None:
        """After a call (`payload`: its decoded request, None when it was not decoded). Something may still refer
        to views of its arguments (a global, a closure, a generator between stream items, a thread, a
        traceback...): they must keep their values, as NumPy arrays do, while the client writes its next requests
        into the same file. Their pages get private copies at the same addresses and the request file is mapped
        anew (allocator.move_request); no write to them is lost meanwhile. Only with the extension (`_views`);
        without it (not Linux) they go on sharing the file (PROTOCOL.md: copy them there)."""
        self._in_flight = 0
        if payload is None or self._views is None or self.broken or self._views(payload) <= 2:
            return
        try:
            allocator.move_request(self.req, len(payload), spans)
            self._args_moved = True
        except Exception:      # no memory for the copies: they may see later requests; say so
            log.exception("lane %d: arguments kept after their call could not be given their own pages; they may "
                          "show later requests' bytes (copy them, np.array(a), to keep them)", self.id)

    def arguments_in_flight(self) -> Optional[Tuple[int, int]]:
        """(address, length) of the request pages the running call's argument views lie in, or None (a fork)."""
        length = self._in_flight
        return (self.req.address, payload_offset(length)) if length else None

    # ------------------------------------------------------------ cuts

    def cut_since_last_look(self) -> bool:
        """The SIGBUS guard mended a fault somewhere since the last `cut` (one cheap look)."""
        return fault_total is not None and fault_total() != self._faults_seen

    def cut(self, mend: bool) -> Optional[Tuple[ErrorKind, str]]:
        """The SIGBUS guard (mapping.py) mended a fault since the last look; (kind, message) when it was in this
        lane's mappings: the client cut a lane file while the lane was open. What was read from it (the request,
        the arguments) or written to it (the reply) is then not what the other side has, so the call is answered
        with that error instead, it is logged once, and the lane is to be closed (its files are broken); the
        server goes on serving the others. `mend`: give the response file its size back first when it is the one
        cut, so the error can reach the client (only while serving the lane's request)."""
        assert fault_total is not None
        self._faults_seen = fault_total()
        allocator.note_moved_faults()             # an array kept after its call lost pages: logged once
        cut = [m for m in (self.req, self.resp) if m.faulted()]
        if not cut:
            return None
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
        if mend and self.resp.faulted():          # the error goes where the client reads it
            try:
                self.resp.restore_size()
                if self.slot is not None and self.slot.address:
                    self.slot.move_out()          # a result array lives in it: never unmapped under it
                self.resp.mend(self.session)
            except Exception as e:                # no room to give the file its size back: the closed lane says it
                log.warning("lane %d: the error reply about its cut file could not be written (%s)", self.id, e)
        if not self.broken:
            self.broken = True
            log.warning("lane %d of client pid %s: %s", self.id, getattr(self.client, "pid", "?"), message)
        kind = ErrorKind.MALFORMED_REQUEST if self.req.faulted() else ErrorKind.SERVER_ERROR
        return kind, message

    def _broken_header(self, seq: int) -> bool:
        """The request header no longer says what the client wrote (True; the lane is closed): a sequence that went
        backwards (or is 0 after a call), or a magic word or session id cut short (zeros from some byte on). A file
        cut inside its first page reads as zeros past the cut without any SIGBUS (Linux zeroes the rest of that
        page), so this is how such a cut shows; answering it would write over the last reply for a request nobody
        made, and the client would wait for ever (`waiting` reads 0 too). The lane is closed at once (its client
        gets a closed connection), logged once. False: other bytes in the magic word (a client that breaks the
        protocol), answered with MALFORMED_REQUEST; a changed session id is not the server's concern."""
        words = self.req.words
        if seq >= self.last_taken and not _cut_short(words[MAGIC_WORD], FIRST_WORD) and \
                not _cut_short(words[SESSION_WORD], self.session):
            return False
        try:
            size = os.lseek(self.req.fileno(), 0, os.SEEK_END)
        except OSError:
            size = -1
        name = self.req.path.name
        if 0 <= size < self.req.capacity:
            message = (f"{name} was cut by another process while lane {self.id} was open (it is {size:,} byte"
                       f"{'' if size == 1 else 's'} long, not {self.req.capacity:,}): its header reads as zeros past "
                       f"the cut (sequence {seq} after {self.last_taken}), so no request can be read from it. Lane "
                       "files belong to lesspy: never truncate or replace them. The lane is closed; open a new one")
        else:
            message = (f"the header of {name} was written over while lane {self.id} was open (sequence {seq} after "
                       f"{self.last_taken}, or its magic word or session id changed): another process wrote into the "
                       "lane file. Lane files belong to lesspy: never write into them but through the protocol. The "
                       "lane is closed; open a new one")
        if not self.broken:
            self.broken = True
            log.warning("lane %d of client pid %s: %s", self.id, getattr(self.client, "pid", "?"), message)
        self.close()
        return True

    # ------------------------------------------------------------ closing

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

    def ended(self) -> None:
        """The lane's thread ends, before the server shuts the socket down itself: did the client close it (it
        reads no reply then)? Not when the server closed the lane itself (`closed`: a cut file, a broken header):
        a socket it shut down reads as closed too, while its client may still be reading the last reply (the
        error saying why), whose blocks `dispose` would then punch out from under it (zeros: "unknown error kind
        0"). Asked only when blocks moved out of the lane's files could be freed."""
        self._client_closed = ((self.slot is not None and self.slot.moved) or self._args_moved) and \
            not self.closed and self.connection_lost()

    def close(self) -> None:
        """Wake the lane thread (shutdown makes a blocked recv return) and close the socket."""
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def dispose(self, stopping: bool) -> None:
        """After the thread ended: close the sockets, unmap and remove the files."""
        self.closed = True
        self._selector.close()
        for sock in (self.sock, self._wake_r, self._wake_w):
            try:
                sock.close()
            except OSError:
                pass
        if self.slot is not None and self.slot.moved and not stopping:
            # kept results moved out of it pin none of its blocks, nor the last reply's unless a client may read it
            self.slot.free_blocks(0 if self._client_closed else payload_offset(self._last_reply))
        if self._args_moved and self._client_closed and not stopping:
            allocator.punch_request_file(self.req)       # kept arguments moved out of it pin none of its blocks
        self.req.close(unlink=True)
        self.resp.close(unlink=True)

    def forget_in_child(self) -> None:
        """In a child forked from the serving process: close this copy's sockets without shutdown(), which would
        end the parent's connection too."""
        for sock in (self.sock, self._wake_r, self._wake_w):
            try:
                sock.close()
            except OSError:
                pass


def _cut_short(value: int, expected: int) -> bool:
    """A header word that is `expected` up to some byte and zeros after it (the first byte included): what a cut
    inside the header leaves (little-endian words)."""
    if value == expected:
        return False
    for n in range(8):
        if value == expected & ((1 << (8 * n)) - 1):
            return True
    return False


def _lies_at(value: Any, address: Optional[int], resp: Mapping) -> bool:
    """`value` can be sent by writing only an NDARRAY header: its data is at `address`, where that header puts it."""
    return (address is not None and type(value) is np.ndarray and value.__array_interface__["data"][0] == address
            and value.dtype in DTYPE_CODE_OF and value.flags.c_contiguous
            and address - resp.payload_address == ndarray_data_offset(value.ndim)
            and address - resp.address + value.nbytes <= resp.capacity)


def _unshared(outcome: Any) -> bool:
    """Nothing but the outcome refers to its array result, nor to the array it is a view of, nor weakly: no code
    can write it while C# reads it (it is freed once the reply is out). Otherwise C# gets a copy."""
    value = outcome.value
    # references: outcome.value, `value`, getrefcount's argument, and outcome.result when it is the same array (a
    # local holding outcome.result would be one more, and every such result would be moved out and copied)
    if sys.getrefcount(value) != 3 + (outcome.result is value) or weakref.getweakrefcount(value):
        return False
    base = value.base
    if base is None:
        return True
    of_result = outcome.result is base
    return (type(base) is np.ndarray and base.base is None and weakref.getweakrefcount(base) == 0
            and sys.getrefcount(base) == 3 + of_result)      # value.base, `base`, the argument (+ outcome.result)
