"""Array statistics, and the summaries that stand in for payloads the call history no longer holds.

Both the history (which makes summaries when it drops payloads) and render.py (which shows them) use this module;
it uses neither, so neither imports the other through it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

__all__ = ["Stats", "array_stats", "scalar", "shape_text", "DroppedArray", "DroppedValue"]


@dataclass(frozen=True)
class Stats:
    min: Any = None
    max: Any = None
    mean: Any = None
    nans: int = 0


def scalar(x: Any) -> Any:
    """A numpy scalar as the Python number it holds; anything else unchanged."""
    return x.item() if isinstance(x, np.generic) else x


def shape_text(shape: Tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def array_stats(a: np.ndarray) -> Stats:
    """min, max, mean (NaN ignored) and the NaN count; empty or non-numeric arrays give no figures."""
    if a.size == 0 or a.dtype.kind not in "biufc":
        return Stats()
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            kind = a.dtype.kind
            if kind == "b":
                return Stats(bool(a.min()), bool(a.max()), float(np.count_nonzero(a)) / a.size)
            if kind in "iu":
                return Stats(scalar(a.min()), scalar(a.max()), float(a.mean(dtype=np.float64)))
            if kind == "c":
                mean: Optional[complex] = complex(a.mean(dtype=np.complex128))
                nans = 0
                if mean is not None and (math.isnan(mean.real) or math.isnan(mean.imag)):
                    nanmask = np.isnan(a)
                    nans = int(np.count_nonzero(nanmask))
                    rest = a[~nanmask]
                    mean = complex(rest.mean(dtype=np.complex128)) if rest.size else None
                return Stats(None, None, mean, nans)
            # real floating point: fmin/fmax skip NaN without copying; the mean needs a second look only
            # when the plain mean came out NaN (NaN present, or +inf and -inf together)
            lo = float(np.fmin.reduce(a, axis=None))
            hi = float(np.fmax.reduce(a, axis=None))
            mean = float(a.mean())       # pairwise summation in the array's precision (float16 sums in float32)
            nans = 0
            if math.isnan(mean):
                nans = int(np.count_nonzero(np.isnan(a)))
                if nans == a.size:
                    return Stats(None, None, None, nans)
                if nans:
                    mean = float(np.nanmean(a, dtype=np.float64))
            return Stats(lo, hi, mean, nans)
    except Exception:  # an exotic array must never break recording or rendering
        return Stats()


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
        s = array_stats(a)
        return cls(tuple(int(d) for d in a.shape), str(a.dtype), int(a.nbytes), s.min, s.max, s.mean, s.nans,
                   reason)

    def __repr__(self) -> str:
        return f"<dropped {self.dtype} array {shape_text(self.shape)}: {self.reason}>"


@dataclass(frozen=True)
class DroppedValue:
    """Stands in for any other value whose payload the history no longer holds: a long string, bytes, a big list,
    tuple or dict, a record.

    `type` is the Python type's name, `length` its len() where it has one, `nbytes` what holding it cost, and
    `preview` a one-line text made from the real value before it was dropped (at most about 100 characters).
    """

    type: str
    length: Optional[int]
    nbytes: int
    preview: str = ""
    reason: str = "budget"

    def __repr__(self) -> str:
        size = f"[{self.length}]" if self.length is not None else ""
        return f"<dropped {self.type}{size}: {self.reason}>"
