"""Where the core lets a layer above it act, without knowing that layer.

- Thread-start hooks: every thread the server starts (server loop, watchdog, spinner, lanes) runs them first.
  The Jupyter layer adds one while it serves (see lesspy_kernel/jupyter/celloutput.py).
- A child forked inside a served call that comes back into lesspy ends through `end_forked_child`.

Hooks are plain callables taking no argument; one that raises is logged and the others still run.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING, Callable, List

if TYPE_CHECKING:
    from .dispatch import Outcome

Hook = Callable[[], None]

_log = logging.getLogger("lesspy_kernel")
_lock = threading.Lock()
_thread_start: List[Hook] = []


def add_thread_start(hook: Hook) -> None:
    """Run `hook` at the start of every thread the server starts from now on (once, however often it is added)."""
    with _lock:
        if hook not in _thread_start:
            _thread_start.append(hook)


def remove_thread_start(hook: Hook) -> None:
    """Stop running `hook` (nothing happens when it was not added)."""
    with _lock:
        if hook in _thread_start:
            _thread_start.remove(hook)


def thread_started() -> None:
    """Called first by every thread the server starts: runs the thread-start hooks."""
    for hook in tuple(_thread_start):
        try:
            hook()
        except Exception:
            _log.warning("a thread-start hook failed", exc_info=True)


def end_forked_child(outcome: Outcome) -> None:
    """A child forked inside a served call (os.fork) whose call came back into lesspy, by returning or by
    sys.exit(): it must neither write the reply into its parent's mapping nor serve its parent's lanes. It
    ends as a Python program ends: atexit handlers run (lesspy's own do nothing in a child), output is
    flushed, and the exit status is its SystemExit's (0 when the function returned, 1 when it raised)."""
    if outcome.error is None:
        code = 0
    else:
        code = 1 if outcome.exit_status is None else outcome.exit_status
    try:
        atexit._run_exitfuncs()
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code & 0xFF)
