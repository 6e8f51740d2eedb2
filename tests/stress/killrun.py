"""Killing clients mid-call in batches against a real headless server, and checking what the server is left
with (shared by the Python and the C# kill runs)."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable, List, Sequence

import numpy as np

from stress_support import HERE, ROOT, settled_figures, steady_figures
from lesspy_kernel.client import ClientLane, status
from lesspy_kernel.wire import Tag
from servers import wait_for

KILL_CLIENT = HERE / "kill_client.py"
I, N = Tag.INT32, Tag.NDARRAY
RSS_SLACK_KIB = 32 * 1024
Command = Callable[[Path, str, int], List[str]]


def python_client(folder: Path, mode: str, tag: int) -> List[str]:
    return [sys.executable, str(KILL_CLIENT), str(folder), mode, str(tag)]


def start_clients(folder: Path, modes, first_tag: int, command: Command):
    procs = []
    for k, mode in enumerate(modes):
        procs.append((mode, subprocess.Popen(command(folder, mode, first_tag + k), stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, cwd=str(ROOT))))
    for mode, p in procs:
        ready, _, _ = select.select([p.stdout], [], [], 60)
        line = p.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            for _, q in procs:                   # never leave a client behind
                q.kill()
                q.wait(30)
            raise AssertionError(f"client ({mode}) did not start (exit {p.returncode}): {p.stderr.read()[-2000:]!r}")
    return procs


def cleaned_up(folder: Path) -> bool:
    s = status(folder)
    return s["lanes"] == 0 and s["clients"] == 0 and not list(folder.glob("lane-*.mmf"))


def still_serves(folder: Path, tag: int) -> None:
    with ClientLane(folder) as lane:
        assert lane.call("stamp", (I, I), [tag, 1], [I, I]) == (tag, 1)
        a = np.full(262144, tag, dtype=np.int32)
        out = lane.call("stamp_array", N, [tag, 2, a], [I, I, N])
        assert out.shape == a.shape and (out == tag + 1).all()


def kill_in_batches(folder: Path, server_pid: int, batches: int, per_batch: int, seed: int, modes: Sequence[str],
                    command: Command) -> dict:
    """Start `per_batch` clients (cycling through `modes`), SIGKILL them mid-call, check the server cleaned up and
    still serves; `batches` times. Returns the figures, with the server's /proc figures after each batch."""
    rng = random.Random(seed)
    figures = {"clients_killed": 0, "batches": batches, "per_batch": per_batch, "modes": Counter(),
               "samples": []}
    before = steady_figures(server_pid)
    still_serves(folder, 999)
    wait_for(lambda: cleaned_up(folder), timeout=30, what="the check's lane to go")
    figures["samples"].append(dict(settled_figures(server_pid, before), after="start (one lane used)"))
    for b in range(batches):
        batch = [modes[(b * per_batch + k) % len(modes)] for k in range(per_batch)]
        procs = start_clients(folder, batch, 10 * b, command)
        time.sleep(rng.uniform(0.05, 0.3))            # streams run; spin and sleep calls are running
        for _, p in procs:
            os.kill(p.pid, signal.SIGKILL)
        for mode, p in procs:
            p.wait(30)
            err = p.stderr.read().decode(errors="replace")
            assert p.returncode == -signal.SIGKILL, f"client ({mode}) ended by itself ({p.returncode}): {err[-2000:]}"
            p.stdout.close()
            p.stderr.close()
            figures["modes"][mode] += 1
            figures["clients_killed"] += 1
        wait_for(lambda: cleaned_up(folder), timeout=30, what="the killed clients' lanes and files to go")
        still_serves(folder, 2000 + b)
        wait_for(lambda: cleaned_up(folder), timeout=30, what="the check's lane to go")
        figures["samples"].append(dict(settled_figures(server_pid, figures["samples"][0]), after=f"batch {b + 1}"))
    figures["modes"] = dict(figures["modes"])
    figures["server_status"] = {k: v for k, v in status(folder).items()
                                if k in ("calls", "errors", "clients_seen", "lanes", "clients")}
    return figures


def check_flat(figures: dict) -> None:
    first, base, last = figures["samples"][0], figures["samples"][1], figures["samples"][-1]
    assert (last["fds"], last["threads"]) == (first["fds"], first["threads"]), figures["samples"]
    # every batch ends where the first began; memory is compared from the end of the first batch on (the
    # first lanes load what every later one reuses)
    assert all((x["fds"], x["threads"]) == (first["fds"], first["threads"]) for x in figures["samples"]), \
        figures["samples"]
    assert last["rss_kib"] - base["rss_kib"] <= RSS_SLACK_KIB, figures["samples"]
