"""Running served calls inside a Jupyter kernel, and stopping them with the notebook's interrupt button."""

from __future__ import annotations

import concurrent.futures
import signal
import threading
from typing import Callable, TypeVar

from ..dispatch import complete_awaitable
from ..wire.handshake import Mode
from ..interrupts import current_call
from .celloutput import CellOutput

R = TypeVar("R")


class KernelExecutor:
    """Run calls in a Jupyter kernel, with their output going to the cell that started the server.

    By default a call runs on the kernel's main thread between cells, never in the middle of one:
    ipykernel >= 7 holds `_main_asyncio_lock` around each execute request, so a coroutine scheduled on
    the io_loop that takes the same lock waits for the running cell; ipykernel 6 has its own dispatch
    queue (`schedule_dispatch`) that runs between messages. `threaded=True` runs calls on the server
    thread instead: they then answer while a cell blocks, at the price of running concurrently with it.
    """

    POLL = 0.25
    runs_inline = False          # the call's output is routed to the serving cell, even when threaded

    def __init__(self, kernel: object, threaded: bool = False) -> None:
        self.kernel = kernel
        self.threaded = threaded
        self.mode = Mode.NOTEBOOK_THREADED if threaded else Mode.NOTEBOOK
        self.output = CellOutput(kernel)            # calls print into the cell that ran %lesspy serve
        self.parent = self.output.parent
        if not threaded and getattr(kernel, "io_loop", None) is None:
            raise RuntimeError("the kernel has no io_loop yet: run %lesspy serve in a cell, not at start-up")

    def run(self, fn: Callable[[], R], stop: threading.Event) -> R:
        if self.threaded:
            return self._with_output(fn)
        done: "concurrent.futures.Future[R]" = concurrent.futures.Future()
        lock = getattr(self.kernel, "_main_asyncio_lock", None)

        async def job() -> None:
            if not done.set_running_or_notify_cancel():
                return
            try:
                if lock is not None:
                    async with lock:
                        done.set_result(await self._on_main_thread(fn))
                else:
                    done.set_result(await self._on_main_thread(fn))
            except BaseException as e:  # handed to the server thread, which reports it
                done.set_exception(e)

        loop = getattr(self.kernel, "io_loop")     # kernel is typed object: ipykernel has no type hints
        if lock is not None:             # ipykernel >= 7.0 (7.0.x still has an undrained schedule_dispatch)
            loop.add_callback(job)
        else:                            # ipykernel 6.x: its own queue, drained between messages
            loop.add_callback(getattr(self.kernel, "schedule_dispatch"), job)
        while True:
            try:
                return done.result(timeout=self.POLL)
            except concurrent.futures.TimeoutError:
                if stop.is_set() and done.cancel():
                    raise RuntimeError("the server stopped before the notebook ran the call") from None

    async def _on_main_thread(self, fn: Callable[[], R]) -> R:
        """Run a call between cells with Jupyter's interrupt armed: the stop button raises KeyboardInterrupt in
        the call (ipykernel ignores SIGINT outside cells), and the C# caller gets an INTERRUPTED error."""
        _interrupt.arm()
        result = self._with_output(fn)
        if getattr(result, "awaitable", None) is not None:      # an `async def`: await it on the kernel's loop
            result = await complete_awaitable(result)  # type: ignore[arg-type,assignment]
        return result

    def _with_output(self, fn: Callable[[], R]) -> R:
        """Send what the call prints to the serving cell's output, and show Python errors there too
        (repeats summarised): see celloutput.py."""
        return self.output.run(fn)


class _MainThreadInterrupt:
    """Jupyter's interrupt (SIGINT) for calls running on the kernel's main thread.

    Between cells ipykernel ignores SIGINT; during a cell it installs Python's default handler and restores its
    own afterwards. This handler stands in for the idle one: it raises KeyboardInterrupt only while a served
    call runs on the main thread (interrupts.current_call: the call is marked running there), and otherwise does
    what the handler it replaced did. The first call after each cell (re)installs it; later calls find it in
    place and make no system call.
    """

    def __init__(self) -> None:
        self.previous: object = signal.SIG_IGN

    def handle(self, signum: int, frame: object) -> None:
        if current_call() is not None:        # signal handlers run on the main thread: the call running there
            raise KeyboardInterrupt
        previous = self.previous
        if callable(previous) and previous is not self.handle:
            previous(signum, frame)

    def arm(self) -> None:
        current = signal.getsignal(signal.SIGINT)
        if current == self.handle:
            return
        try:
            signal.signal(signal.SIGINT, self.handle)
        except (ValueError, OSError):     # not the main thread: nothing to arm
            return
        self.previous = current


_interrupt = _MainThreadInterrupt()
