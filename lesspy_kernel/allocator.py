"""Results computed straight into the reply: `return a + 1` without a fresh array or a copy.

While a call whose declared result is `NdArray` runs, NumPy's data allocator (NEP 49, `PyDataMem_SetHandler`)
is lesspy's, in the thread that runs the call only. The first array of at least MIN_BYTES the call makes is
placed in the lane's response mapping, exactly where a top-level NDARRAY reply's data goes (payload offset 64).
When that array is what the function returns, the reply is only its header: no page faults for a new array, no
copy into the mapping, no `munmap` afterwards. Every other allocation comes from the C library as usual.

An array placed there that is still referenced when the mapping is needed again (kept in a global, returned
inside something else, held by a traceback) is moved out of the way first: its pages are replaced, in this
process only, by private pages holding the same bytes at the same address (`mremap`), and the response file is
mapped anew for the replies. So no Python object ever sees another reply's bytes, and C# never sees a later
change to a Python object. A moved block keeps its old mapping (and that mapping's file descriptor) until it is
freed, so at most MAX_MOVED of them live at once: while that many are kept, calls run without the allocator and
their results are copied, as they would be without it.

The allocator itself is C (`_resultalloc.c`): NumPy calls it while an exception may be set, or without the GIL,
where no Python code may run. It is built on Linux only (`mremap`), and optional: without it (another system,
no compiler at install time, a NumPy without NEP 49) results are copied into the reply as before.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from .protocol import HEADER_SIZE

log = logging.getLogger("lesspy_kernel")

DATA_OFFSET = 64                # where a top-level NDARRAY reply's data starts (ndim <= 7; PROTOCOL.md section 4)
MAX_MOVED = 16                  # moved blocks alive at once; beyond, calls run without the allocator until some go
_native: Any = None             # the _resultalloc module once imported; False when unavailable
_moved: Dict[int, Any] = {}     # address of a moved block -> the old mapping it keeps alive


def available() -> bool:
    """True when NumPy's allocator can be pointed at the mappings here."""
    global _native
    if _native is None:
        try:
            from . import _resultalloc
            _native = _resultalloc
        except ImportError as e:   # not built (not Linux, no compiler), or NumPy without NEP 49
            log.debug("results are copied into the reply: %s", e)
            _native = False
    return _native is not False


class ResultSlot:
    """The place in one lane's response mapping where a call's first big array goes."""

    def __init__(self, resp: Any) -> None:
        self.resp = resp                # the lane's response Mapping
        self.last = 0                   # bytes of the last result that came from here

    @property
    def place(self) -> int:
        return int(self.resp.address) + HEADER_SIZE + DATA_OFFSET

    @property
    def address(self) -> int:
        """The place, while a block lives there; else 0."""
        place = self.place
        return place if _native.live(place) else 0

    def begin(self, expect: int) -> Any:
        """On the thread that runs the call: big arrays go to the place until `end`. The mapping is grown first
        to hold `expect` bytes (the largest array argument, or the last result). Returns what `end` needs."""
        if _moved:
            _reap()
        need = max(expect, self.last)
        if need >= _native.MIN_BYTES:
            try:
                self.resp.grow(DATA_OFFSET + need)
            except Exception:   # no room to grow: the arrays go to the heap
                pass
        return _native.begin(self.place, self.resp.capacity - HEADER_SIZE - DATA_OFFSET)

    def end(self, previous: Any) -> None:
        _native.end(previous)

    def reserve(self) -> None:
        """result_array() is about to use the place: move a block living there out, and keep the place free."""
        if self.address:
            self.move_out()
        _native.reserve()

    def move_out(self) -> None:
        """The block at the place is still referenced and the mapping is needed: give it private pages holding
        the same bytes at the same address, and map the response file anew."""
        place = self.place
        if _native.move_out(place):
            _moved[place] = self.resp.detach()


def has_room() -> bool:
    """Whether a call may use the allocator now (see MAX_MOVED)."""
    if len(_moved) >= MAX_MOVED:
        _reap()
    return len(_moved) < MAX_MOVED


def _reap() -> None:
    """Let go of the old mappings of moved blocks that have been freed since the last look."""
    for address in _native.reap():
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
