"""`<runtime dir>/lesspy-jpserver-<pid>.json`: how a kernel learns the URL of the Jupyter Server that started it.

The lesspy server extension writes it (0600, no token) and removes it when the server exits; `%lesspy serve` reads
the one of its kernel's parent (or grandparent) process to print the remote URL `<url>lesspy/<name>`. Light on
purpose: a kernel imports this, never jupyter_server or tornado.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Dict, Iterator, Optional
from urllib.parse import quote

from ..workfolder import jupyter_runtime_dir, read_private, write_private


def path_for(pid: int, runtime: Optional[Path] = None) -> Path:
    return (runtime or jupyter_runtime_dir()) / f"lesspy-jpserver-{pid}.json"


def write(pid: int, url: str, base_url: str) -> Path:
    """Write the file of server `pid` (made afresh, 0600) and return its path."""
    runtime = jupyter_runtime_dir()
    runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = path_for(pid, runtime)
    write_private(path, json.dumps({"pid": pid, "url": url, "base_url": base_url}).encode("utf-8"))
    return path


def remove(pid: int) -> None:
    try:
        path_for(pid).unlink()
    except OSError:
        pass


def read(pid: int) -> Optional[Dict[str, object]]:
    """The file of server `pid` when it is there, ours, private and names that pid; else None."""
    try:
        info = json.loads(read_private(path_for(pid)).decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("pid") != pid or not isinstance(info.get("url"), str):
        return None
    return info


def _parent_of(pid: int) -> Optional[int]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _ancestors() -> Iterator[int]:
    """The parent and the grandparent of this process (a kernel started through a wrapper: `uv run`, a script)."""
    parent = os.getppid()
    yield parent
    grand = _parent_of(parent)
    if grand:
        yield grand


def remote_url(name: str) -> Optional[str]:
    """`<server url>lesspy/<name>` (no token) when this process runs under a Jupyter Server with the lesspy
    extension; else None."""
    for pid in _ancestors():
        info = read(pid)
        if info is not None:
            url = str(info["url"])
            return (url if url.endswith("/") else url + "/") + "lesspy/" + quote(name, safe="")
    return None
