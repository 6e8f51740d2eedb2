"""The two memory-mapped files. Created once per server and reused for every call."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from .protocol import HEADER_SIZE, write_header

MIN_CAPACITY = 4096


class Mapping:
    """One file of `capacity` bytes mapped read-write: a 64-byte header, then the payload."""

    def __init__(self, path: Path, capacity: int) -> None:
        if capacity < MIN_CAPACITY:
            raise ValueError(f"capacity {capacity} is below the minimum of {MIN_CAPACITY} bytes")
        self.path = path
        self.capacity = capacity
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, capacity)
            self._mmap = mmap.mmap(fd, capacity, access=mmap.ACCESS_WRITE)
        finally:
            os.close(fd)
        self.view = memoryview(self._mmap)
        write_header(self.view, capacity)
        self.header = self.view[:HEADER_SIZE]

    @property
    def payload_capacity(self) -> int:
        return self.capacity - HEADER_SIZE

    def payload(self, length: int) -> memoryview:
        return self.view[HEADER_SIZE:HEADER_SIZE + length]

    def close(self) -> None:
        """Unmap. If Python code still holds a view (an argument kept in a global), leave it to the GC."""
        self.header.release()
        self.view.release()
        try:
            self._mmap.close()
        except BufferError:
            pass
