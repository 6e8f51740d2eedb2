"""Fixtures and helpers of the stress runs: the C# fuzz program, /proc sampling, and the record of figures that
tests/stress/report.py turns into docs/RELIABILITY.md after a `make stress` run.

Not a conftest.py: a second module named `conftest` would shadow tests/conftest.py for the test modules that
import from it. The test modules here import the fixtures they use from this module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "last_run.json"
_figures: Dict[str, Any] = {}


@pytest.fixture(scope="session")
def record() -> Iterator[Callable[[str, Dict[str, Any]], None]]:
    """record(section, figures): kept for docs/RELIABILITY.md. Only the full (stress) runs record; when the
    session ends the sections are merged into tests/stress/last_run.json and the report is rewritten."""

    def put(section: str, figures: Dict[str, Any]) -> None:
        figures = dict(figures, recorded_at=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
        _figures[section] = figures

    yield put
    if not _figures:
        return
    try:
        old = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        old = {}
    old.setdefault("sections", {}).update(_figures)
    old["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "mono": _mono_version()}
    RESULTS.write_text(json.dumps(old, indent=1, sort_keys=True) + "\n")
    import report

    report.write(RESULTS, ROOT / "docs" / "RELIABILITY.md")


def _mono_version() -> str:
    try:
        out = subprocess.run(["mono", "--version"], capture_output=True, text=True, timeout=30).stdout
        return out.splitlines()[0] if out else ""
    except (OSError, subprocess.SubprocessError):
        return ""


@pytest.fixture(scope="session")
def fuzz_exe(tmp_path_factory) -> Path:
    """tests/csharp/FuzzCodec.cs compiled together with the library sources (so the internal Codec is reachable)."""
    out = tmp_path_factory.mktemp("fuzz") / "FuzzCodec.exe"
    sources = sorted(str(p) for p in (ROOT / "csharp" / "LessPy").glob("*.cs"))
    cmd = ["mcs", "-unsafe", "-optimize+", "-nologo", "-nowarn:1591", f"-out:{out}", *sources,
           str(ROOT / "tests" / "csharp" / "FuzzCodec.cs")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"mcs failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def proc_figures(pid: int) -> Dict[str, int]:
    """Open descriptors, threads and resident memory (KiB) of a process, from /proc."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    threads = len(os.listdir(f"/proc/{pid}/task"))
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return {"fds": fds, "threads": threads, "rss_kib": rss}


def settled_figures(pid: int, like: Dict[str, int], timeout: float = 10.0) -> Dict[str, int]:
    """proc_figures once descriptors and threads are back to `like`'s (a lane's thread ends a moment after its
    lane is gone from the status), or as they are after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        now = proc_figures(pid)
        if (now["fds"], now["threads"]) == (like["fds"], like["threads"]) or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def steady_figures(pid: int, timeout: float = 10.0) -> Dict[str, int]:
    """proc_figures once descriptors and threads have not changed for 0.3 s (a connection that just closed, such
    as a status request's, leaves its descriptor for a moment), or as they are after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = proc_figures(pid)
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = proc_figures(pid)
        if (now["fds"], now["threads"]) != (last["fds"], last["threads"]):
            stable_since = time.monotonic()
        elif time.monotonic() - stable_since >= 0.3:
            return now
        last = now
    return last
