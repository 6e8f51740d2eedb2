"""Results computed straight into the reply: `return a + 1` without a fresh array or a copy.

While a call whose declared result is `NdArray` runs, NumPy's data allocator (NEP 49, `PyDataMem_SetHandler`)
is lesspy's, in the thread that runs the call only. The first array of at least MIN_BYTES the call makes (or the
first result_array() of the call, whatever its size) is placed in the lane's response mapping, exactly where a
top-level NDARRAY reply's data goes (payload offset 64). When that array is what the function returns and nothing
else refers to it, the reply is only its header: no page faults for a new array, no copy into the mapping, no
`munmap` afterwards. Every other allocation comes from the C library as usual.

The guarantees are plain NumPy's:
- An array placed there that is still referenced when the reply is written (kept in a global, returned inside
  something else, held by a traceback or a thread, or the result while something else also refers to it) is
  moved out first and the reply carries a copy: C# never shares pages with an array Python can still write, and
  the array never sees a later reply. Moving copies no bytes under the array: its pages are mapped again from
  the same file offsets MAP_PRIVATE and the kernel copies each one on a write fault (`_resultalloc.c`,
  move_out), so a thread writing the array meanwhile loses no write. The old mapping's other pages are unmapped
  at once, so a kept array pins its own pages (plus the first one) and no more; when its lane closes the
  response file's blocks are freed (a hole is punched) while the array keeps its private copy. When the server
  closed the lane itself (a client that broke the protocol, or a failure of ours) while its client may still
  read the last reply, that reply's blocks stay (a hole would read as zeros) while an array moved out of the
  lane lives.
- A child made by `os.fork` (a `multiprocessing` pool with the fork start method) gives every array still placed
  in a mapping, and the request pages a running call's arguments lie in (watch_requests), its own pages holding
  the same bytes before any Python code runs there (os.register_at_fork), so it never writes into its parent's
  array or a C# result, nor sees a later request through an argument; the parent waits in its own fork hook, holding the
  GIL, until the child has them (at most 5 s). Not covered: a fork made from C without Python's fork hooks, and
  a NumPy loop already running without the GIL in another thread of the parent when it forked, which may show
  its writes to such an array to the child.
- Arrays are distinct: a second result_array() in one call, or one in a call whose result is not a top-level
  `NdArray`, is a plain array (its data is copied into the reply).

At most MAX_MOVED moved blocks live at once (each is a mapping of its own; one whose old mapping could not be
released, because something else held it, keeps that mapping and its descriptor until it is freed): while that
many are kept, calls run without the allocator and their results are copied, as they would be without it.

The allocator itself is C (`_resultalloc.c`): NumPy calls it while an exception may be set, or without the GIL,
where no Python code may run. It is built on Linux only, and optional: without it (another system, no compiler
at install time, a NumPy without NEP 49) results are copied into the reply. LESSPY_NO_ALLOCATOR=1 in the
environment (read once, at import) turns it off too (available() is False); kept arguments are still given pages
of their own (move_request), which needs the extension but not NumPy's allocator.
"""

from __future__ import annotations

import logging
import mmap
import os
import sys
import weakref
from typing import Any, Dict, Optional

import numpy as np

from .transport.mapping import drop_guard, guard_part, guard_token, unmap
from .wire import ndarray_data_offset, payload_offset

log = logging.getLogger("lesspy_kernel")

PAGE = 4096                     # what a hole punched in a file is rounded to (a multiple of any page size we meet)
_PAGE = mmap.PAGESIZE           # what a mapping's pages are moved by
MAX_DIMS = 7                    # DATA_OFFSET holds the header of an array of at most this many dimensions
DATA_OFFSET = ndarray_data_offset(MAX_DIMS)  # where a top-level NDARRAY reply's data starts (ndim <= MAX_DIMS)
MAX_MOVED = 16                  # moved blocks alive at once; beyond, calls run without the allocator until some go
_native: Any = None             # the _resultalloc module once imported; False when unavailable
_moved: Dict[int, Any] = {}     # address of a moved block -> the old mapping it keeps alive (when not released)
_leaked: list = []              # old mappings a block could not be moved out of (no memory): kept for good
_request_lanes: "weakref.WeakSet[Any]" = weakref.WeakSet()   # lanes whose running calls' arguments forks copy
_TURNED_OFF = os.environ.get("LESSPY_NO_ALLOCATOR", "") not in ("", "0")   # results take the copy path


def available() -> bool:
    """True when NumPy's allocator can be pointed at the mappings here (not turned off by LESSPY_NO_ALLOCATOR)."""
    return not _TURNED_OFF and _loaded()


def _loaded() -> bool:
    """True when the extension is built and imported (its fork hooks registered)."""
    global _native
    if _native is None:
        try:
            from . import _resultalloc
            from .transport.mapping import _guard
            if _guard is not None:      # moved blocks are guarded while they are mapped (a cut file: zeros)
                _resultalloc.set_guard(_guard._C_API)
            _native = _resultalloc
            os.register_at_fork(before=_resultalloc.before_fork, after_in_parent=_resultalloc.after_fork_parent,
                                after_in_child=_resultalloc.after_fork_child)
            os.register_at_fork(before=_before_fork)      # runs first (before hooks run last registered first)
        except ImportError as e:   # not built (not Linux, no compiler), or a NumPy older than it needs
            log.debug("results are copied into the reply: %s", e)
            _native = False
    return _native is not False


class ResultSlot:
    """The place in one lane's response mapping where a call's first big array goes."""

    def __init__(self, resp: Any) -> None:
        self.resp = resp                # the lane's response Mapping
        self.last = 0                   # bytes of the last result that came from here
        self.moved = False              # a block was moved out of this response file (free_blocks() frees its blocks)

    @property
    def place(self) -> int:
        return int(self.resp.payload_address) + DATA_OFFSET

    @property
    def address(self) -> int:
        """The place, while a block lives there; else 0."""
        place = self.place
        return place if _native.live(place) else 0

    def begin(self, expect: int) -> Any:
        """On the thread that runs the call: big arrays go to the place until `end`. The mapping is grown first
        to hold `expect` bytes (the largest array argument, or the last result). Returns what `end` needs (its
        scope: begin/end nest, the innermost ending first)."""
        if _moved:
            _reap()
        need = max(expect, self.last)
        if need >= _native.MIN_BYTES:
            try:
                self.resp.grow(DATA_OFFSET + need)
            except Exception:   # no room to grow: the arrays go to the heap
                pass
        return _native.begin(self.place, self.resp.payload_capacity - DATA_OFFSET)

    def end(self, previous: Any) -> None:
        _native.end(previous)

    def result_array(self, shape: tuple, dtype: np.dtype) -> np.ndarray:
        """On the thread that runs the call: the call's first result_array() is placed where the reply's data goes
        (an earlier array of the call living there is moved out first); a later one is a plain array."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if len(shape) > MAX_DIMS or nbytes <= 0 or _native.reserved():
            return np.empty(shape, dtype)
        if self.address:
            self.move_out()
        try:
            self.resp.grow(DATA_OFFSET + nbytes)      # no block lives in the mapping now: it may be mapped anew
        except Exception:                             # no room: a plain array, copied into the reply
            return np.empty(shape, dtype)
        if not _native.place_next(self.place, self.resp.payload_capacity - DATA_OFFSET):
            return np.empty(shape, dtype)
        try:
            return np.empty(shape, dtype)
        finally:
            _native.unforce()

    def move_out(self) -> None:
        """The block at the place is still referenced and the mapping is needed: give it private pages holding
        the same bytes at the same address (no write to it is lost meanwhile: _resultalloc.c), and map the
        response file anew for the replies."""
        place = self.place
        if not _native.live(place):
            return
        base = self.resp.address
        old = self.resp.detach()
        try:
            fd = os.open(self.resp.path, os.O_RDWR)
            try:
                # only `old` and this call's argument refer to the old mapping: no buffer of it is exported, and
                # its other pages may be unmapped now
                size, released, token = _native.move_out(place, base, fd,
                                                         old if sys.getrefcount(old) == 2 else None,
                                                         guard_token(old))
            finally:
                os.close(fd)
        except BaseException:
            _leaked.append(old)                   # the block still lives in it (no memory to move it): never unmap
            raise
        self.moved = True
        self.resp.count_faults(token)             # its pages, guarded until it is freed: a cut fails this lane
        if released:
            drop_guard(old)                       # the extension dropped its registration: it maps nothing now
            old.close()                           # only its descriptor
        elif size:
            _moved[place] = old                   # unmapped when the block is freed (_reap)
        else:                                     # freed meanwhile: nothing lives in it
            unmap(old)                            # and its guard registration goes with it (or with the GC)

    def free_blocks(self, keep: int) -> None:
        """The lane closes while the server goes on: blocks moved out of its response file keep the file open (their
        mappings) but none of its bytes (their pages are private copies), so its blocks are freed now, all but the
        first `keep` bytes (a reply the client may still be reading)."""
        if not self.moved:
            return
        try:
            fd = os.open(self.resp.path, os.O_RDWR)
        except OSError:
            return
        try:
            start = -(-keep // PAGE) * PAGE
            size = os.fstat(fd).st_size
            if size > start:
                _native.punch(fd, start, size - start)
        except OSError as e:                          # a file system without holes: the blocks go with the arrays
            log.debug("could not free the blocks of %s: %s", self.resp.path, e)
        finally:
            os.close(fd)


def move_request(req: Any, length: int, spans: Optional[tuple]) -> int:
    """A call's argument views over the request mapping `req` outlive the call (kept in a global, a closure, a
    generator...): give the pages they lie in private copies of their bytes at the same addresses, and map the
    request file anew for the next requests, which the kept views then never see (plain NumPy's guarantee: an
    array keeps its values). As in ResultSlot.move_out, no byte is copied under them (a thread writing one
    through an alias meanwhile loses no write), and the pages stay guarded while they are mapped (a later cut of
    the file reads as zeros there, never a SIGBUS). The pages of the frame (header and values) and of in-place
    data (`spans`, wire.Call) are copied; a gap between them becomes zero pages, and the rest of the old
    mapping is unmapped when only the argument views hold it. Returns the bytes made private (what the kept views
    pin)."""
    end = _up(payload_offset(length))
    if spans is None:
        ranges = [(0, end)]
    else:
        frame_end, at_start, at_end = spans
        first, low, high = _up(payload_offset(frame_end)), payload_offset(at_start), _up(payload_offset(at_end))
        low -= low % _PAGE
        ranges = [(0, high)] if low <= first else [(0, first), (low, high)]
    base = req.address
    old = req.detach()
    # `old`, the argument, and the buffer the argument views come from: nothing else maps its other pages
    released = sys.getrefcount(old) == 3
    # the kept pages stay a private mapping of the file, whose copies Linux takes away when the file is truncated:
    # guarded (zeros, never a SIGBUS) until `old` is unmapped, and counted as this file's faults while it is open
    req.count_faults(guard_part(old, base, end))
    moved, cut_down = _native.move_pages(base, req.fileno(), old if released else None, end, ranges,
                                         guard_token(old))
    if cut_down:
        drop_guard(old)                           # its whole range was unregistered: [base, end) is guarded above
    return moved


_moved_faults = [0, False]      # faults seen in kept arrays' own pages (the guard's moved_total), and logged yet


def note_moved_faults() -> bool:
    """After the SIGBUS guard mended a fault somewhere (a lane looks when the guard's total changes): when it was in
    the pages of an array kept after its call (a result or an argument moved out of a lane file), say so in the
    log, once per process. True when there were new ones. Those pages are still a private mapping of the lane file,
    and Linux takes even private copies away when the file is truncated: the array reads zeros there now."""
    from .transport.mapping import _guard
    if _guard is None:
        return False
    n = _guard.moved_total()
    if n == _moved_faults[0]:
        return False
    _moved_faults[0] = n
    if not _moved_faults[1]:
        _moved_faults[1] = True
        log.warning("an array kept after its call (a result or an argument moved out of a lane file) lost pages: "
                    "another process truncated that lane file (a client that kept its descriptor, even after the "
                    "lane closed), and Linux drops even the private copies of a truncated file's pages. lesspy "
                    "caught the SIGBUS; those pages of the array read as zeros now (never other bytes). Lane files "
                    "belong to lesspy: never truncate them; keep copies (np.array(a)) of arrays that must survive "
                    "such a client (said once)")
    return True


def watch_requests(lane: Any) -> None:
    """A child made by os.fork while `lane` runs a call gets private copies of the request pages its argument
    views lie in (the parent waits until it has them, as for placed arrays): it never sees the client's later
    requests through an argument it inherited. `lane.arguments_in_flight()` says which pages."""
    _request_lanes.add(lane)


def _before_fork() -> None:
    """os.register_at_fork(before=...), in the parent holding the GIL, just before _resultalloc.before_fork."""
    regions = []
    try:
        for lane in list(_request_lanes):
            region = lane.arguments_in_flight()
            if region is not None:
                regions.append(region)
    except Exception as e:   # never fail a fork for it; the child may then share argument pages
        log.debug("could not list the argument pages of running calls before a fork: %s", e)
    _native.fork_regions(regions)


def views_counter() -> Any:
    """`views(memoryview)`: how many memoryviews share its buffer (for a call's arguments, Mapping.arguments: 2
    when no argument view outlives the call), where kept argument views can be moved out (the extension is
    built); else None."""
    return _native.views if _loaded() else None


def punch_request_file(mapping: Any) -> None:
    """A lane closes whose client is gone: every block of its request file (which moved argument views kept
    open) is freed."""
    try:
        size = os.fstat(mapping.fileno()).st_size
        if size:
            _native.punch(mapping.fileno(), 0, size)
    except OSError as e:                              # a file system without holes: the blocks go with the views
        log.debug("could not free the blocks of %s: %s", mapping.path, e)


def _up(n: int) -> int:
    return -(-n // _PAGE) * _PAGE


def has_room() -> bool:
    """Whether a call may use the allocator now (see MAX_MOVED)."""
    if _moved:
        _reap()
    return _native.moved() < MAX_MOVED


def _reap() -> None:
    """Let go of the old mappings of moved blocks that have been freed since the last look."""
    try:
        freed = _native.reap()
    except MemoryError:     # nothing was taken off its table: the next look reports them
        return
    for address in freed:
        _moved.pop(address, None)


def expected_bytes(args: Any) -> int:
    """The largest array among a call's arguments: results are often that size."""
    best = 0
    for a in args:
        n = getattr(a, "nbytes", 0)
        if type(n) is int and n > best:
            best = n
    return best


def slot_for(resp: Any) -> Optional[ResultSlot]:
    return ResultSlot(resp) if available() else None
