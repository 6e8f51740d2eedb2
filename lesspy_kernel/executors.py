"""Executors decide on which thread a call runs. The server hands them a function and waits for its result."""

from __future__ import annotations

import threading
from typing import Callable, Protocol, TypeVar

from .wire.handshake import Mode

R = TypeVar("R")


class Executor(Protocol):
    """What the server needs from the place calls run.

    - `run(fn, stop)` runs `fn` (no arguments) and returns its result, or raises what it raised. It may run it on
      another thread; it then waits, and gives up with an exception once `stop` (the server stopping) is set and
      the call has not started. It is called from the server's own threads, one call per lane at a time.
    - `mode` is what the handshake tells a client about where its calls run (headless, notebook, threaded).
    - `runs_inline` is True when `run(fn, stop)` is exactly `fn()` on the calling thread: the server then calls
      `fn` itself (no hand-over) and its spinning thread may serve every lane. An executor that does anything
      around the call (another thread, routed output) says False.
    """

    mode: Mode
    runs_inline: bool

    def run(self, fn: Callable[[], R], stop: threading.Event) -> R:
        ...


class DirectExecutor:
    """Run on the server thread itself: the headless server, and `%lesspy serve --threaded` outside a kernel."""

    runs_inline = True

    def __init__(self, mode: Mode = Mode.HEADLESS) -> None:
        self.mode = mode

    def run(self, fn: Callable[[], R], stop: threading.Event) -> R:
        return fn()
