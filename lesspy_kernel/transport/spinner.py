"""The one thread of a server that spins on the lanes' request sequence words (mapped lanes only).

A call that follows the previous one closely is picked up by a thread that is looking at the sequence word,
busily for SPIN_SECONDS and then yielding the CPU between looks: no system call, no wake-up. Only one thread
spins, since spinning holds the GIL. On a headless server it is a thread of its own that watches every lane and
serves their calls itself: a call then costs no thread wake-up and no GIL handoff, which is why many threads of
small calls are slower than one. In a kernel the lane threads take turns at spinning on their own lane.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Optional, Protocol, Tuple

from ..hooks import thread_started
from ..interrupts import CallCancelled
from ..wire import SEQUENCE_WORD
from .mapping import full_fence

log = logging.getLogger("lesspy_kernel")
SPIN_SECONDS = 5e-6         # how long a lane thread spins for the next request, then it yields the CPU between
YIELD_SECONDS = 150e-6      # looks (at once back when nobody else wants it) until this, before it blocks
RESCUE_AFTER = 0.002        # a call the spinner serves for longer than this gives the other lanes back to their threads


class Served(Protocol):
    """A lane the spinner watches: its transport (a MappedLane) and the call loop that serves it."""

    transport: Any

    def serve_if_pending(self, wait: bool = False) -> bool:
        ...


class Spinner:
    """The one thread of a server that spins, and (headless) the lanes it watches and serves.

    Headless (`serve_all`), a thread of its own spins over every lane: while it runs it "covers" them (their
    `waiting` words are 0, so clients send no wake-up byte) and serves their requests itself, one per lane per
    round. When nothing came for YIELD_SECONDS it uncovers them (`waiting` = 1, a fence, then a last look at each
    sequence word: a lane whose request came meanwhile has its thread woken, since its client saw `waiting` 0 and
    sent no byte) and sleeps until a lane thread, woken by a byte, kicks it. A call that runs long on the spinner
    would hold up the covered lanes, so the watchdog uncovers them after RESCUE_AFTER (`rescue`) and their own
    threads serve them meanwhile.

    In a kernel (calls run on its main thread) the lane threads take turns at the role instead, each spinning on
    its own lane (`take_turn`).
    """

    def __init__(self, serve_all: bool, stop: threading.Event) -> None:
        self.serve_all = serve_all
        self._stop = stop                         # the server's: set when it is stopping
        self.lanes: Tuple[Served, ...] = ()       # the server's open lanes (the server keeps this current)
        self.active = False                       # the spinning thread covers the lanes right now
        self.epoch = 0                            # bumped when the watchdog uncovers the lanes under a long call
        self.serving = False                      # the spinner is running a call
        self.served = 0                           # calls the spinner began (the watchdog tells a long one by it)
        self._seen = (0, 0.0)                     # the watchdog's: (served, when it first saw that call running)
        self._kick = threading.Event()
        self._lock = threading.Lock()
        self._turn = threading.Lock()             # a kernel's lane threads: the one spinning holds it
        self.thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------ a kernel: lane threads take turns

    def take_turn(self) -> bool:
        """A lane thread may spin on its own lane now (True) unless another one does."""
        return self._turn.acquire(False)

    def end_turn(self) -> None:
        self._turn.release()

    # ------------------------------------------------------------ headless: one thread serves every lane

    def start(self) -> None:
        if self.serve_all:
            self.thread = threading.Thread(target=self._run, name="lesspy-spinner", daemon=True)
            self.thread.start()

    def kick(self) -> None:
        """A lane thread served a call that came with a byte: let the spinner cover the lanes again."""
        if self.serve_all and not self.active:
            self._kick.set()

    def stop(self) -> None:
        self._kick.set()

    def _run(self) -> None:
        thread_started()
        stop = self._stop
        while not stop.is_set():
            self._kick.wait()
            self._kick.clear()
            if stop.is_set():
                break
            try:
                self._spin()
            except CallCancelled:                # a cancel that arrived as a call ended: it is over
                pass
            except Exception:
                log.exception("the spinning thread failed a round; the lanes' own threads serve meanwhile")

    def _spin(self) -> None:
        stop = self._stop
        lanes: Tuple[Served, ...] = ()
        epoch = -1
        self.active = True
        try:
            now = time.perf_counter()
            spin_end, yield_end = now + SPIN_SECONDS, now + YIELD_SECONDS
            while not stop.is_set():
                if self.lanes is not lanes or self.epoch != epoch:
                    lanes, epoch = self._cover()
                served = False
                for lane in lanes:
                    transport = lane.transport
                    try:
                        pending = transport.req.words[SEQUENCE_WORD] != transport.last_taken
                    except ValueError:           # remapped or closed under us: look again next round
                        continue
                    if pending:
                        self.served += 1
                        self.serving = True
                        served = lane.serve_if_pending() or served
                        self.serving = False
                now = time.perf_counter()
                if served:
                    spin_end, yield_end = now + SPIN_SECONDS, now + YIELD_SECONDS
                elif now > spin_end:
                    if now > yield_end:
                        break
                    os.sched_yield()             # the client may share this CPU (and the GIL goes)
        finally:
            with self._lock:
                self.active = False
                self._uncover(lanes)

    def _cover(self) -> Tuple[Tuple[Served, ...], int]:
        """Take over the current lanes' wake-ups; returns them and the epoch they were covered in."""
        with self._lock:
            lanes = self.lanes
            for lane in lanes:
                transport = lane.transport
                transport.covered = True
                try:
                    transport.req.waiting = 0
                except ValueError:                # closed under us: it leaves the set soon
                    pass
            return lanes, self.epoch

    def _uncover(self, lanes: Tuple[Served, ...]) -> None:
        for lane in lanes:
            transport = lane.transport
            transport.covered = False
            try:
                transport.req.waiting = 1
            except ValueError:
                pass
        full_fence()
        for lane in lanes:
            transport = lane.transport
            if transport.has_request():
                transport.wake()

    def rescue(self) -> None:
        """The watchdog's part, every RESCUE_INTERVAL while the spinner is active: when it has been running the
        same call for RESCUE_AFTER, give the other lanes back to their threads."""
        served, now = self.served, time.monotonic()
        if not self.serving:
            return
        if self._seen[0] != served:
            self._seen = (served, now)
            return
        if now - self._seen[1] < RESCUE_AFTER:
            return
        with self._lock:
            if self.served != served or not self.serving or not self.active:
                return
            self._seen = (served, float("inf"))  # once per call
            self.epoch += 1                       # the spinner covers them again after this call
            self._uncover(self.lanes)
