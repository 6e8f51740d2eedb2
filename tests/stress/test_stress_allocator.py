"""Results made in the response mapping by lesspy's allocator (allocator.py) from 4 threads at once: one call in
three keeps its result in a global, so it is moved out of the mapping before the next reply; every returned
array and every kept one must hold its own caller's values, and kept arrays are dropped from other lanes'
threads while calls go on."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

from stress_support import HERE, proc_figures, record  # noqa: F401 (record: fixture)
from lesspy_kernel import allocator
from lesspy_kernel.client import ClientLane
from lesspy_kernel.wire import Tag
from servers import Headless

SOAK_MODULE = HERE / "soak_module.py"
THREADS = 4
I, N = Tag.INT32, Tag.NDARRAY


@pytest.mark.stress
@pytest.mark.timeout(300)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the allocator is Linux only (mremap)")
def test_kept_results_made_in_the_mapping_keep_their_values(tmp_path, record):
    assert allocator.available(), "lesspy_kernel/_resultalloc.c was not built"
    seconds = 40.0
    wrong: list = []
    errors: list = []
    calls = [0] * THREADS

    def worker(c: int, folder) -> None:
        a = np.empty(65536 + c * 4096, dtype=np.int64)        # 512 KiB and up: above the allocator's minimum
        try:
            with ClientLane(folder) as lane:
                deadline = time.monotonic() + seconds
                i = 0
                while time.monotonic() < deadline:
                    tag = c * 10_000_000 + i
                    a.fill(tag)
                    out = lane.call("keep_plus", N, [c, i, a], [I, I, N])
                    if out.shape != a.shape or not bool((out == tag + 1).all()):
                        wrong.append((c, i, "result"))
                    if i % 50 == 49:
                        bad = lane.call("check_kept", I, [c], [I])
                        if bad:
                            wrong.append((c, i, f"{bad} kept arrays changed"))
                    i += 1
                calls[c] = i
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"thread {c}: {e!r}")

    with Headless(tmp_path / "work", SOAK_MODULE, "--keep-alive", "--capacity", "64K") as server:
        threads = [threading.Thread(target=worker, args=(c, server.folder)) for c in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert not wrong, wrong[:10]
        with ClientLane(server.folder) as lane:
            for c in range(THREADS):
                assert lane.call("check_kept", I, [c], [I]) == 0
        figures = proc_figures(server.pid)
        assert server.proc.poll() is None
    assert sum(calls) > 1000, calls
    record("allocator", {"calls": sum(calls), "threads": THREADS, "seconds": seconds, "wrong": len(wrong),
                         "errors": errors, "server": figures})
