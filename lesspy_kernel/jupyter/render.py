"""How recorded calls look: a plain-text table, and an HTML table with PNG thumbnails and SVG sparklines.

Needs nothing but numpy and the standard library: the PNGs are written here with zlib and struct.
Knows records only by their fields (`Record`), so it does not import the history that uses it.
"""

from __future__ import annotations

import base64
import html
import struct
import zlib
from datetime import datetime
from typing import Any, Iterable, List, Optional, Protocol, Tuple

import numpy as np

from .summaries import DroppedArray, DroppedValue, Stats, array_stats, scalar, shape_text

THUMBNAIL_PX = 64
SPARKLINE_POINTS = 100
_STR_LIMIT = 60
_CELL_LIMIT = 100                      # text-table cell width
_SEQ_ITEMS = 4                         # items of a list/tuple shown before "…"


class Record(Protocol):
    """What rendering needs of a recorded call (history.CallRecord has these)."""

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
    def ok(self) -> bool: ...


def last(records: Iterable[Record], n: Optional[int]) -> List[Any]:
    """The last `n` records (all if None, none if 0); a negative `n` is a ValueError."""
    rows: List[Any] = list(records)
    if n is None:
        return rows
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    return rows[-n:] if n else []


# ---------------------------------------------------------------- text helpers

def record_text(r: Record) -> str:
    """One record on one line (its repr)."""
    args = ", ".join(_summary(a) for a in r.args)
    outcome = (f"raised {r.error_type}: {_one_line(r.error or '')}" if not r.ok else f"-> {_summary(r.result)}")
    return (f"<call #{r.index} {_clock(r.started)} {r.function}({_clip(args, 200)}) "
            f"{_clip(outcome, 200)} in {_duration(r.duration)}>")


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


def _clip(s: str, limit: int) -> str:
    return s if len(s) <= limit else s[:limit - 1] + "…"


def _one_line(s: str) -> str:
    return " ".join(s.split())


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


def _array_text(dtype: str, shape: Tuple[int, ...], s: Stats) -> str:
    parts = [dtype, shape_text(shape)]
    if s.min is not None:
        parts += ["min", _num(s.min), "max", _num(s.max)]
    if s.mean is not None:
        parts += ["mean", _num(s.mean)]
    if s.nans:
        parts += ["nan", str(s.nans)]
    return " ".join(parts)


def value_summary(v: Any) -> str:
    """One short line for a value, as the call tables show it."""
    return _summary(v)


def _summary(v: Any, depth: int = 0) -> str:
    """One short line for a value: repr for scalars, bytes[n], dtype/shape/stats for arrays."""
    if isinstance(v, np.ndarray):
        if v.ndim == 0 and v.dtype.kind in "biufc":
            return f"{v.dtype} {_num(scalar(v[()]))}"
        return _array_text(str(v.dtype), tuple(v.shape), array_stats(v))
    if isinstance(v, DroppedArray):
        return _array_text(v.dtype, v.shape, Stats(v.min, v.max, v.mean, v.nans)) + f" [dropped: {v.reason}]"
    if isinstance(v, DroppedValue):
        what = v.preview or (f"{v.type}[{v.length}]" if v.length is not None else v.type)
        return f"{what} [dropped: {v.reason}]"
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


def _outcome_text(r: Record) -> str:
    if r.ok:
        return _summary(r.result)
    return f"ERROR {r.error_type}: {_one_line(r.error or '')}"


_HEADERS = ("#", "start", "function", "arguments", "result", "duration")


def to_text(records: Iterable[Record], n: Optional[int] = None) -> str:
    """A plain-text table of the last `n` records (all if None), newest last."""
    rows = last(records, n)
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


def _outcome_html(r: Record) -> str:
    if r.ok:
        return _value_html(r.result)
    head = (f'<span style="color:#d32f2f;font-weight:bold">✗ {html.escape(r.error_type or "error")}</span>: '
            f'{html.escape(r.error or "")}')
    if r.traceback:
        return (f'<details><summary>{head}</summary>'
                f'<pre style="font-size:smaller;white-space:pre-wrap;text-align:left">{html.escape(r.traceback)}'
                f'</pre></details>')
    return f'<div>{head}</div>'


def to_html(records: Iterable[Record], n: Optional[int] = None) -> str:
    """An HTML table of the last `n` records (all if None), newest last, with thumbnails and sparklines."""
    rows = last(records, n)
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
