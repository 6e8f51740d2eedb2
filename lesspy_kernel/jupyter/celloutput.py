"""Where a served call's output goes in a notebook: the cell that ran `%lesspy serve`.

What a called function prints, and the traceback of a function that raised, appear under the serving cell, not
under whatever cell happens to run. ipykernel >= 7 gives each thread (and asyncio task) its own parent header
(`set_thread_parent`), so routing a call's output touches nothing a running cell uses. ipykernel 6 has one parent
header per stream: the call's output is routed by setting it and restoring it afterwards, which is all that
version allows.

Repeated tracebacks are summarised: the first `full` of one error (same function, same exception type) are
printed in full, after that one line every `every` repeats; `lesspy_kernel.calls()` keeps them all. At most
MAX_KINDS (function, exception type) pairs are counted one by one (exception types may be made at run time, from
what a client sent): the others share one count.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar, cast

from ..dispatch import Outcome
from ..hooks import end_forked_child
from ..wire import ErrorKind

R = TypeVar("R")

FULL_TRACEBACKS = 3
SUMMARY_EVERY = 100
MAX_KINDS = 256                       # (function, exception type) pairs counted one by one
OTHER = ("(other functions)", "(other errors)")   # the count the others share


class ErrorSummary:
    """Decides what the serving cell shows for each failed call: a traceback, one line, or nothing."""

    def __init__(self, full: int = FULL_TRACEBACKS, every: int = SUMMARY_EVERY, max_kinds: int = MAX_KINDS) -> None:
        self.full = full
        self.every = every
        self.max_kinds = max_kinds
        self.counts: Dict[Tuple[str, str], int] = {}      # at most max_kinds + 1 keys (OTHER)
        self._lock = threading.Lock()

    def text(self, name: str, error: Any) -> Optional[str]:
        """What to print for this failed call, or None."""
        python_type = _clip(str(getattr(error, "python_type", "") or "error"), 100)
        name = _clip(name, 100)
        key = (name, python_type)
        with self._lock:
            n = self.counts.get(key)
            if n is None and len(self.counts) >= self.max_kinds:
                key = OTHER                       # the table is full: counted together, never a new key
                n = self.counts.get(key)
            n = (n or 0) + 1
            self.counts[key] = n
        message = " ".join(str(getattr(error, "message", "")).split())
        if len(message) > 200:
            message = message[:199] + "…"
        if n <= self.full:
            text = (f"lesspy: {name} raised; the C# caller got a PythonException:\n"
                    f"{getattr(error, 'traceback', '') or python_type + ': ' + message}")
            if n == self.full and key == OTHER:
                text += (f"\nlesspy: {self.max_kinds} kinds of errors (function, exception type) have been seen: "
                         f"further errors of new kinds are counted together, not printed: one line every "
                         f"{self.every}; lesspy_kernel.calls() keeps them all")
            elif n == self.full:
                text += (f"\nlesspy: further {python_type} from {name} are counted, not printed: one line every "
                         f"{self.every}; lesspy_kernel.calls() keeps them all")
            return text
        if n % self.every == 0:
            if key == OTHER:
                return (f"lesspy: errors of other kinds raised {n} times so far (last: {name} raised "
                        f"{python_type}: {message})")
            return f"lesspy: {name} raised {python_type} {n} times so far (last: {message})"
        return None


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


class CellOutput:
    """Runs a call with its output routed to the serving cell (`parent`, the kernel's shell parent header)."""

    def __init__(self, kernel: object, full: int = FULL_TRACEBACKS, every: int = SUMMARY_EVERY) -> None:
        get_parent = getattr(kernel, "get_parent", None)
        self.parent = get_parent("shell") if get_parent else getattr(kernel, "_parent_header", {})
        self.shell = getattr(kernel, "shell", None)
        self.errors = ErrorSummary(full, every)
        self.pid = os.getpid()

    @staticmethod
    def _streams() -> List[Any]:
        return [s for s in (sys.stdout, sys.stderr) if hasattr(s, "set_parent")]

    def run(self, fn: Callable[[], R]) -> R:
        """Call `fn` (which returns an Outcome-like object) with its output in the serving cell."""
        forget_thread_parent()
        streams = self._streams()
        restore = self._route_shell()
        flush = restore is None
        if restore is None:
            restore = [self._route(s) for s in streams]
        try:
            result = fn()
            if os.getpid() != self.pid:          # a child the call forked came back here: it ends
                end_forked_child(cast(Outcome, result))
            error = getattr(result, "error", None)
            if error is not None and error.kind == ErrorKind.PYTHON_ERROR:
                text = self.errors.text(str(getattr(result, "name", "?")), error)
                if text:
                    print(text, file=sys.stderr)
            return result
        finally:
            # ipykernel 7 buffers a thread's output under its own parent and sends it later to the right cell, so no
            # flush is needed (a flush waits for the IOPub thread twice: most of a fast call's time). ipykernel 6's
            # one parent header per stream is restored below, so what the call wrote must go out first.
            for s in streams if flush else ():
                try:
                    s.flush()
                except Exception:
                    pass
            for undo in restore:
                try:
                    undo()
                except Exception:
                    pass

    def _route_shell(self) -> Optional[List[Callable[[], None]]]:
        """ipykernel >= 7: the shell points stdout, stderr and display at the serving cell for this thread only."""
        set_thread_parent = getattr(self.shell, "set_thread_parent", None)
        reset_thread_parent = getattr(self.shell, "reset_thread_parent", None)
        if set_thread_parent is None or reset_thread_parent is None:
            return None
        tokens = set_thread_parent(self.parent)
        return [lambda: reset_thread_parent(tokens)]

    def _route(self, stream: Any) -> Callable[[], None]:
        """Point `stream` at the serving cell for this thread; return what undoes it."""
        set_thread_parent = getattr(stream, "set_thread_parent", None)
        if set_thread_parent is not None:                      # ipykernel >= 7: this thread/task only
            token = set_thread_parent(self.parent)
            return lambda: stream.reset_thread_parent(token)
        saved = getattr(stream, "parent_header", None)          # ipykernel 6: the stream's one parent header
        stream.set_parent(self.parent)

        def undo() -> None:
            if saved is not None:
                stream.parent_header = saved
        return undo


def forget_thread_parent() -> None:
    """Drop this thread from ipykernel's map of which thread started which.

    ipykernel 6 records, by thread id, the thread that started each thread, to send a thread's output to the cell
    that started it, and prunes the map only when the garbage collector runs. Thread ids are reused: once a server
    has been stopped and started again, the map can hold a cycle (A started by B, B by A), and reading a stream's
    parent header from such a thread loops forever. lesspy's threads route their output themselves, so they are
    taken out of the map (it is harmless where the map does not exist).
    """
    ident = threading.get_ident()
    for stream in (sys.stdout, sys.stderr):
        for name in ("_thread_to_parent", "_thread_to_parent_header"):
            table = getattr(stream, name, None)
            if isinstance(table, dict):
                table.pop(ident, None)
