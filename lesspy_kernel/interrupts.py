"""Stopping a call from another thread: never start a call its caller abandoned, interrupt one that runs.

A running call is interrupted the way Python allows it: an exception raised asynchronously in the thread
that runs it (`PyThreadState_SetAsyncExc`), which takes effect at the next bytecode of pure-Python code.
Code blocked inside C (a long NumPy operation, a system call) sees it when it returns to Python. An `async def`
call waits in its event loop's selector, where no bytecode runs: its task is cancelled through the loop instead
(`awaiting`), so it stops at the await it is in, as asyncio's own cancellation does.

The exception must never escape into code that is not the call (the kernel's own loop, the next call): it
is only raised under a lock while the call is marked running, and the end of a call clears any pending one
under the same lock.
"""

from __future__ import annotations

import ctypes
import threading
from enum import Enum
from typing import Any, Optional

from .wire import ErrorKind

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
_set_async_exc.restype = ctypes.c_int
_current = threading.local()


class StopReason(str, Enum):
    """Why a call was stopped from outside (RunningCall.cancel). Its text ends the caller's error message."""

    CANCELLED = "its caller cancelled it or timed out"
    DISCONNECTED = "its caller disconnected"
    SERVER_STOPPING = "the server is stopping"
    ABANDONED = "its caller abandoned it"           # stopped with no reason recorded

    def __str__(self) -> str:       # the text itself in messages (an Enum would print StopReason.CANCELLED)
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @property
    def error_kind(self) -> ErrorKind:
        """The error a call stopped while it ran gets: the server stopping is INTERRUPTED, the others CANCELLED."""
        return ErrorKind.INTERRUPTED if self is StopReason.SERVER_STOPPING else ErrorKind.CANCELLED

    @staticmethod
    def of(reason: Optional[StopReason]) -> StopReason:
        """The reason recorded, or ABANDONED when none was."""
        return reason if reason is not None else StopReason.ABANDONED


class CallCancelled(BaseException):
    """Raised inside a running call that its C# caller abandoned (cancelled, timed out, gone) or that a
    stopping server ends. A BaseException, like asyncio.CancelledError, so `except Exception` lets it pass."""


def _raise_in(thread_id: int, exc: type) -> None:
    _set_async_exc(thread_id, exc)


def _let_it_fire() -> None:
    """Run a few backward jumps (each checks for a pending asynchronous exception) and drop a CallCancelled."""
    for _ in range(3):
        try:
            for _ in range(100):
                pass
            return
        except CallCancelled:
            continue


class RunningCall:
    """The call one lane is running. The lane thread prepares it; any thread may cancel it."""

    def __init__(self, lane: Any = None) -> None:
        self.lane = lane
        self._lock = threading.Lock()
        self._thread: Optional[int] = None
        self.sequence = 0
        self.reason: Optional[StopReason] = None
        self.started = False
        self.active = False
        self._raised = False
        self._aio: Any = None              # (loop, task) of the `async def` the call awaits (awaiting)
        self._aio_cancelled = False

    def prepare(self, sequence: int) -> None:
        """A new call arrived on the lane (called by the thread serving it, before handing it to the executor).

        No lock: `cancel` acts only once `active` is True, and that is stored last (under the GIL, the other
        stores are seen before it)."""
        self.sequence = sequence
        self.reason = None
        self.started = False
        self._raised = False
        self._aio = None
        self._aio_cancelled = False
        self.active = True

    def begin(self) -> bool:
        """On the thread that will run the call: False when it was cancelled before it started."""
        with self._lock:
            if self.reason is not None:
                return False
            self._thread = threading.get_ident()
            self.started = True
        _current.lane = self.lane
        return True

    def end(self) -> None:
        """On the running thread, after the call: from here on no interrupt can reach this thread.

        A CallCancelled that was set but has not fired yet is made to fire here and dropped (the call is over).
        It is never cleared with SetAsyncExc(NULL): that leaves CPython's interpreter-wide "async exception
        pending" flag set, which slows every thread down and hangs a thread that runs under a profiler.
        """
        _current.lane = None
        with self._lock:
            self._thread = None
            pending = self._raised
        if pending:
            _let_it_fire()

    def awaiting(self, loop: Any, task: Any) -> None:
        """On the loop's thread: the call now awaits `task` on `loop` (None, None: no more). A cancel cancels the
        task through its loop from now on; one that came already cancels it at once."""
        with self._lock:
            self._aio = (loop, task) if task is not None else None
            cancel_now = task is not None and self.reason is not None and not self._aio_cancelled
            if cancel_now:
                self._aio_cancelled = True
        if cancel_now:
            task.cancel()

    def why(self) -> Optional[StopReason]:
        """Why the call was stopped (None while it runs undisturbed)."""
        return self.reason

    def finish(self) -> None:
        """The reply is written. No lock: a `cancel` that still sees `active` finds no thread to interrupt
        (`end` cleared it under the lock) and only sets a reason, which the next `prepare` clears."""
        self.active = False

    def cancel(self, reason: StopReason) -> str:
        """Abandon the call: 'not started' (it never will), 'interrupted' (raised in it), or 'idle'."""
        with self._lock:
            if not self.active:
                return "idle"
            if self.reason is None:
                self.reason = reason
            if self._aio is not None:                       # an `async def` waiting in its loop
                if not self._aio_cancelled:
                    self._aio_cancelled = True
                    loop, task = self._aio
                    try:
                        loop.call_soon_threadsafe(task.cancel)   # wakes the loop's selector
                    except RuntimeError:                    # the loop has closed: the call is ending anyway
                        pass
                return "interrupted"
            if self._thread is not None:
                if not self._raised:                        # once: code that swallows it is left alone
                    self._raised = True
                    _raise_in(self._thread, CallCancelled)
                return "interrupted"
            return "running" if self.started else "not started"


def current_call() -> Optional[RunningCall]:
    """The RunningCall of the call running on this thread (None outside a call)."""
    lane = getattr(_current, "lane", None)
    return getattr(lane, "call", None)


def current_lane() -> Any:
    """The lane whose call runs on this thread (None outside a call)."""
    return getattr(_current, "lane", None)
