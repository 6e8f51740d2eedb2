"""Executors decide on which thread a call runs. The server hands them a function and waits for its result."""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

from .handshake import Mode

R = TypeVar("R")


class Executor:
    """Runs `fn` and returns its result; `stop` is set when the server is stopping."""

    mode = Mode.HEADLESS

    def run(self, fn: Callable[[], R], stop: threading.Event) -> R:
        raise NotImplementedError


class DirectExecutor(Executor):
    """Run on the server thread itself: the headless server, and `%lesspy serve --threaded`."""

    def __init__(self, mode: Mode = Mode.HEADLESS) -> None:
        self.mode = mode

    def run(self, fn: Callable[[], R], stop: threading.Event) -> R:
        return fn()
