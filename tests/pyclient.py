"""The Python client of docs/PROTOCOL.md (lesspy_kernel.client), under the names the server tests use."""

from __future__ import annotations

from lesspy_kernel.client import ClientLane as PyClient
from lesspy_kernel.client import RemoteError, status, stop

__all__ = ["PyClient", "RemoteError", "status", "stop"]
