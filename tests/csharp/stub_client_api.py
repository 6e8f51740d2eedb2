"""Functions of varied types for the generated-client tests (tests/test_stub_client.py)."""

import asyncio
import dataclasses
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np


@dataclasses.dataclass
class Point:
    x: float
    y: float
    label: str


def add_ints(a: int, b: int = 2) -> int:
    return a + b


def scale(x: float, factor: float) -> float:
    return x * factor


def greet(name: str) -> str:
    return "hello " + name


def total(values: List[int]) -> int:
    return sum(values)


def weights(names: List[str]) -> Dict[str, float]:
    return {n: float(len(n)) for n in names}


def maybe(flag: bool) -> Optional[int]:
    return 7 if flag else None


def doubled(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64) * 2


def midpoint(p: Point, q: Point) -> Point:
    return Point((p.x + q.x) / 2, (p.y + q.y) / 2, p.label + q.label)


def extremes(values: List[float]) -> Tuple[float, float]:
    return min(values), max(values)


async def farthest(points: List[Point]) -> Point:
    return max(points, key=lambda p: p.x * p.x + p.y * p.y)


def count(n: int) -> Iterator[int]:
    for i in range(n):
        yield i * i


def nothing(x: int) -> None:
    pass


async def slow_square(x: int) -> int:
    await asyncio.sleep(0.01)
    return x * x


async def wait_forever(x: int) -> None:
    await asyncio.sleep(60)


def fail(msg: str) -> int:
    raise ValueError(msg)
