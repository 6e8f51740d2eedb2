"""Results computed straight into the reply: `return a + 1` without a fresh array or a copy.

While a call whose declared result is `NdArray` runs, NumPy's data allocator (NEP 49, `PyDataMem_SetHandler`)
is this module's, in the serving thread only. The first big array the call makes (at least MIN_BYTES) is placed
in the lane's response mapping, exactly where a top-level NDARRAY reply's data goes (payload offset 64). When
that array is what the function returns, the reply is only its header: no page faults for a new 64 MiB array,
no copy into the mapping, no `munmap` afterwards. Every other allocation goes to the C library as usual.

An array placed there that is still referenced when the mapping is needed again (kept in a global, returned
inside something else, held by a traceback) is moved out of the way first: its pages are replaced, in this
process only, by private memory with the same bytes at the same address (`mremap`), and the response file is
mapped anew for the replies. So no Python object ever sees another reply's bytes, and C# never sees a later
change to a Python object. Linux only (it needs `mremap`); elsewhere, or with a NumPy without NEP 49, nothing
changes.

A function whose calls make many small arrays pays a Python callback per allocation (about 2 µs); a function
whose result does not come from the mapping gains nothing. For either, the allocator stays off for the next
RETRY_AFTER calls of that function (a per-name policy), then tries again.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import sys
import threading
from typing import Any, Dict, Optional, Tuple

from .protocol import HEADER_SIZE

log = logging.getLogger("lesspy_kernel")

MIN_BYTES = 256 * 1024          # smaller arrays come from malloc's own pools: nothing to gain
DATA_OFFSET = 64                # where a top-level NDARRAY reply's data starts (ndim <= 7; PROTOCOL.md section 4)
MAX_ALLOCATIONS = 256           # a call that makes more arrays than this runs without the allocator next time
RETRY_AFTER = 63                # calls of a function that run without it after it did not pay

_PROT_READ, _PROT_WRITE = 1, 2
_MAP_PRIVATE, _MAP_ANONYMOUS = 0x02, 0x20
_MREMAP_MAYMOVE, _MREMAP_FIXED = 1, 2
_local = threading.local()      # .slot: the ResultSlot of the call this thread runs, if any
_live: Dict[int, "ResultSlot"] = {}                  # address of a block in a mapping -> its slot
_moved: Dict[int, Tuple[Any, int]] = {}              # address of a moved block -> (old mapping it keeps, size)
_skip: Dict[str, int] = {}                           # function name -> calls left without the allocator
_api: Any = None                                     # _Api once set up, False when unavailable


class ResultSlot:
    """The place in one lane's response mapping where a call's first big array goes."""

    def __init__(self, resp: Any) -> None:
        self.resp = resp                # the lane's response Mapping
        self.address = 0                # the block living there (0: none)
        self.size = 0
        self.open = False               # a call is running with the allocator on
        self.reserved = False           # result_array() took the place for this call
        self.allocations = 0            # allocations seen during the call

    @property
    def place(self) -> int:
        return self.resp.address + HEADER_SIZE + DATA_OFFSET

    def take(self, size: int) -> int:
        """The address for a new block of `size` bytes, or 0 when the place is not free."""
        if self.address or self.reserved or not self.open:
            return 0
        try:
            self.resp.grow(DATA_OFFSET + size)       # may map the file anew: nothing of ours lives in it now
        except Exception:
            return 0
        self.address, self.size = self.place, size
        _live[self.address] = self
        return self.address


def available() -> bool:
    """True when NumPy's allocator can be pointed at the mappings here (Linux, NumPy with NEP 49)."""
    global _api
    if _api is None:
        try:
            _api = _Api()
        except Exception as e:  # no NEP 49, no libc symbols, another platform: results are copied as before
            log.debug("results are copied into the mapping: %s", e)
            _api = False
    return _api is not False


def wanted(name: str) -> bool:
    """Whether the next call of `name` should run with the allocator (see RETRY_AFTER)."""
    left = _skip.get(name)
    if not left:
        return True
    _skip[name] = left - 1
    return False


def begin(slot: ResultSlot) -> Any:
    """In the thread that runs the call: big arrays go to `slot` until `end`. Returns what `end` needs."""
    slot.open, slot.reserved, slot.allocations = True, False, 0
    _local.slot = slot
    return _api.set_handler(_api.capsule)


def end(slot: ResultSlot, previous: Any) -> None:
    _api.set_handler(previous)
    _local.slot = None
    slot.open = False


def judge(name: str, slot: ResultSlot, paid: bool) -> None:
    """After a call of `name`: keep the allocator for it when its result came from the mapping at little cost."""
    if paid and slot.allocations <= MAX_ALLOCATIONS:
        _skip.pop(name, None)
    else:
        _skip[name] = RETRY_AFTER


def reserve(slot: ResultSlot) -> None:
    """result_array() is about to use the place: move a block living there out, and keep the place free."""
    if slot.address:
        move_out(slot)
    slot.reserved = True


def move_out(slot: ResultSlot) -> None:
    """The block in `slot` is still referenced and the mapping is needed: give it private pages holding the same
    bytes at the same address, and map the response file anew. The GIL is held throughout (no allocation or
    free by another thread can come between)."""
    api = _api
    address, size = slot.address, slot.size
    page = mmap.PAGESIZE
    low = address & ~(page - 1)
    length = ((address + size + page - 1) & ~(page - 1)) - low
    copy = api.mmap(None, length, _PROT_READ | _PROT_WRITE, _MAP_PRIVATE | _MAP_ANONYMOUS, -1, 0)
    if copy in (None, ctypes.c_void_p(-1).value):
        raise MemoryError(f"cannot move a {size}-byte result out of the response mapping: mmap failed")
    api.memmove(copy, low, length)
    if api.mremap(copy, length, length, _MREMAP_MAYMOVE | _MREMAP_FIXED, low) != low:
        api.munmap(copy, length)
        raise OSError(f"cannot move a {size}-byte result out of the response mapping: mremap failed")
    old = slot.resp.detach()
    del _live[address]
    _moved[address] = (old, size)
    slot.address = slot.size = 0


class _Api:
    """The C pieces: NumPy's handler functions, libc, and the handler capsule (kept alive for ever: arrays made
    with it are freed through it, even during interpreter shutdown)."""

    def __init__(self) -> None:
        if not sys.platform.startswith("linux"):
            raise OSError("moving a live result out of a mapping needs Linux's mremap")
        from numpy._core import _multiarray_umath as umath   # NumPy 2; 1.x is not supported here
        papi = ctypes.pythonapi
        papi.PyCapsule_GetPointer.restype = ctypes.c_void_p
        papi.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
        papi.PyCapsule_New.restype = ctypes.py_object
        papi.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        table = ctypes.cast(papi.PyCapsule_GetPointer(umath._ARRAY_API, None), ctypes.POINTER(ctypes.c_void_p))
        self.set_handler = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object)(table[304])  # PyDataMem_SetHandler
        get_handler = ctypes.PYFUNCTYPE(ctypes.py_object)(table[305])                      # PyDataMem_GetHandler
        if papi.PyCapsule_GetPointer(get_handler(), b"mem_handler") is None:
            raise OSError("NumPy's allocator handler is not a mem_handler capsule")
        libc = ctypes.CDLL(None, use_errno=True)          # malloc and friends may release the GIL
        held = ctypes.PyDLL(None)                         # these keep it (move_out must not be interleaved)
        vp, sz = ctypes.c_void_p, ctypes.c_size_t
        for lib, name, res, args in ((libc, "malloc", vp, [sz]), (libc, "calloc", vp, [sz, sz]),
                                     (libc, "realloc", vp, [vp, sz]), (libc, "free", None, [vp]),
                                     (held, "memmove", vp, [vp, vp, sz]), (held, "memset", vp, [vp, ctypes.c_int, sz]),
                                     (held, "mmap", vp, [vp, sz, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]),
                                     (held, "mremap", vp, [vp, sz, sz, ctypes.c_int, vp]),
                                     (held, "munmap", ctypes.c_int, [vp, sz])):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
            setattr(self, name, fn)
        self.thunks = _thunks(self)
        self.handler = _Handler(b"lesspy", 1, _Allocator(None, *self.thunks))
        self.capsule = papi.PyCapsule_New(ctypes.addressof(self.handler), b"mem_handler", None)
        for obj in (self, self.thunks, self.handler, self.capsule):   # immortal: see the class docstring
            papi.Py_IncRef(ctypes.py_object(obj))


_MALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_CALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t)
_REALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_FREE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


class _Allocator(ctypes.Structure):
    _fields_ = [("ctx", ctypes.c_void_p), ("malloc", _MALLOC), ("calloc", _CALLOC), ("realloc", _REALLOC),
                ("free", _FREE)]


class _Handler(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 127), ("version", ctypes.c_uint8), ("allocator", _Allocator)]


def _thunks(api: _Api) -> Tuple[Any, Any, Any, Any]:
    """The four callbacks. They capture what they use (module globals are gone during shutdown) and never raise:
    an error falls back to the C library."""
    cmalloc, ccalloc, crealloc, cfree, memmove, memset = (api.malloc, api.calloc, api.realloc, api.free,
                                                          api.memmove, api.memset)
    local, live, moved = _local, _live, _moved

    def place(size: int) -> int:
        slot = getattr(local, "slot", None)
        if slot is None:
            return 0
        slot.allocations += 1
        return slot.take(size) if size >= MIN_BYTES else 0

    def malloc(ctx: Any, size: int) -> Any:
        try:
            return place(size) or cmalloc(size)
        except BaseException:
            return cmalloc(size)

    def calloc(ctx: Any, count: int, itemsize: int) -> Any:
        try:
            address = place(count * itemsize)
            if address:
                memset(address, 0, count * itemsize)
                return address
        except BaseException:
            pass
        return ccalloc(count, itemsize)

    def realloc(ctx: Any, address: Any, size: int) -> Any:
        try:
            slot = live.get(address)
            kept = moved.get(address)
            if slot is None and kept is None:
                return crealloc(address, size)
            old_size = slot.size if slot is not None else kept[1]
            new = cmalloc(size)
            if new:
                memmove(new, address, min(old_size, size))
                free(ctx, address, old_size)
            return new
        except BaseException:
            return None

    def free(ctx: Any, address: Any, size: int) -> None:
        try:
            slot = live.pop(address, None)
            if slot is not None:
                slot.address = slot.size = 0
                return
            if moved.pop(address, None) is None:          # a moved block's old mapping goes with it
                cfree(address)
        except BaseException:
            pass

    return _MALLOC(malloc), _CALLOC(calloc), _REALLOC(realloc), _FREE(free)
