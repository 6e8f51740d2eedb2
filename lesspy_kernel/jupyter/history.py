"""The call history: what the C# app sent and got back, with payloads, for `%lesspy calls` and `lesspy_kernel.calls()`.

`CallHistory.observe` is a server observer. It runs on the server thread before the reply goes out, while the
argument arrays are still read-only views over the request mapping that the next call overwrites, so every array
is *copied* into the record (inside tuples, lists, dicts and records too, and in the result).

Memory is bounded by a budget of payload bytes, counting every kind of value: arrays, bytes, strings, lists,
tuples, dicts, records, nested. When the history holds more than its budget, the payloads of the oldest records
are replaced by summaries (`DroppedArray`: shape, dtype, min, max, mean; `DroppedValue`: type, length, a one-line
preview). A value bigger than the whole budget is summarised at once, without a copy; with a budget of 0 no
payload is kept and no copy made. What a record always keeps is small: numbers, None, dates, strings of at most
SHORT_TEXT characters, bytes of at most SHORT_BYTES, the summaries, the function's name (up to 1,024 bytes, any
name a client sends, even a missing one), the error message (ERROR_CHARS) and the traceback (TRACEBACK_CHARS).
Those bytes are counted too (`record_bytes`, an estimate from sys.getsizeof): past `records_budget` (default
DEFAULT_RECORDS_BUDGET, 32 MiB) the oldest records go, as they do past `max_records` (10,000). The whole history
stays within budget + records_budget.

How the records look (text and HTML tables) lives in render.py; array statistics in summaries.py.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime as _dt
import decimal
import enum
import sys
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Deque, Dict, Iterable, List, Optional, Tuple

import numpy as np

from ..wire import ErrorKind
from .render import last as _last
from .render import record_text, value_summary
from .render import to_html as _render_html
from .render import to_text as _render_text
from .summaries import DroppedArray, DroppedValue

__all__ = [
    "DEFAULT_BUDGET", "DEFAULT_MAX_RECORDS", "DEFAULT_RECORDS_BUDGET", "SHORT_TEXT", "SHORT_BYTES", "DroppedArray",
    "DroppedValue", "CallRecord", "CallList", "CallHistory", "payload_size", "to_text", "to_html", "current_history",
    "set_current_history", "calls",
]

DEFAULT_BUDGET = 256 * 1024 ** 2
DEFAULT_MAX_RECORDS = 10_000
DEFAULT_RECORDS_BUDGET = 32 * 1024 ** 2    # bytes of the records themselves (names, errors, summaries, small values)
_RECORD_BYTES = 400                    # a record's own objects (CallRecord, datetime, entry, tuples) without values
_SUMMARY_BYTES = 512                   # a DroppedArray / DroppedValue with its preview
DISPLAY_LIMIT = 200                    # rows shown by a CallList's repr (to_text/to_html take any n)
SHORT_TEXT = 60                        # a string this short is part of the record, not a payload
SHORT_BYTES = 32                       # bytes this short likewise
ERROR_CHARS = 500                      # an error message is cut to this many characters in the record
TRACEBACK_CHARS = 2000                 # a traceback keeps its last this many characters in the record
_SUMMARY_ITEMS = 4                     # a dropped tuple/list this short keeps its shape, items summarised
_SUMMARY_DEPTH = 2
_MAX_DEPTH = 32

_ATOMS = (type(None), bool, int, float, complex, np.generic, _dt.date, _dt.time, _dt.timedelta, uuid.UUID,
          enum.Enum, decimal.Decimal)


# ---------------------------------------------------------------- helpers

def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{int(n)} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _is_atom(v: Any) -> bool:
    """Small values every record keeps whatever the budget: they cost no more than their summary would."""
    if isinstance(v, _ATOMS):
        return not isinstance(v, np.generic) or v.nbytes <= SHORT_BYTES
    if isinstance(v, str):
        return len(v) <= SHORT_TEXT
    if isinstance(v, (bytes, bytearray)):
        return len(v) <= SHORT_BYTES
    if isinstance(v, memoryview):
        return v.nbytes <= SHORT_BYTES
    return False


def _atom(v: Any) -> Any:
    if isinstance(v, (memoryview, bytearray)):       # a memoryview may point into a mapping
        try:
            return bytes(v)
        except (ValueError, TypeError):
            return DroppedValue(type(v).__name__, None, 0, "", "unreadable")
    return v


def _is_record(v: Any) -> bool:
    return dataclasses.is_dataclass(v) and not isinstance(v, type)


def payload_size(v: Any, seen: Optional[set] = None, depth: int = 0) -> int:
    """The bytes holding `v` costs: array data, string and bytes objects, containers and what they hold.

    Arrays whose id is in `seen` are not counted again (a result that is one of the arguments).
    """
    if seen is None:
        seen = set()
    if isinstance(v, np.ndarray):
        if id(v) in seen:
            return 0
        seen.add(id(v))
        return int(v.nbytes)
    if isinstance(v, memoryview):
        return int(v.nbytes) + sys.getsizeof(b"")
    try:
        own = sys.getsizeof(v)
    except Exception:
        own = 64
    if depth > _MAX_DEPTH or isinstance(v, (str, bytes, bytearray)) or isinstance(v, _ATOMS):
        return own
    if isinstance(v, (tuple, list, set, frozenset)):
        return own + sum(payload_size(x, seen, depth + 1) for x in v)
    if isinstance(v, dict):
        return own + sum(payload_size(k, seen, depth + 1) + payload_size(x, seen, depth + 1) for k, x in v.items())
    if _is_record(v):
        return own + sum(payload_size(getattr(v, f.name, None), seen, depth + 1) for f in dataclasses.fields(v))
    return own


def _summarise(v: Any, memo: Dict[int, Any], depth: int = 0, reason: str = "budget") -> Any:
    """What a record keeps of `v` without its payload: a DroppedArray / DroppedValue, or `v` itself if small."""
    if _is_atom(v):
        return _atom(v)
    if isinstance(v, (DroppedArray, DroppedValue)):
        return v
    if isinstance(v, np.ndarray):
        key = id(v)
        if key not in memo:
            memo[key] = DroppedArray.of(v, reason)
        return memo[key]
    if type(v) in (tuple, list) and len(v) <= _SUMMARY_ITEMS and depth < _SUMMARY_DEPTH:
        return type(v)(_summarise(x, memo, depth + 1, reason) for x in v)
    try:
        length: Optional[int] = len(v)
    except Exception:
        length = None
    try:
        preview = value_summary(v)
    except Exception:
        preview = ""
    if len(preview) > 100:
        preview = preview[:99] + "…"
    return DroppedValue(type(v).__name__, length, payload_size(v), preview, reason)


# ---------------------------------------------------------------- capturing values out of the mapping

class _Capture:
    """Copies one call's values within the budget and counts the bytes it holds. Shared arrays (a result that is
    an argument) are copied, counted and summarised once."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.memo: Dict[int, Any] = {}        # id of an original array -> its copy or summary
        self.pinned: List[Any] = []       # so the ids in memo stay unique during the capture
        self.held = 0

    def value(self, v: Any) -> Any:
        """One argument, or the result."""
        if _is_atom(v):
            return _atom(v)
        if isinstance(v, (DroppedArray, DroppedValue)):
            return v
        self.pinned.append(v)
        size = payload_size(v, set(k for k, c in self.memo.items()))
        if self.budget == 0 or self.held + size > self.budget:
            return _summarise(v, self.memo)
        try:
            out = self._copy(v)
        except MemoryError:
            return _summarise(v, self.memo, reason="memory")
        self.held += size
        return out

    def _copy(self, v: Any, depth: int = 0) -> Any:
        if isinstance(v, np.ndarray):
            key = id(v)
            if key not in self.memo:
                copied = np.array(v, copy=True)
                copied.flags.writeable = True
                self.pinned.append(v)
                self.memo[key] = copied
            return self.memo[key]
        if isinstance(v, (memoryview, bytearray)):
            return _atom(v)
        if depth > _MAX_DEPTH:
            return v
        if type(v) is tuple:
            return tuple(self._copy(x, depth + 1) for x in v)
        if type(v) is list:
            return [self._copy(x, depth + 1) for x in v]
        if type(v) is dict:
            return {k: self._copy(x, depth + 1) for k, x in v.items()}
        if isinstance(v, tuple) and hasattr(v, "_fields"):   # a namedtuple
            try:
                return type(v)(*(self._copy(x, depth + 1) for x in v))
            except Exception:
                return tuple(self._copy(x, depth + 1) for x in v)
        if _is_record(v):
            try:
                out = copy.copy(v)
                for f in dataclasses.fields(v):
                    object.__setattr__(out, f.name, self._copy(getattr(v, f.name), depth + 1))
                return out
            except Exception:
                return _summarise(v, self.memo)
        return v                                             # immutable (str, bytes) or the caller's own object


def _kept_size(v: Any, depth: int = 0) -> int:
    """Bytes a record's value costs besides the payload bytes counted in the history's `nbytes`: an atom's own
    size, a summary's, a small container's, and a small constant for a kept payload (its bytes are counted
    there)."""
    if isinstance(v, (DroppedArray, DroppedValue)):
        return _SUMMARY_BYTES
    if isinstance(v, np.ndarray):
        return 112
    if type(v) in (tuple, list) and len(v) <= _SUMMARY_ITEMS and depth < _SUMMARY_DEPTH + 1:
        return sys.getsizeof(v) + sum(_kept_size(x, depth + 1) for x in v)
    if _is_atom(v):
        try:
            return sys.getsizeof(v)
        except Exception:
            return 64
    return 64


def _record_size(record: "CallRecord", own_traceback: bool) -> int:
    """What `record` costs without its payloads (see the module docstring); a traceback shared with the record
    before it (the same error again) is counted once."""
    return (_RECORD_BYTES + sys.getsizeof(record.function) + sys.getsizeof(record.error or "")
            + (sys.getsizeof(record.traceback) if own_traceback else 0)
            + sum(_kept_size(a) for a in record.args) + _kept_size(record.result))


# ---------------------------------------------------------------- records

def _clip(s: str, limit: int) -> str:
    return s if len(s) <= limit else s[:limit - 1] + "…"


def _tail(s: str, limit: int) -> str:
    return s if len(s) <= limit else "…" + s[-(limit - 1):]


def _error_type(error: Any) -> str:
    try:
        kind = ErrorKind(error.kind)
    except (ValueError, TypeError):
        return str(error.kind)
    if kind == ErrorKind.PYTHON_ERROR and error.python_type:
        return error.python_type
    return kind.name


@dataclass(eq=False, repr=False)
class CallRecord:
    """One call the C# app made: the function, the arguments it sent, what came back (or the error), and when."""

    index: int
    function: str
    args: tuple
    result: Any
    error: Optional[str]
    error_type: Optional[str]
    traceback: str
    started: datetime
    duration: float

    @property
    def ok(self) -> bool:
        return self.error is None

    def __repr__(self) -> str:
        return record_text(self)

    def _repr_html_(self) -> str:
        return to_html([self])


class CallList(list):
    """A list of CallRecord that shows itself as a table (plain text, or HTML in a notebook)."""

    def __getitem__(self, item: Any) -> Any:
        got = super().__getitem__(item)
        return CallList(got) if isinstance(item, slice) else got

    def to_text(self, n: Optional[int] = None) -> str:
        return to_text(self, n)

    def to_html(self, n: Optional[int] = None) -> str:
        return to_html(self, n)

    def _limited(self) -> Tuple[List[CallRecord], int]:
        if len(self) > DISPLAY_LIMIT:
            return list(self)[-DISPLAY_LIMIT:], len(self) - DISPLAY_LIMIT
        return list(self), 0

    def __repr__(self) -> str:
        shown, hidden = self._limited()
        text = to_text(shown)
        if hidden:
            text = f"({hidden} earlier calls not shown: .to_text() shows all)\n" + text
        return text

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:   # IPython's plain-text display of a list subclass
        p.text(repr(self))

    def _repr_html_(self) -> str:
        shown, hidden = self._limited()
        out = to_html(shown)
        if hidden:
            out = (f'<div style="font-size:smaller;opacity:.7">{hidden} earlier calls not shown '
                   f'(<code>.to_html()</code> shows all)</div>') + out
        return out


class _Entry:
    __slots__ = ("record", "held", "size", "own_traceback")

    def __init__(self, record: CallRecord, held: int, own_traceback: bool) -> None:
        self.record = record
        self.held = held
        self.own_traceback = own_traceback
        self.size = _record_size(record, own_traceback)


class CallHistory:
    """The calls a server has served, newest last. Attach `observe` to `server.observers`.

    Thread-safe: `observe` runs on the server thread while the notebook reads from the main thread.
    """

    def __init__(self, budget: int = DEFAULT_BUDGET, max_records: int = DEFAULT_MAX_RECORDS,
                 records_budget: int = DEFAULT_RECORDS_BUDGET) -> None:
        self._lock = threading.RLock()
        self._entries: Deque[_Entry] = collections.deque()
        self._heavy: Deque[_Entry] = collections.deque()   # entries still holding payloads, oldest first
        self._held = 0
        self._record_bytes = 0
        self._last_traceback = ""
        self._next_index = 1
        self._budget = self._check("budget", budget)
        self._max_records = self._check("max_records", max_records)
        self._records_budget = self._check("records_budget", records_budget)

    @staticmethod
    def _check(what: str, value: int) -> int:
        value = int(value)
        if value < 0:
            raise ValueError(f"{what} must be >= 0, not {value}")
        return value

    # ------------------------------------------------------------ settings

    @property
    def budget(self) -> int:
        """Payload bytes the history may hold; setting a smaller budget drops payloads at once (oldest first)."""
        return self._budget

    @budget.setter
    def budget(self, value: int) -> None:
        with self._lock:
            self._budget = self._check("budget", value)
            self._enforce()

    @property
    def max_records(self) -> int:
        return self._max_records

    @max_records.setter
    def max_records(self, value: int) -> None:
        with self._lock:
            self._max_records = self._check("max_records", value)
            self._enforce()

    @property
    def records_budget(self) -> int:
        """Bytes the records themselves may take (names, errors, tracebacks, summaries, small values, an
        estimate): past it the oldest records go. Setting a smaller one drops them at once."""
        return self._records_budget

    @records_budget.setter
    def records_budget(self, value: int) -> None:
        with self._lock:
            self._records_budget = self._check("records_budget", value)
            self._enforce()

    @property
    def record_bytes(self) -> int:
        """Bytes the records take besides their payloads (at most records_budget)."""
        with self._lock:
            return self._record_bytes

    @property
    def nbytes(self) -> int:
        """Payload bytes the history holds (arrays, strings, bytes, containers: see payload_size)."""
        with self._lock:
            return self._held

    # ------------------------------------------------------------ recording

    def observe(self, outcome: Any) -> None:
        """The server observer: record one call's outcome, copying its payloads out of the mappings."""
        capture = _Capture(self._budget)
        args = tuple(capture.value(a) for a in (outcome.args or ()))
        result = capture.value(outcome.result)
        err = outcome.error
        message = None if err is None else _clip(str(err.message), ERROR_CHARS)
        tb = "" if err is None else _tail(str(err.traceback or ""), TRACEBACK_CHARS)
        try:
            started = datetime.fromtimestamp(outcome.started)
        except (TypeError, ValueError, OverflowError, OSError):
            started = datetime.now()
        with self._lock:
            own_traceback = True
            if tb and tb == self._last_traceback:
                tb = self._last_traceback                # the same error again: share one string
                own_traceback = False
            self._last_traceback = tb
            record = CallRecord(
                index=self._next_index, function=str(outcome.name), args=args, result=result,
                error=message, error_type=None if err is None else _error_type(err), traceback=tb,
                started=started, duration=float(outcome.duration or 0.0))
            self._next_index += 1
            entry = _Entry(record, capture.held, own_traceback)
            self._entries.append(entry)
            if entry.held:
                self._heavy.append(entry)
            self._held += entry.held
            self._record_bytes += entry.size
            self._enforce()

    __call__ = observe

    def _enforce(self) -> None:
        while self._entries and (len(self._entries) > self._max_records or self._record_bytes > self._records_budget):
            self._pop_oldest()
        while self._held > self._budget and self._heavy:
            self._drop(self._heavy.popleft())
        while self._record_bytes > self._records_budget and self._entries:   # the summaries took more room
            self._pop_oldest()

    def _pop_oldest(self) -> None:
        entry = self._entries.popleft()
        if entry.held:
            # _heavy is an in-order subset of _entries, so the oldest entry is at its front
            if self._heavy and self._heavy[0] is entry:
                self._heavy.popleft()
            else:
                self._heavy.remove(entry)
        self._held -= entry.held
        self._record_bytes -= entry.size

    def _drop(self, entry: _Entry) -> None:
        record = entry.record
        memo: Dict[int, Any] = {}
        record.args = tuple(_summarise(a, memo) for a in record.args)
        record.result = _summarise(record.result, memo)
        self._held -= entry.held
        entry.held = 0
        size = _record_size(record, entry.own_traceback)       # summaries instead of payloads
        self._record_bytes += size - entry.size
        entry.size = size

    # ------------------------------------------------------------ reading

    def records(self, n: Optional[int] = None) -> CallList:
        """The recorded calls, oldest first (the last `n` if given)."""
        with self._lock:
            return CallList(_last(self._entries_records(), n))

    def _entries_records(self) -> List[CallRecord]:
        return [e.record for e in self._entries]

    def clear(self) -> None:
        """Forget every record (numbering continues)."""
        with self._lock:
            self._entries.clear()
            self._heavy.clear()
            self._held = 0
            self._record_bytes = 0
            self._last_traceback = ""

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        with self._lock:
            return (f"<CallHistory {len(self._entries)} calls, {_size(self._held)} of "
                    f"{_size(self._budget)} budget>")

    def _repr_html_(self) -> str:
        return self.records()._repr_html_()


# ---------------------------------------------------------------- the registry behind lesspy_kernel.calls()

_current: Optional[CallHistory] = None


def current_history() -> Optional[CallHistory]:
    """The history `lesspy_kernel.calls()` reads (set by `%lesspy serve`), or None."""
    return _current


def set_current_history(history: Optional[CallHistory]) -> None:
    global _current
    _current = history


def calls(n: Optional[int] = None) -> CallList:
    """The calls the C# app made to this notebook, oldest first (the last `n` if given).

    `calls()[-1].args[0]` is the array the last call sent (a copy that outlives the shared mapping).
    """
    h = _current
    return h.records(n) if h is not None else CallList()


def to_text(records: Iterable[CallRecord], n: Optional[int] = None) -> str:
    """The last `n` records as a plain-text table (see render.py)."""
    return _render_text(records, n)


def to_html(records: Iterable[CallRecord], n: Optional[int] = None) -> str:
    """The last `n` records as an HTML table with thumbnails and sparklines (see render.py)."""
    return _render_html(records, n)
