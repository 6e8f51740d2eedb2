"""The real C# client (LessPy, built with Mono's mcs) under the same stress as the Python client: a soak of small
and 1 MiB calls from 4 threads sharing ONE proxy with every result checked, and C# processes SIGKILLed mid-call
(issue 7 item 8). The server SIGKILLed under a C# caller is tested in tests/test_csharp_lanes.py."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import List

import pytest

from stress_support import HERE, ROOT, proc_figures, record, settled_figures, steady_figures  # noqa: F401 (record: fixture)
from conftest import compile_csharp
from killrun import check_flat, cleaned_up, kill_in_batches
from lesspy_kernel.client import status
from servers import Headless, wait_for

SOAK_MODULE = HERE / "soak_module.py"
CS = ROOT / "tests" / "csharp"
THREADS = 4


@pytest.fixture(scope="module")
def stress_client(csharp_bin) -> Path:
    return compile_csharp(csharp_bin, [CS / "StressClient.cs"], "StressClient.exe")


@pytest.fixture
def server(tmp_path):
    with Headless(tmp_path / "work", SOAK_MODULE, "--keep-alive", "--capacity", "256K", "--max-clients", "16") as s:
        yield s


def csharp_soak(exe: Path, server, calls_per_thread: int, timeout: float, sample_every: float) -> dict:
    """Run the C# soak while sampling the server's descriptors, threads and RSS every `sample_every` seconds."""
    before = steady_figures(server.pid)
    counted = status(server.folder)
    env = dict(os.environ, MONO_PATH=str(exe.parent))
    proc = subprocess.Popen(["mono", "--debug", str(exe), "soak", str(server.folder), str(THREADS),
                             str(calls_per_thread)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    samples = []
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(sample_every):
            samples.append(proc_figures(server.pid))

    mon = threading.Thread(target=sampler, daemon=True)
    mon.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        stop.set()
        mon.join()
        if proc.poll() is None:
            proc.kill()
    assert out.strip(), f"StressClient printed nothing (exit {proc.returncode}):\n{err[-3000:]}"
    f = json.loads(out.strip().splitlines()[-1])
    wait_for(lambda: cleaned_up(server.folder), what="the C# client's lanes to close")
    st = status(server.folder)
    f.update(threads=THREADS, exit_code=proc.returncode, server_before=before, samples=samples,
             server_after=settled_figures(server.pid, before),
             server_counted={"calls": st["calls"] - counted["calls"], "errors": st["errors"] - counted["errors"],
                             "client_calls": f["calls"], "last_error": st["last_error"]})
    f["calls_per_second"] = round(f["calls"] / max(f["seconds"], 1e-9))
    return f


def check_soak(f: dict, calls: int) -> None:
    assert not f["errors"], f["errors"]
    assert f["wrong"] == 0, f
    assert f["calls"] == calls, f
    assert f["exit_code"] == 0, f
    c = f["server_counted"]
    assert (c["calls"], c["errors"]) == (calls, 0), f"the server served each C# request once: {c}"
    before, after = f["server_before"], f["server_after"]
    assert (after["fds"], after["threads"]) == (before["fds"], before["threads"]), f
    # while the lanes were open (the last sample may catch them closing): from a quarter of the run on
    during = f["samples"][:-1]
    if len(during) >= 4:
        base = during[len(during) // 4]
        assert all((x["fds"], x["threads"]) == (base["fds"], base["threads"]) for x in during[len(during) // 4:]), during
        assert during[-1]["rss_kib"] - base["rss_kib"] <= 32 * 1024, during


def test_csharp_soak_short(stress_client, server):
    f = csharp_soak(stress_client, server, 5_000, timeout=300, sample_every=0.05)
    check_soak(f, 5_000 * THREADS)


@pytest.mark.stress
@pytest.mark.timeout(1200)
def test_csharp_soak_million(stress_client, server, record):
    """1,000,000 calls, or as many as fit LESSPY_CS_SOAK_SECONDS (default 300) at the rate a probe measured."""
    target = 1_000_000
    budget = float(os.environ.get("LESSPY_CS_SOAK_SECONDS", "300"))
    probe = csharp_soak(stress_client, server, 5_000, timeout=300, sample_every=1.0)
    check_soak(probe, 5_000 * THREADS)
    rate = probe["calls_per_second"]
    per_thread = min(target, int(rate * budget * 0.9)) // THREADS
    f = csharp_soak(stress_client, server, per_thread, timeout=budget * 2 + 60, sample_every=5.0)
    f.update(target=target, budget_seconds=budget, measured_rate=rate)
    if f["calls"] < target:
        f["why_fewer"] = (f"the probe measured {rate} calls/s, so {target:,} calls would take "
                          f"{target / max(rate, 1):.0f} s, more than the {budget:.0f} s this run may use")
    record("soak_csharp", f)
    check_soak(f, per_thread * THREADS)


def csharp_client(exe: Path):
    def command(folder: Path, mode: str, tag: int) -> List[str]:
        return ["mono", "--debug", str(exe), "kill", str(folder), mode, str(tag)]
    return command


def test_csharp_clients_killed_short(stress_client, server, monkeypatch):
    monkeypatch.setenv("MONO_PATH", str(stress_client.parent))
    figures = kill_in_batches(server.folder, server.pid, 1, 3, 1, ("spin", "stream", "mega"),
                              csharp_client(stress_client))
    assert figures["clients_killed"] == 3
    check_flat(figures)


@pytest.mark.stress
@pytest.mark.timeout(900)
def test_csharp_clients_killed(stress_client, server, monkeypatch, record):
    monkeypatch.setenv("MONO_PATH", str(stress_client.parent))
    figures = kill_in_batches(server.folder, server.pid, 10, 10, 20261126, ("spin", "stream", "mega"),
                              csharp_client(stress_client))
    record("kill_csharp_clients", figures)
    assert figures["clients_killed"] == 100
    check_flat(figures)
