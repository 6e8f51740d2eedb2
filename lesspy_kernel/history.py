"""The call history: what the C# app sent and got back, with payloads, for `%lesspy calls` and `lesspy_kernel.calls()`.

`CallHistory.observe` is a server observer. It runs on the server thread before the reply goes out, while the
argument arrays are still read-only views over the request mapping that the next call overwrites, so every array
is *copied* into the record (inside tuples and lists too, and in the result). Copied array bytes are held within a
memory budget: when it is exceeded, the payloads of the oldest records are replaced by `DroppedArray` summaries
(shape, dtype, min, max, mean). Small values (scalars, strings, bytes, arrays of at most 64 KiB) are always kept.

Rendering (`to_text`, `to_html`) needs nothing but numpy and the standard library: thumbnails are PNGs written here
with zlib and struct, 1-D arrays get an inline SVG sparkline.
"""

from __future__ import annotations

import base64
import collections
import html
import math
import struct
import threading
import warnings
import zlib
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
THUMBNAIL_PX = 64
SPARKLINE_POINTS = 100
_STR_LIMIT = 60
_CELL_LIMIT = 100                      # text-table cell width
_SEQ_ITEMS = 4                         # items of a list/tuple shown before "…"


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
        args = ", ".join(_summary(a) for a in self.args)
        outcome = (f"raised {self.error_type}: {_one_line(self.error or '')}" if not self.ok
                   else f"-> {_summary(self.result)}")
        return (f"<call #{self.index} {_clock(self.started)} {self.function}({_clip(args, 200)}) "
                f"{_clip(outcome, 200)} in {_duration(self.duration)}>")

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


# ---------------------------------------------------------------- text helpers

def _last(records: Sequence[CallRecord], n: Optional[int]) -> List[CallRecord]:
    records = list(records)
    if n is None:
        return records
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    return records[-n:] if n else []


def _clock(t: datetime) -> str:
    return t.strftime("%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def _duration(seconds: float) -> str:
    if seconds != seconds or seconds < 0:
        return "?"
    us = seconds * 1e6
    if us < 10:
        return f"{us:.1f} µs"
    if us < 1000:
        return f"{us:.0f} µs"
    if us < 1e6:
        ms = us / 1000
        return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s"


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _clip(s: str, limit: int) -> str:
    return s if len(s) <= limit else s[:limit - 1] + "…"


def _one_line(s: str) -> str:
    return " ".join(s.split())


def _shape_text(shape: Tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _num(x: Any) -> str:
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, complex):
        return f"({x.real:.4g}{x.imag:+.4g}j)"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _array_text(dtype: str, shape: Tuple[int, ...], s: _Stats) -> str:
    parts = [dtype, _shape_text(shape)]
    if s.min is not None:
        parts += ["min", _num(s.min), "max", _num(s.max)]
    if s.mean is not None:
        parts += ["mean", _num(s.mean)]
    if s.nans:
        parts += ["nan", str(s.nans)]
    return " ".join(parts)


def _summary(v: Any, depth: int = 0) -> str:
    """One short line for a value: repr for scalars, bytes[n], dtype/shape/stats for arrays."""
    if isinstance(v, np.ndarray):
        if v.ndim == 0 and v.dtype.kind in "biufc":
            return f"{v.dtype} {_num(_scalar(v[()]))}"
        return _array_text(str(v.dtype), tuple(v.shape), _array_stats(v))
    if isinstance(v, DroppedArray):
        return _array_text(v.dtype, v.shape, _Stats(v.min, v.max, v.mean, v.nans)) + f" [dropped: {v.reason}]"
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, str):
        if len(v) > _STR_LIMIT:
            return repr(v[:_STR_LIMIT]) + f"… ({len(v)} chars)"
        return repr(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return f"bytes[{len(v) if not isinstance(v, memoryview) else v.nbytes}]"
    if isinstance(v, (bool, int, complex)) or v is None:
        return repr(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (tuple, list)) and depth < 3:
        items = [_summary(x, depth + 1) for x in v[:_SEQ_ITEMS]]
        if len(v) > _SEQ_ITEMS:
            items.append(f"… {len(v) - _SEQ_ITEMS} more")
        if isinstance(v, tuple):
            return "(" + ", ".join(items) + ("," if len(v) == 1 else "") + ")"
        return "[" + ", ".join(items) + "]"
    if isinstance(v, dict):
        return f"dict[{len(v)}]"
    try:
        text = repr(v)
    except Exception as e:
        text = f"<{type(v).__name__}: repr failed: {type(e).__name__}>"
    return _clip(_one_line(text), _STR_LIMIT)


def _outcome_text(r: CallRecord) -> str:
    if r.ok:
        return _summary(r.result)
    return f"ERROR {r.error_type}: {_one_line(r.error or '')}"


_HEADERS = ("#", "start", "function", "arguments", "result", "duration")


def to_text(records: Iterable[CallRecord], n: Optional[int] = None) -> str:
    """A plain-text table of the last `n` records (all if None), newest last."""
    rows = _last(records, n)
    if not rows:
        return "no lesspy calls recorded"
    table = [list(_HEADERS)]
    for r in rows:
        table.append([str(r.index), _clock(r.started), _clip(r.function, 40),
                      _clip(", ".join(_summary(a) for a in r.args), _CELL_LIMIT),
                      _clip(_outcome_text(r), _CELL_LIMIT), _duration(r.duration)])
    widths = [max(len(row[i]) for row in table) for i in range(len(_HEADERS))]
    right = {0, 5}
    lines = []
    for row in table:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------- PNG and SVG previews

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels: np.ndarray) -> bytes:
    """An 8-bit PNG of a (h, w) grayscale, (h, w, 3) RGB or (h, w, 4) RGBA uint8 array."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.ndim == 2:
        color = 0
        h, w = pixels.shape
        channels = 1
    elif pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        h, w, channels = pixels.shape
        color = 2 if channels == 3 else 6
    else:
        raise ValueError(f"cannot encode pixels of shape {pixels.shape} as PNG")
    if h < 1 or w < 1:
        raise ValueError("a PNG needs at least one pixel")
    rows = pixels.reshape(h, w * channels)
    raw = np.empty((h, w * channels + 1), dtype=np.uint8)
    raw[:, 0] = 0                                     # filter type None on every row
    raw[:, 1:] = rows
    ihdr = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
            + _png_chunk(b"IEND", b""))


def _normalise(a: np.ndarray) -> np.ndarray:
    """Scale finite values min..max to 0..255; NaN becomes 0, +inf 255, -inf 0; a constant image is mid-grey."""
    if a.dtype.kind == "b":
        return np.where(a, 255, 0).astype(np.uint8)
    with np.errstate(all="ignore"):
        if a.dtype.kind == "c":
            a = np.abs(a)
        f = a.astype(np.float64)
        finite = np.isfinite(f)
        out = np.zeros(f.shape, dtype=np.uint8)
        if finite.any():
            lo = float(f[finite].min())
            hi = float(f[finite].max())
            if hi > lo:
                scaled = (f - lo) * (255.0 / (hi - lo))
                out = np.clip(np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0), 0, 255)
                out = np.rint(out).astype(np.uint8)
            else:
                out[finite] = 128
        out[np.isposinf(f)] = 255
        return out


def _thumbnail_pixels(a: np.ndarray) -> Optional[np.ndarray]:
    """A (h, w) or (h, w, 3|4) uint8 image of at most THUMBNAIL_PX a side, or None if `a` is not image-like."""
    if a.ndim < 2 or a.size == 0 or a.dtype.kind not in "biufc":
        return None
    rgb = a.ndim >= 3 and a.shape[-1] in (3, 4) and a.dtype.kind != "c"
    plane = a[(0,) * (a.ndim - 3)] if rgb else a[(0,) * (a.ndim - 2)]
    h, w = plane.shape[0], plane.shape[1]
    if h == 0 or w == 0:
        return None
    step = -(-max(h, w) // THUMBNAIL_PX)              # one stride for both axes keeps the aspect ratio
    small = plane[::step, ::step]
    if rgb and small.dtype == np.uint8:
        return np.ascontiguousarray(small)
    return _normalise(small)


def thumbnail_png(a: np.ndarray) -> Optional[bytes]:
    """The PNG thumbnail `to_html` shows for a 2-D (or image-like) array, or None."""
    try:
        pixels = _thumbnail_pixels(a)
        return None if pixels is None else encode_png(pixels)
    except Exception:
        return None


def _thumbnail_html(a: np.ndarray) -> str:
    try:
        pixels = _thumbnail_pixels(a)
        if pixels is None:
            return ""
        png = encode_png(pixels)
    except Exception:
        return ""
    h, w = pixels.shape[0], pixels.shape[1]
    k = max(1, THUMBNAIL_PX // max(h, w))             # blow small arrays up, still at most 64 px a side
    src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return (f'<img src="{src}" width="{w * k}" height="{h * k}" alt="thumbnail" '
            'style="image-rendering:pixelated;vertical-align:middle;border:1px solid rgba(128,128,128,.4);'
            'margin:2px 6px 2px 0">')


def sparkline_svg(a: np.ndarray, width: int = 100, height: int = 20) -> str:
    """An inline SVG polyline of a 1-D numeric array (at most SPARKLINE_POINTS points), or "" if not drawable."""
    try:
        if a.ndim != 1 or a.size < 2 or a.dtype.kind not in "biufc":
            return ""
        step = -(-a.size // SPARKLINE_POINTS)
        idx = np.arange(0, a.size, step)
        with np.errstate(all="ignore"):
            y = a[::step]
            if y.dtype.kind == "c":
                y = np.abs(y)
            y = y.astype(np.float64)
            keep = np.isfinite(y)
            if keep.sum() < 2:
                return ""
            x = idx[keep].astype(np.float64)
            y = y[keep]
            lo, hi = float(y.min()), float(y.max())
            xs = 1 + (x / max(a.size - 1, 1)) * (width - 2)
            ys = (height - 1) - ((y - lo) / (hi - lo) * (height - 2) if hi > lo else np.full_like(y, (height - 2) / 2))
        points = " ".join(f"{px:.1f},{py:.1f}" for px, py in zip(xs, ys))
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                f'viewBox="0 0 {width} {height}" style="vertical-align:middle;margin:2px 6px 2px 0">'
                f'<polyline points="{points}" fill="none" stroke="currentColor" stroke-width="1"/></svg>')
    except Exception:
        return ""


# ---------------------------------------------------------------- HTML

_MONO = "font-family:var(--jp-code-font-family,monospace)"
_CELL = "vertical-align:top;padding:2px 8px;white-space:nowrap"
_LEFT = _CELL + ";text-align:left"
_RIGHT = _CELL + ";text-align:right"
_ERROR_ROW = "background:rgba(220,40,40,.10)"


def _value_html(v: Any, depth: int = 0) -> str:
    text = f'<span style="{_MONO}">{html.escape(_summary(v))}</span>'
    if isinstance(v, np.ndarray):
        preview = sparkline_svg(v) if v.ndim == 1 else _thumbnail_html(v)
        return f'<div>{preview}{text}</div>' if preview else f"<div>{text}</div>"
    if isinstance(v, (tuple, list)) and depth < 2 and any(isinstance(x, np.ndarray) for x in v):
        items = [_value_html(x, depth + 1) for x in v[:_SEQ_ITEMS]]
        if len(v) > _SEQ_ITEMS:
            items.append(f'<div style="{_MONO}">… {len(v) - _SEQ_ITEMS} more</div>')
        kind = "tuple" if isinstance(v, tuple) else "list"
        return (f'<div style="{_MONO}">{kind}[{len(v)}]</div>'
                f'<div style="padding-left:1em">{"".join(items)}</div>')
    return f"<div>{text}</div>"


def _outcome_html(r: CallRecord) -> str:
    if r.ok:
        return _value_html(r.result)
    head = (f'<span style="color:#d32f2f;font-weight:bold">✗ {html.escape(r.error_type or "error")}</span>: '
            f'{html.escape(r.error or "")}')
    if r.traceback:
        return (f'<details><summary>{head}</summary>'
                f'<pre style="font-size:smaller;white-space:pre-wrap;text-align:left">{html.escape(r.traceback)}'
                f'</pre></details>')
    return f'<div>{head}</div>'


def to_html(records: Iterable[CallRecord], n: Optional[int] = None) -> str:
    """An HTML table of the last `n` records (all if None), newest last, with thumbnails and sparklines."""
    rows = _last(records, n)
    if not rows:
        return "<p><em>no lesspy calls recorded</em></p>"
    head = "".join(
        f'<th style="{_RIGHT if h in ("#", "duration") else _LEFT}">{html.escape(h)}</th>'
        for h in _HEADERS)
    body = []
    for r in rows:
        args = "".join(_value_html(a) for a in r.args) or f'<span style="{_MONO};opacity:.6">()</span>'
        style = f' style="{_ERROR_ROW}"' if not r.ok else ""
        body.append(
            f'<tr class="{"lesspy-ok" if r.ok else "lesspy-error"}"{style}>'
            f'<td style="{_RIGHT};{_MONO}">{r.index}</td>'
            f'<td style="{_LEFT};{_MONO}">{html.escape(_clock(r.started))}</td>'
            f'<td style="{_LEFT};{_MONO}">{html.escape(r.function)}</td>'
            f'<td style="{_LEFT}">{args}</td>'
            f'<td style="{_LEFT}{"" if r.ok else ";white-space:normal;min-width:20em;max-width:48em"}">'
            f'{_outcome_html(r)}</td>'
            f'<td style="{_RIGHT};{_MONO}">{html.escape(_duration(r.duration))}</td></tr>')
    return ('<table class="lesspy-calls" style="border-collapse:collapse;font-size:12px">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
