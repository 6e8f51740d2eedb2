"""Log lines a client can cause: cut to a length, escaped, and at most a few of one kind a second."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, Optional

log = logging.getLogger("lesspy_kernel")

LOG_LINES_PER_SECOND = 10    # lines of one kind a client can cause (per call, per connection) logged per second
LOG_TEXT_CHARS = 200         # client-controlled text (function names, messages) in a log line is cut to this


def clip(text: Any, limit: int = LOG_TEXT_CHARS) -> str:
    """Client-controlled text for a log line: at most `limit` characters (saying how long it was), one line,
    control characters escaped (a name holding a newline must not forge a log line)."""
    s = str(text)
    if len(s) > limit:
        s = f"{s[:limit]}... ({len(s)} characters)"
    if not s.isprintable():
        s = "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)
    return s


class LogLimiter:
    """Log lines a client can cause once per call or per connection: at most `per_second` lines of one kind a
    second; the others are counted, and one line then says how many there were and what the last one said
    (`flush`, from the watchdog, says it even when the flood has stopped). Kinds are a few fixed strings."""

    def __init__(self, per_second: int = LOG_LINES_PER_SECOND) -> None:
        self.per_second = per_second
        self._lock = threading.Lock()
        # kind -> [start of the current second, lines logged in it, lines not logged, the last of them]
        self._kinds: Dict[str, list] = {}

    clip = staticmethod(clip)

    def log(self, kind: str, level: int, msg: str, *args: Any, exc_info: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            state = self._kinds.get(kind)
            if state is None:
                state = self._kinds[kind] = [now, 0, 0, None]
            summary = self._take_summary(kind, state, now)
            emit = state[1] < self.per_second
            if emit:
                state[1] += 1
            else:
                state[2] += 1
                state[3] = (level, msg, args)
        if summary:
            log.log(*summary)
        if emit:
            log.log(level, msg, *args, exc_info=exc_info)

    def flush(self) -> None:
        """Say how many lines went unlogged, for every kind whose second is over."""
        now = time.monotonic()
        with self._lock:
            summaries = [self._take_summary(kind, state, now) for kind, state in self._kinds.items()]
        for summary in summaries:
            if summary:
                log.log(*summary)

    @staticmethod
    def _take_summary(kind: str, state: list, now: float) -> Optional[tuple]:
        if now - state[0] < 1.0:
            return None
        summary = None
        if state[2]:
            level, msg, args = state[3]
            try:
                last = msg % args
            except (TypeError, ValueError):
                last = msg
            summary = (level, "%d more %s in %.0f s (the last: %s)", state[2], kind, now - state[0], last)
        state[0], state[1], state[2], state[3] = now, 0, 0, None
        return summary
