"""Clients SIGKILLed mid-call, and a server SIGKILLed mid-call, on a real headless server (issue 7 item 8).

After every batch of killed clients the server must still serve, every lane and its files must be gone,
and its descriptors, threads and resident memory must come back to where they were. A client whose server
is killed must fail at once with ConnectionError, not wait for its timeout.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import HERE, ROOT, proc_figures, settled_figures
from lesspy_kernel.client import Lane, status
from lesspy_kernel.protocol import Tag, encode_call
from servers import Headless, wait_for

SOAK_MODULE = HERE / "soak_module.py"
KILL_CLIENT = HERE / "kill_client.py"
MODES = ("spin", "sleep", "stream", "mega")
I, N = Tag.INT32, Tag.NDARRAY
RSS_SLACK_KIB = 32 * 1024


def start_clients(folder: Path, modes, first_tag: int):
    procs = []
    for k, mode in enumerate(modes):
        procs.append((mode, subprocess.Popen([sys.executable, str(KILL_CLIENT), str(folder), mode,
                                              str(first_tag + k)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                             cwd=str(ROOT))))
    for mode, p in procs:
        ready, _, _ = select.select([p.stdout], [], [], 60)
        line = p.stdout.readline() if ready else b""
        assert line.strip() == b"ready", f"client ({mode}) did not start: {p.poll()} {p.stderr.read()[-2000:]!r}"
    return procs


def cleaned_up(folder: Path) -> bool:
    s = status(folder)
    return s["lanes"] == 0 and s["clients"] == 0 and not list(folder.glob("lane-*.mmf"))


def still_serves(folder: Path, tag: int) -> None:
    with Lane(folder) as lane:
        assert lane.call("stamp", (I, I), [tag, 1], [I, I]) == (tag, 1)
        a = np.full(262144, tag, dtype=np.int32)
        out = lane.call("stamp_array", N, [tag, 2, a], [I, I, N])
        assert out.shape == a.shape and (out == tag + 1).all()


def kill_in_batches(folder: Path, server_pid: int, batches: int, per_batch: int, seed: int) -> dict:
    rng = random.Random(seed)
    figures = {"clients_killed": 0, "batches": batches, "per_batch": per_batch, "modes": Counter(),
               "samples": []}
    before = proc_figures(server_pid)
    still_serves(folder, 999)
    wait_for(lambda: cleaned_up(folder), timeout=30, what="the check's lane to go")
    figures["samples"].append(dict(settled_figures(server_pid, before), after="start (one lane used)"))
    for b in range(batches):
        modes = [MODES[(b * per_batch + k) % len(MODES)] for k in range(per_batch)]
        procs = start_clients(folder, modes, 1000 * (b + 1))
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


@pytest.fixture
def server(tmp_path):
    with Headless(tmp_path / "work", SOAK_MODULE, "--keep-alive", "--capacity", "256K", "--max-clients", "16") as s:
        yield s


def test_killed_clients_short(server):
    figures = kill_in_batches(server.folder, server.pid, batches=2, per_batch=4, seed=1)
    assert figures["clients_killed"] == 8
    check_flat(figures)
    assert server.proc.poll() is None


@pytest.mark.stress
@pytest.mark.timeout(900)
def test_hundred_killed_clients(server, record):
    figures = kill_in_batches(server.folder, server.pid, batches=10, per_batch=10, seed=20261126)
    record("kill_clients", figures)
    assert figures["clients_killed"] == 100
    check_flat(figures)
    assert server.proc.poll() is None


# ---------------------------------------------------------------- the server dies

def kill_server_mid_call(folder: Path, mode: str) -> dict:
    """Start calls, SIGKILL the server; every caller must get ConnectionError, long before its 60 s timeout."""
    server = Headless(folder, SOAK_MODULE, "--keep-alive", "--capacity", "256K")
    outcomes: list = []
    lanes = [Lane(folder, timeout=60) for _ in range(1 if mode == "spin" else 4)]
    started = threading.Barrier(len(lanes) + 1)

    def caller(lane: Lane, tag: int) -> None:
        a = np.full(262144, tag, dtype=np.int32)
        started.wait()
        try:
            i = 0
            while True:
                if mode == "spin":
                    lane.call("spin_forever", I)
                elif mode == "stream":
                    assert lane.call("stamp", (I, I), [tag, i], [I, I]) == (tag, i)
                else:
                    out = lane.call("stamp_array", N, [tag, i, a], [I, I, N])
                    assert out[0] == tag + 1 and out[-1] == tag + 1
                i += 1
        except BaseException as e:  # what the caller sees when its server dies
            outcomes.append((type(e), str(e), time.monotonic()))

    threads = [threading.Thread(target=caller, args=(lane, t)) for t, lane in enumerate(lanes)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.3)
    killed_at = time.monotonic()
    os.kill(server.pid, signal.SIGKILL)
    for t in threads:
        t.join(90)
    server.stop()
    for lane in lanes:
        lane.close()
    assert len(outcomes) == len(lanes)
    return {"mode": mode, "callers": len(lanes),
            "errors": sorted({f"{t.__name__}: {m}" for t, m, _ in outcomes}),
            "all_connection_error": all(issubclass(t, ConnectionError) for t, _, _ in outcomes),
            "worst_ms": round(max(at - killed_at for _, _, at in outcomes) * 1000, 1)}


def check_server_kill(f: dict) -> None:
    assert f["all_connection_error"], f"a caller of a killed server got something else than ConnectionError: {f}"
    # the callers' timeout is 60 s: an answer within it can only come from the closed connection
    assert f["worst_ms"] < 60_000, f


def test_server_killed_mid_call_short(tmp_path):
    check_server_kill(kill_server_mid_call(tmp_path / "work", "spin"))


@pytest.mark.stress
@pytest.mark.timeout(600)
def test_server_killed_mid_call(tmp_path, record):
    runs = []
    for r in range(3):
        for mode in ("spin", "stream", "mega"):
            runs.append(kill_server_mid_call(tmp_path / f"work-{mode}-{r}", mode))
    record("kill_server", {"runs": runs})
    for f in runs:
        check_server_kill(f)
