"""The call history: what the C# app sent and got back, with payloads, for `%lesspy calls` and `lesspy_kernel.calls()`.

`CallHistory.observe` is a server observer. It runs on the server thread before the reply goes out, while the
argument arrays are still read-only views over the request mapping that the next call overwrites, so every array
is *copied* into the record (inside tuples and lists too, and in the result). Copied array bytes are held within a
memory budget: when it is exceeded, the payloads of the oldest records are replaced by `DroppedArray` summaries
(shape, dtype, min, max, mean). Small values (scalars, strings, bytes, arrays of at most 64 KiB) are always kept.

How the records look (text and HTML tables) lives in render.py.
"""

from __future__ import annotations

import collections
import math
import threading
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Deque, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .protocol import ErrorKind

__all__ = [
    "SMALL_ARRAY_BYTES", "DEFAULT_BUDGET", "DEFAULT_MAX_RECORDS", "DroppedArray", "CallRecord", "CallList",
    "CallHistory", "to_text", "to_html", "current_history", "set_current_history", "calls",
]

SMALL_ARRAY_BYTES = 64 * 1024          # arrays of at most this many bytes are never dropped
DEFAULT_BUDGET = 256 * 1024 ** 2
DEFAULT_MAX_RECORDS = 10_000
DISPLAY_LIMIT = 200                    # rows shown by a CallList's repr (to_text/to_html take any n)


# ---------------------------------------------------------------- helpers shared with render.py

def _last(records: Sequence[CallRecord], n: Optional[int]) -> List[CallRecord]:
    records = list(records)
    if n is None:
        return records
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    return records[-n:] if n else []


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _shape_text(shape: Tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


# ---------------------------------------------------------------- array statistics

@dataclass(frozen=True)
class _Stats:
    min: Any = None
    max: Any = None
    mean: Any = None
    nans: int = 0


def _scalar(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x


def _array_stats(a: np.ndarray) -> _Stats:
    """min, max, mean (NaN ignored) and the NaN count; empty or non-numeric arrays give no figures."""
    if a.size == 0 or a.dtype.kind not in "biufc":
        return _Stats()
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            kind = a.dtype.kind
            if kind == "b":
                return _Stats(bool(a.min()), bool(a.max()), float(np.count_nonzero(a)) / a.size)
            if kind in "iu":
                return _Stats(_scalar(a.min()), _scalar(a.max()), float(a.mean(dtype=np.float64)))
            if kind == "c":
                mean = complex(a.mean(dtype=np.complex128))
                nans = 0
                if math.isnan(mean.real) or math.isnan(mean.imag):
                    nanmask = np.isnan(a)
                    nans = int(np.count_nonzero(nanmask))
                    rest = a[~nanmask]
                    mean = complex(rest.mean(dtype=np.complex128)) if rest.size else None
                return _Stats(None, None, mean, nans)
            # real floating point: fmin/fmax skip NaN without copying; the mean needs a second look only
            # when the plain mean came out NaN (NaN present, or +inf and -inf together)
            lo = float(np.fmin.reduce(a, axis=None))
            hi = float(np.fmax.reduce(a, axis=None))
            mean = float(a.mean())       # pairwise summation in the array's precision (float16 sums in float32)
            nans = 0
            if math.isnan(mean):
                nans = int(np.count_nonzero(np.isnan(a)))
                if nans == a.size:
                    return _Stats(None, None, None, nans)
                if nans:
                    mean = float(np.nanmean(a, dtype=np.float64))
            return _Stats(lo, hi, mean, nans)
    except Exception:  # an exotic array must never break recording or rendering
        return _Stats()


# ---------------------------------------------------------------- dropped payloads

@dataclass(frozen=True)
class DroppedArray:
    """Stands in for an array whose payload the history no longer holds (or never held).

    The figures were computed from the real data when the record was made or just before the payload was dropped.
    `reason` is "budget" (dropped to keep the history within its memory budget; also an array bigger than the
    whole budget) or "memory" (the copy itself failed with MemoryError).
    """

    shape: Tuple[int, ...]
    dtype: str
    nbytes: int
    min: Any = None
    max: Any = None
    mean: Any = None
    nans: int = 0
    reason: str = "budget"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @classmethod
    def of(cls, a: np.ndarray, reason: str = "budget") -> "DroppedArray":
        s = _array_stats(a)
        return cls(tuple(int(d) for d in a.shape), str(a.dtype), int(a.nbytes), s.min, s.max, s.mean, s.nans,
                   reason)

    def __repr__(self) -> str:
        return f"<dropped {self.dtype} array {_shape_text(self.shape)}: {self.reason}>"


# ---------------------------------------------------------------- capturing values out of the mapping

class _Capture:
    """Copies one call's values; counts the bytes it holds. Shared views (a result that is an argument) are
    copied once."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.memo: Dict[int, Any] = {}
        self.keep_alive: List[Any] = []       # so the ids in memo stay unique during the capture
        self.held = 0                         # bytes of arrays that may be dropped later
        self.kept = 0                         # bytes of small arrays, never dropped

    def value(self, v: Any, depth: int = 0) -> Any:
        if isinstance(v, np.ndarray):
            key = id(v)
            if key in self.memo:
                return self.memo[key]
            self.keep_alive.append(v)
            self.memo[key] = out = self._array(v)
            return out
        if depth > 32:
            return v
        if type(v) is tuple:
            return tuple(self.value(x, depth + 1) for x in v)
        if type(v) is list:
            return [self.value(x, depth + 1) for x in v]
        if type(v) is dict:
            return {k: self.value(x, depth + 1) for k, x in v.items()}
        if isinstance(v, tuple) and hasattr(v, "_fields"):   # a namedtuple
            try:
                return type(v)(*(self.value(x, depth + 1) for x in v))
            except Exception:
                return tuple(self.value(x, depth + 1) for x in v)
        if isinstance(v, memoryview):                       # may point into a mapping
            try:
                return v.tobytes()
            except (ValueError, TypeError):
                return v
        if isinstance(v, bytearray):
            return bytes(v)
        return v

    def _array(self, v: np.ndarray) -> Any:
        n = int(v.nbytes)
        if n > SMALL_ARRAY_BYTES and n > self.budget:
            return DroppedArray.of(v, "budget")
        try:
            copy = np.array(v, copy=True)
        except MemoryError:
            return DroppedArray.of(v, "memory")
        copy.flags.writeable = True
        if n > SMALL_ARRAY_BYTES:
            self.held += n
        else:
            self.kept += n
        return copy


def _drop_payloads(v: Any, memo: Dict[int, Any], depth: int = 0) -> Any:
    """`v` with every array above SMALL_ARRAY_BYTES replaced by its DroppedArray."""
    if isinstance(v, np.ndarray):
        if v.nbytes <= SMALL_ARRAY_BYTES:
            return v
        key = id(v)
        if key not in memo:
            memo[key] = (v, DroppedArray.of(v, "budget"))
        return memo[key][1]
    if depth > 32:
        return v
    if type(v) is tuple:
        return tuple(_drop_payloads(x, memo, depth + 1) for x in v)
    if type(v) is list:
        return [_drop_payloads(x, memo, depth + 1) for x in v]
    if type(v) is dict:
        return {k: _drop_payloads(x, memo, depth + 1) for k, x in v.items()}
    if isinstance(v, tuple) and hasattr(v, "_fields"):
        try:
            return type(v)(*(_drop_payloads(x, memo, depth + 1) for x in v))
        except Exception:
            return tuple(_drop_payloads(x, memo, depth + 1) for x in v)
    return v


# ---------------------------------------------------------------- records

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
        from .render import record_text

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
    __slots__ = ("record", "held", "kept")

    def __init__(self, record: CallRecord, held: int, kept: int) -> None:
        self.record = record
        self.held = held
        self.kept = kept


class CallHistory:
    """The calls a server has served, newest last. Attach `observe` to `server.observers`.

    Thread-safe: `observe` runs on the server thread while the notebook reads from the main thread.
    """

    def __init__(self, budget: int = DEFAULT_BUDGET, max_records: int = DEFAULT_MAX_RECORDS) -> None:
        self._lock = threading.RLock()
        self._entries: Deque[_Entry] = collections.deque()
        self._heavy: Deque[_Entry] = collections.deque()   # entries still holding droppable arrays, oldest first
        self._held = 0
        self._kept = 0
        self._next_index = 1
        self._budget = self._check("budget", budget)
        self._max_records = self._check("max_records", max_records)

    @staticmethod
    def _check(what: str, value: int) -> int:
        value = int(value)
        if value < 0:
            raise ValueError(f"{what} must be >= 0, not {value}")
        return value

    # ------------------------------------------------------------ settings

    @property
    def budget(self) -> int:
        """Bytes of copied arrays the history may hold; setting a smaller budget drops payloads at once."""
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
    def nbytes(self) -> int:
        """Bytes of array data the history holds (small arrays included)."""
        with self._lock:
            return self._held + self._kept

    # ------------------------------------------------------------ recording

    def observe(self, outcome: Any) -> None:
        """The server observer: record one call's outcome, copying its arrays out of the mappings."""
        capture = _Capture(self._budget)
        args = tuple(capture.value(a) for a in (outcome.args or ()))
        result = capture.value(outcome.result)
        err = outcome.error
        try:
            started = datetime.fromtimestamp(outcome.started)
        except (TypeError, ValueError, OverflowError, OSError):
            started = datetime.now()
        with self._lock:
            record = CallRecord(
                index=self._next_index, function=str(outcome.name), args=args, result=result,
                error=None if err is None else str(err.message),
                error_type=None if err is None else _error_type(err),
                traceback="" if err is None else str(err.traceback or ""),
                started=started, duration=float(outcome.duration or 0.0))
            self._next_index += 1
            entry = _Entry(record, capture.held, capture.kept)
            self._entries.append(entry)
            if entry.held:
                self._heavy.append(entry)
            self._held += entry.held
            self._kept += entry.kept
            self._enforce()

    __call__ = observe

    def _enforce(self) -> None:
        while len(self._entries) > self._max_records:
            entry = self._entries.popleft()
            if entry.held:
                # _heavy is an in-order subset of _entries, so the oldest entry is at its front
                if self._heavy and self._heavy[0] is entry:
                    self._heavy.popleft()
                else:
                    self._heavy.remove(entry)
            self._held -= entry.held
            self._kept -= entry.kept
        while self._held + self._kept > self._budget and self._heavy:
            self._drop(self._heavy.popleft())

    def _drop(self, entry: _Entry) -> None:
        record = entry.record
        memo: Dict[int, Any] = {}
        record.args = tuple(_drop_payloads(a, memo) for a in record.args)
        record.result = _drop_payloads(record.result, memo)
        self._held -= entry.held
        entry.held = 0

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
            self._kept = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        with self._lock:
            return (f"<CallHistory {len(self._entries)} calls, {_size(self._held + self._kept)} of "
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
    from .render import to_text as render_text

    return render_text(records, n)


def to_html(records: Iterable[CallRecord], n: Optional[int] = None) -> str:
    """The last `n` records as an HTML table with thumbnails and sparklines (see render.py)."""
    from .render import to_html as render_html

    return render_html(records, n)
