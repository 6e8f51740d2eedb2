"""One lane file (`lane-N.req.mmf` or `lane-N.resp.mmf`): a 64-byte header, then the payload.

Created once per lane and reused for every call; grown on demand by its writer (docs/PROTOCOL.md section 2).
The header's sequence and waiting words are how the two sides hand a frame over without a system call.

A file another process cuts while it is mapped turns every touch of a page past its new end into a SIGBUS, which
kills the process (a whole notebook kernel). Sizes are checked where a check is cheap (frames past the first page,
`read_request`, `grow`); the rest (a file cut to 0 bytes under the header page, a cut racing a read, user code
holding argument views) is caught by the SIGBUS guard on Linux (`_sigbusguard.c`): every mapping made here is
registered while it is mapped, a fault in one gets a private zero page and is counted (`faulted`), and the lane
that owns it answers with an error and closes (MappedLane.cut). Without the guard a cut is a SIGBUS.
A registration covers exactly what is mapped: a mapping handed over by `detach` keeps its own until it is unmapped
(or the extension cuts it down to a kept block, which is registered on its own for as long as it lives: Linux
takes even its private pages away when the file is truncated, after the lane closed too). A file cut inside its
first page raises no signal at all (the rest of that page reads as zeros): the lane sees its header cut short.
"""

from __future__ import annotations

import errno
import mmap
import os
import sys
import threading
import weakref
from pathlib import Path
from typing import Any, Callable, Optional, Tuple

import numpy as np

from ..wire import (CANCEL_WORD, CAPACITY_WORD, FIRST_WORD, FLAGS_INT, HEADER_SIZE, LENGTH_WORD, MAGIC_WORD, SEQUENCE_WORD,
                   SESSION_WORD, STATUS_INT, WAITING_INT, read_header, restore_header, write_header)
from ..workfolder import create_private, open_private
from .base import TransportError

_guard: Any = None
try:        # Linux, when built: a SIGBUS on a lane mapping (its file was cut) fails that lane, not the process
    from .. import _sigbusguard
    _guard = _sigbusguard
except ImportError:  # pragma: no cover - elsewhere a cut file is a SIGBUS
    pass
# faults the guard mended in any lane mapping, or None without it: one cheap look per call
# (MappedLane.cut_since_last_look)
fault_total: Optional[Callable[[], int]] = _guard.total if _guard is not None else None
# puts the guard's handler first again when another came since (faulthandler.enable() in a notebook): it passes
# the faults of no lane on to that one. Cheap (one sigaction call); done whenever a lane thread wakes up
guard_first: Optional[Callable[[], bool]] = _guard.install if _guard is not None else None
_unguard: "weakref.WeakKeyDictionary[mmap.mmap, weakref.finalize]" = weakref.WeakKeyDictionary()

MIN_CAPACITY = 4096
PAGE = mmap.PAGESIZE            # the first page always exists while the file is not empty: no size check for it
MAX_PAYLOAD = 2**31 - 1 - HEADER_SIZE          # what a .NET span can address
_fence_lock = threading.Lock()
# The header's words are read and written through typed views: each access is one aligned 8- or 4-byte load or
# store, so the other process never sees half a sequence number (struct's '<Q' goes byte by byte, and reads
# them in the opposite order). Native order is little-endian: lesspy refuses big-endian machines.
if sys.byteorder != "little":  # pragma: no cover
    raise ImportError("lesspy's mappings are little-endian; this machine is big-endian")


def full_fence() -> None:
    """A full memory barrier between a store and a later load (a locked instruction on x86-64).

    Python has no fence primitive; acquiring and releasing a lock executes an atomic read-modify-write,
    which orders every earlier store before every later load. See PROTOCOL.md section 2 for why it matters.
    """
    _fence_lock.acquire()
    _fence_lock.release()


class DiskFull(OSError, TransportError):
    """A lane file could not be given room on its file system: an error for the caller, never a SIGBUS."""

    def __str__(self) -> str:
        return str(self.strerror)


class Truncated(ValueError, TransportError):
    """A lane file is shorter than the part about to be read or written: another process cut it."""


def reserve(fd: int, path: Path, start: int, end: int, what: str) -> None:
    """Give bytes `start`..`end` of the file real room on its file system (extending it to `end`), so writing
    through a mapping can never meet a full file system (SIGBUS). DiskFull, with the sizes, when it cannot."""
    try:
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, start, end - start)
        elif os.fstat(fd).st_size < end:         # macOS, Windows: no reservation, only the size
            os.ftruncate(fd, end)
    except OSError as e:
        raise disk_full(e, path, end, what, fd) from None


_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def disk_full(e: OSError, path: Path, end: int, what: str, fd: int = -1) -> OSError:
    """`e` as a DiskFull that says what needed room and what is free, when it means the file system is full."""
    if isinstance(e, DiskFull) or e.errno not in _FULL:
        return e
    try:
        st = os.fstatvfs(fd) if fd >= 0 else os.statvfs(path.parent)
        room = f"{st.f_bavail * st.f_frsize:,} bytes are free there"
    except (OSError, AttributeError):
        room = "its free space is unknown"
    folder = os.path.realpath(path.parent)      # a /proc/self/fd/N path names the folder itself
    return DiskFull(e.errno, f"the work folder's file system is full: {what} needs {path.name} to be {end:,} "
                             f"bytes, and {room} ({folder}; {os.strerror(e.errno)}). Free space there, send "
                             "less data per call, or put the work folder on a larger file system (--work-folder)")


def grown_size(payload: int) -> int:
    """The file size for a payload: the smallest power of two (at least MIN_CAPACITY) holding header + payload,
    whatever the file's size was (PROTOCOL.md section 2, "Growth"; C#'s Mapping.GrownSize is the same rule)."""
    need = HEADER_SIZE + payload
    size = MIN_CAPACITY
    while size < need:
        size *= 2
    return size


def _guarded(m: mmap.mmap, address: int) -> int:
    """Register the mapping `m` (at `address`) with the SIGBUS guard until it is unmapped (unmap, or the GC);
    the guard's token, 0 when there is no guard. Touching a page of it past its file's end (another process cut
    the file) then reads zeros instead of killing the process, and `_guard.faulted(token)` counts it."""
    if _guard is None or len(m) == 0:
        return 0
    token = _guard.register(address, len(m))
    if not token:
        _table_full()
    if token:
        forget = _unguard[m] = weakref.finalize(m, _guard.unregister, token)
        forget.atexit = False     # guarded to the end: daemon lane threads may still read it while Python exits
    return token


_full_said = [False]


def _table_full() -> None:
    """The guard's table is full (SLOTS ranges registered): this mapping is not guarded. Said once."""
    if not _full_said[0]:
        _full_said[0] = True
        import logging
        logging.getLogger("lesspy_kernel").warning(
            "the SIGBUS guard's table of lane mappings is full (%d ranges: many arrays kept after their calls?): "
            "new ones are not guarded, and a client that cuts such a lane file can kill this process. Let kept "
            "arrays go, or keep copies of them (np.array(a))", _guard.SLOTS)


def guard_token(m: mmap.mmap) -> int:
    """The guard's token of the mapping `m` while it is registered (_guarded), else 0."""
    forget = _unguard.get(m)
    info = forget.peek() if forget is not None else None
    return info[2][0] if info is not None else 0


def guard_part(m: mmap.mmap, address: int, length: int) -> int:
    """Register [address, address + length), a part of `m` holding kept argument pages (moved out of their request
    file: allocator.move_request), until `m` is unmapped (the GC, with the last view). Its faults count in the
    guard's moved_total too. The token, 0 without the guard."""
    if _guard is None or length <= 0:
        return 0
    token = _guard.register(address, length, True)
    if not token:
        _table_full()
    if token:
        weakref.finalize(m, _guard.unregister, token).atexit = False
    return token


def drop_guard(m: mmap.mmap) -> None:
    """`m`'s own registration was dropped (the extension cut it down to a part guarded on its own)."""
    forget = _unguard.pop(m, None)
    if forget is not None:
        forget.detach()


def unmap(m: mmap.mmap) -> bool:
    """Close `m`: True when it is unmapped now (and no longer guarded); False when Python code still holds a view
    of it, and then it stays mapped, and guarded, until the GC unmaps it."""
    try:
        m.close()
    except BufferError:
        return False
    forget = _unguard.pop(m, None)
    if forget is not None:
        forget()
    return True


class Mapping:
    """A lane file mapped read-write. `create=True` makes it (the server); otherwise it is opened (a client)."""

    def __init__(self, path: Path, capacity: int = 0, session: int = 0, create: bool = True,
                 reserved: bool = False) -> None:
        self.path = Path(path)
        if create:
            if capacity < MIN_CAPACITY:
                raise ValueError(f"capacity {capacity} is below the minimum of {MIN_CAPACITY} bytes")
            header = bytearray(HEADER_SIZE)
            write_header(memoryview(header), capacity, session)
            fd = create_private(self.path, os.O_RDWR)           # O_EXCL|O_NOFOLLOW, 0600 (docs/PROTOCOL.md 1)
            try:
                if reserved:                          # the server's response file: every byte it writes has room
                    reserve(fd, self.path, 0, capacity, "opening a lane")
                else:
                    os.ftruncate(fd, capacity)
                # written through the file, not the mapping: allocating the first page can be slow on a disk file
                # system, and a system call does it without holding the GIL
                if hasattr(os, "pwrite"):
                    os.pwrite(fd, header, 0)
                else:                                 # Windows
                    os.write(fd, header)
            except OSError as e:                      # a full file system: no file left behind, and say so
                error = disk_full(e, self.path, capacity, "opening a lane", fd)
                os.close(fd)
                fd = -1
                try:
                    self.path.unlink()
                except OSError:
                    pass
                raise error from None
            finally:
                if fd >= 0:
                    os.close(fd)
        self._old: list = []
        self._kept: list = []          # guard tokens of mappings handed over by detach (blocks may live in them)
        self._reserved = capacity if create and reserved else 0   # bytes from the start with their room reserved
        self._map(capacity if create else 0)
        self._fd = open_private(self.path, os.O_RDWR)   # for size checks and reservations; ours, 0600, no symlink

    def _map(self, size: int) -> None:
        fd = open_private(self.path, os.O_RDWR)        # a regular file of ours, 0600, not through a symlink
        try:
            self._mmap = mmap.mmap(fd, size, access=mmap.ACCESS_WRITE)
        except ValueError:                             # shorter than `size`: cut by another process
            actual = os.fstat(fd).st_size
            if not size or actual >= size:
                raise
            raise Truncated(f"{self.path.name} is {actual:,} bytes long, not {size:,}: another process cut it while "
                            "its lane was open, so lesspy could not map it again. Lane files belong to lesspy: "
                            "never truncate or replace them; close this lane and open a new one") from None
        finally:
            os.close(fd)
        self.capacity = len(self._mmap)
        probe = np.frombuffer(self._mmap, dtype=np.uint8, count=1)
        self.address = int(probe.__array_interface__["data"][0])   # first byte (for the result-array fast path)
        self.payload_address = self.address + HEADER_SIZE           # the payload's first byte
        del probe
        self.token = _guarded(self._mmap, self.address)
        self.view = memoryview(self._mmap)
        # read-only, with a buffer of its own: call arguments are views of it (arguments)
        self.args_view = memoryview(self._mmap).toreadonly()
        self.header = self.view[:HEADER_SIZE]
        self.words = self.header.cast("Q")          # 8 u64 words
        self.ints = self.header.cast("I")           # 16 u32 words

    # ------------------------------------------------------------ header words

    @property
    def sequence(self) -> int:
        return self.words[SEQUENCE_WORD]

    @property
    def waiting(self) -> int:
        return self.ints[WAITING_INT]

    @waiting.setter
    def waiting(self, value: int) -> None:
        self.ints[WAITING_INT] = value

    @property
    def cancel(self) -> int:
        return self.words[CANCEL_WORD]

    @cancel.setter
    def cancel(self, value: int) -> None:
        self.words[CANCEL_WORD] = value

    @property
    def flags(self) -> int:
        return self.ints[FLAGS_INT]

    @flags.setter
    def flags(self, value: int) -> None:
        self.ints[FLAGS_INT] = value

    @property
    def session(self) -> int:
        return self.words[SESSION_WORD]

    @property
    def declared_capacity(self) -> int:
        return self.words[CAPACITY_WORD]

    def publish(self, seq: int, length: int, status: int) -> None:
        """Write length and status, then the sequence last, each as one store (PROTOCOL.md section 2)."""
        self.words[LENGTH_WORD] = length
        self.ints[STATUS_INT] = status
        self.words[SEQUENCE_WORD] = seq

    @property
    def payload_capacity(self) -> int:
        return self.capacity - HEADER_SIZE

    def payload(self, length: int) -> memoryview:
        return self.view[HEADER_SIZE:HEADER_SIZE + length]

    # ------------------------------------------------------------ growth

    def grow(self, payload: int) -> None:
        """Writer side: make room for `payload` bytes (file extended with its room reserved, mapped again, capacity
        field updated). DiskFull when the file system has no room for it; Truncated when another process cut the
        file below what is about to be written (its size is restored first, so the next write works)."""
        end = HEADER_SIZE + payload
        if payload <= self.payload_capacity:
            if end > PAGE:
                self._check_written(end)
                if end > self._reserved:              # a file made without its room (a client's request file)
                    want = min(self.capacity, grown_size(payload))
                    reserve(self._fd, self.path, self._reserved, want, f"a frame of {payload:,} bytes")
                    self._reserved = want
            return
        if payload > MAX_PAYLOAD:
            raise OverflowError(f"{payload:,} bytes is more than the {MAX_PAYLOAD:,} a lane can carry")
        size = grown_size(payload)
        self._check_written(self.capacity)
        try:
            reserve(self._fd, self.path, self._reserved, size, f"a frame of {payload:,} bytes")
        except DiskFull:
            os.ftruncate(self._fd, self.capacity)     # give back what a partial reservation took
            raise
        self._reserved = size
        self._remap(size)
        self.words[CAPACITY_WORD] = size

    def read_request(self) -> Tuple[int, int]:
        """Reader side: (payload length, status) of the frame just published, after `refresh` and the header
        checks of `read_header`. The common case (nothing grown, header intact, the frame within the first page)
        is three word loads; a longer frame is checked against the file's real size first (Truncated)."""
        words = self.words
        if words[MAGIC_WORD] != FIRST_WORD or words[CAPACITY_WORD] != self.capacity:
            self.refresh()
            _, length, status = read_header(self.view)
        else:
            length = words[LENGTH_WORD]
            if length > self.capacity - HEADER_SIZE:
                read_header(self.view)            # raises the FrameError that names the bad length
            status = self.ints[STATUS_INT]
        if HEADER_SIZE + length > PAGE:
            size = os.lseek(self._fd, 0, os.SEEK_END)   # the file's size, a third of fstat's cost (no stat object)
            if size < HEADER_SIZE + length:
                raise Truncated(f"{self.path.name} is {size:,} bytes long, but its header announces a request of "
                                f"{length:,} bytes (up to byte {HEADER_SIZE + length:,}): the client cut the file "
                                "while the lane was open, so lesspy did not read it. Lane files belong to lesspy: "
                                "never truncate or replace them; close this lane and open a new one")
        return length, status

    def check_whole(self) -> None:
        """Writer side, before anything may be written anywhere in the file (results made in the mapping): the
        same check as _check_written, for the whole capacity."""
        self._check_written(self.capacity)

    def _check_written(self, end: int) -> None:
        """Writer side, before writing up to byte `end`: a file another process cut is given its size (and room)
        back, and the write is refused with Truncated (touching the missing part would be a SIGBUS)."""
        size = os.lseek(self._fd, 0, os.SEEK_END)
        if size >= end:
            return
        self.restore_size()
        raise Truncated(f"{self.path.name} had been cut to {size:,} bytes by another process while its lane was "
                        f"open (its capacity is {self.capacity:,}): lesspy gave it its size back, and this reply "
                        "was not written. Lane files belong to lesspy: never truncate or replace them")

    def refresh(self) -> None:
        """Reader side: map the file again if its writer grew it (the header says a larger capacity)."""
        declared = self.declared_capacity
        if declared > self.capacity:
            actual = os.stat(self.path).st_size
            if actual >= declared:
                self._remap(declared)

    def _remap(self, size: int) -> None:
        old, old_views = self._mmap, (self.words, self.ints, self.header, self.view, self.args_view)
        self._map(size)
        for v in old_views:
            v.release()
        if not unmap(old):       # user code still holds a view of it: the GC unmaps it later
            self._old.append(old)

    def detach(self) -> mmap.mmap:
        """Map the file again at a new address and hand the old mapping over unclosed: a block in it lives on
        (allocator.move_out). The old mapping stays guarded while it maps anything (its registration goes when it
        is unmapped, or is cut down to the kept pages by the extension); its faults still count for this file."""
        old, old_views = self._mmap, (self.words, self.ints, self.header, self.view, self.args_view)
        self._map(self.capacity)
        self.count_faults(guard_token(old))
        for v in old_views:
            v.release()
        return old

    def count_faults(self, token: int) -> None:
        """Faults in the range of `token` (a mapping handed over by detach, a kept block's own pages) count for this
        file while it is registered (`faulted`). Owned by whoever unmaps that range, not by this Mapping."""
        if token and _guard is not None:
            self._kept = [t for t in self._kept if _guard.alive(t)]
            self._kept.append(token)

    def _settle_kept(self) -> None:
        """Before a cut file is given its size back: the pages of arrays kept after their call (moved out of this
        file: still a private mapping of it, whose copies Linux took away in the cut) get their zero pages now;
        touched later, they would show what is written into the file next (a later reply) instead."""
        for token in self._kept:
            _guard.settle(token)

    def faulted(self) -> int:
        """Faults the SIGBUS guard mended in this file's mapping (and in those detach handed over): pages of it
        past the file's end, because another process cut the file, which read (and were written) as a private zero
        page since. 0 without the guard."""
        if not self.token:
            return 0
        return _guard.faulted(self.token) + sum(_guard.faulted(token) for token in self._kept)

    def restore_size(self) -> None:
        """Give a cut file its size (and room) back: it can be mapped again (mmap refuses a file too short)."""
        self._settle_kept()
        reserve(self._fd, self.path, 0, self.capacity, "restoring a cut lane file")
        self._reserved = self.capacity

    def mend(self, session: int) -> None:
        """After a fault (`faulted`): give the file its size (and room) and its header back, and map it anew, so
        that what is written next reaches the file again (the old mapping has private zero pages where the file
        was cut). The writer's side (the server's response file, whose `session` it is)."""
        self.restore_size()
        self._remap(self.capacity)
        # every field but `waiting`: the client's, which it may have set in the file given back already (it then
        # waits for a wake-up byte, which a 0 written here would cancel: it would see only the lane close)
        restore_header(self.header, self.capacity, session)

    def arguments(self, length: int) -> memoryview:
        """The payload as a read-only view of `args_view`, whose buffer no other view shares: the argument views
        made from it can never be made writable, and their number tells whether any outlives the call
        (MappedLane.keep_arguments: args_view, this view, and one per argument view alive)."""
        return self.args_view[HEADER_SIZE:HEADER_SIZE + length]

    def fileno(self) -> int:
        """The file's descriptor (opened without following a symlink; owned by this Mapping)."""
        return self._fd

    def close(self, unlink: bool = False) -> None:
        """Unmap (leaving it to the GC if Python code still holds a view), and remove the file if asked."""
        for v in (self.words, self.ints, self.header, self.view, self.args_view):
            try:
                v.release()
            except ValueError:
                pass
        for m in [self._mmap] + self._old:
            unmap(m)
        self._old = []
        # not unregistered here: kept blocks moved out of this file are guarded until they are unmapped (a client
        # that kept a descriptor may still cut the file: zeros, never a SIGBUS)
        self._kept = []
        fd, self._fd = getattr(self, "_fd", -1), -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
        if unlink:
            try:
                self.path.unlink()
            except OSError:
                pass

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Mapping({self.path.name}, {self.capacity:,} bytes)"
