"""Clients SIGKILLed mid-call, and a server SIGKILLed mid-call, on a real headless server (issue 7 item 8).

After every batch of killed clients the server must still serve, every lane and its files must be gone,
and its descriptors, threads and resident memory must come back to where they were. A client whose server
is killed must fail at once with ConnectionError, not wait for its timeout.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from stress_support import HERE, record  # noqa: F401 (fixture)
from killrun import check_flat, kill_in_batches, python_client
from lesspy_kernel.client import ClientLane
from lesspy_kernel.wire import Tag
from servers import Headless

SOAK_MODULE = HERE / "soak_module.py"
MODES = ("spin", "sleep", "stream", "mega")
I, N = Tag.INT32, Tag.NDARRAY


@pytest.fixture
def server(tmp_path):
    with Headless(tmp_path / "work", SOAK_MODULE, "--keep-alive", "--capacity", "256K", "--max-clients", "16") as s:
        yield s


def test_killed_clients_short(server):
    figures = kill_in_batches(server.folder, server.pid, 2, 4, 1, MODES, python_client)
    assert figures["clients_killed"] == 8
    check_flat(figures)
    assert server.proc.poll() is None


@pytest.mark.stress
@pytest.mark.timeout(900)
def test_hundred_killed_clients(server, record):
    figures = kill_in_batches(server.folder, server.pid, 10, 10, 20261126, MODES, python_client)
    record("kill_clients", figures)
    assert figures["clients_killed"] == 100
    check_flat(figures)
    assert server.proc.poll() is None


# ---------------------------------------------------------------- the server dies

def kill_server_mid_call(folder: Path, mode: str) -> dict:
    """Start calls, SIGKILL the server; every caller must get ConnectionError, long before its 60 s timeout."""
    server = Headless(folder, SOAK_MODULE, "--keep-alive", "--capacity", "256K")
    outcomes: list = []
    lanes = [ClientLane(folder, timeout=60) for _ in range(1 if mode == "spin" else 4)]
    started = threading.Barrier(len(lanes) + 1)

    def caller(lane: ClientLane, tag: int) -> None:
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
