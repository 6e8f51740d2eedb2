"""Protocol v2 in a real kernel (ipykernel 7 and 6): Jupyter's interrupt ends a stuck call and the notebook
goes on, %lesspy stop always finishes, calls from several clients queue first come first served, a cancelled
call that is still queued never runs.
"""

from __future__ import annotations

import threading
import time

import pytest

from kernels import FLAVOURS, LANE_DEFS, kernel
from lesspy_kernel.client import ClientLane, RemoteError
from lesspy_kernel.coerce import encode_call
from lesspy_kernel.wire import ErrorKind, Tag
from servers import wait_for

I, D = Tag.INT32, Tag.FLOAT64


@pytest.fixture(params=FLAVOURS)
def k(request, tmp_path):
    with kernel(tmp_path, request.param) as k:
        k.flavour = request.param
        yield k


def test_jupyter_interrupt_ends_a_stuck_call_and_the_next_cell_runs(k):
    k.run(LANE_DEFS + "%lesspy serve --name intr")
    lane = ClientLane(k.folder("intr"))
    lane.send_raw(encode_call("spin", I, []))
    time.sleep(0.5)                                   # spin() now holds the kernel's main thread
    t0 = time.monotonic()
    k.km.interrupt_kernel()
    with pytest.raises(RemoteError) as e:
        lane.receive()
    assert e.value.reply.kind == ErrorKind.INTERRUPTED and "interrupted in the notebook" in e.value.reply.message
    assert time.monotonic() - t0 < 10
    assert "3" in k.run("print(1 + 2)", timeout=20)
    assert lane.call("add", I, [2, 40], [I, I]) == 42
    lane.close()
    k.run("%lesspy stop")


def test_stop_finishes_quickly_with_queued_and_stuck_calls(k):
    k.run(LANE_DEFS + "%lesspy serve --name stopq")
    folder = k.folder("stopq")
    lanes = [ClientLane(folder) for _ in range(3)]
    msg = k.start("time.sleep(1.5)\n%lesspy stop")   # the cell holds the main thread while calls queue up
    time.sleep(0.3)
    for lane in lanes:
        lane.send_raw(encode_call("note", I, [1, 0.0], [I, D]))
    t0 = time.monotonic()
    k.wait_idle(msg, timeout=30)
    assert time.monotonic() - t0 < 8
    for lane in lanes:
        with pytest.raises((RemoteError, ConnectionError)) as e:
            lane.receive()
        if isinstance(e.value, RemoteError):
            assert e.value.reply.kind == ErrorKind.INTERRUPTED and "stopping" in e.value.reply.message
        lane.close()
    assert "[]" in k.run("print(order)"), "queued calls must not run once the server stopped"
    assert not folder.exists()


def test_stop_interrupts_a_stuck_threaded_call(k):
    k.run(LANE_DEFS + "%lesspy serve --name stopt --threaded")
    lane = ClientLane(k.folder("stopt"))
    lane.send_raw(encode_call("spin", I, []))
    time.sleep(0.3)
    t0 = time.monotonic()
    k.run("%lesspy stop", timeout=30)
    assert time.monotonic() - t0 < 8
    lane.close()


def test_calls_from_several_clients_queue_in_arrival_order_and_a_cancelled_one_never_runs(k):
    k.run(LANE_DEFS + "%lesspy serve --name fair")
    folder = k.folder("fair")
    lanes = [ClientLane(folder) for _ in range(4)]           # four clients (each ClientLane has its own client id)
    msg = k.start("time.sleep(1.0)")                   # calls queue behind this cell
    time.sleep(0.2)
    for i, lane in enumerate(lanes):
        if i == 2:
            lane.cancel(lane.seq + 1)                  # abandoned while queued: must never run
        lane.send_raw(encode_call("note", I, [i, 0.0], [I, D]))
        time.sleep(0.05)
    k.wait_idle(msg)
    results = []
    for i, lane in enumerate(lanes):
        try:
            results.append(lane.receive())
        except RemoteError as e:
            assert i == 2 and e.reply.kind == ErrorKind.CANCELLED
            results.append("cancelled")
    assert results == [0, 1, "cancelled", 3]
    assert "[0, 1, 3]" in k.run("print(order)")
    for lane in lanes:
        lane.close()
    k.run("%lesspy stop")


def test_clients_past_the_limit_are_refused_at_once(k):
    k.run(LANE_DEFS + "%lesspy serve --name lim")
    folder = k.folder("lim")
    lanes = [ClientLane(folder) for _ in range(8)]
    t0 = time.monotonic()
    with pytest.raises(Exception, match="8 clients, its limit"):
        ClientLane(folder)
    assert time.monotonic() - t0 < 3
    results = []

    def call(lane: ClientLane, i: int) -> None:
        results.append(lane.call("add", I, [i, 100], [I, I]))

    threads = [threading.Thread(target=call, args=(lane, i)) for i, lane in enumerate(lanes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [100 + i for i in range(8)]
    for lane in lanes:
        lane.close()
    wait_for(lambda: not list(folder.glob("lane-*")), what="closed lanes' files to go")
    k.run("%lesspy stop")


def test_generators_and_async_defs_in_the_notebook(k):
    k.run(LANE_DEFS + "import asyncio\nimport threading\n"
          "def rows(n):\n    for i in range(n):\n        yield threading.current_thread().name\n"
          "async def later(x):\n    await asyncio.sleep(0.01)\n    return x + 1\n"
          "%lesspy serve --name gen")
    with ClientLane(k.folder("gen")) as lane:
        assert list(lane.stream("rows", Tag.STRING, [3], [I])) == ["MainThread"] * 3, "items run on the main thread"
        assert lane.call("later", I, [41], [I]) == 42
    k.run("%lesspy stop")


def test_threaded_calls_survive_a_cycle_in_ipykernels_thread_map(k):
    """ipykernel 6 maps thread ids to the thread that started them and prunes the map only at GC: after a stop
    and a serve, reused ids can form a cycle there, and reading a stream's parent header then never returned."""
    k.run(LANE_DEFS + "%lesspy serve --name cyc --threaded")
    with ClientLane(k.folder("cyc")) as lane:                  # a new lane thread: it has made no call yet
        k.run("import sys, threading, time\n"
              "lesspy_threads = lambda: [t for t in threading.enumerate() if t.name.startswith('lesspy-')]\n"
              "deadline = time.monotonic() + 10\n"        # the lane thread may still be starting (no id yet)
              "while any(t.ident is None for t in lesspy_threads()) and time.monotonic() < deadline:\n"
              "    time.sleep(0.01)\n"
              "for t in lesspy_threads():\n"
              "    if t.ident is not None:\n"
              "        for s in (sys.stdout, sys.stderr):\n"
              "            m = getattr(s, '_thread_to_parent', None)\n"
              "            if isinstance(m, dict):\n"
              "                m[t.ident] = -t.ident\n"
              "                m[-t.ident] = t.ident\n")
        lane.sock.settimeout(20)
        assert lane.call("add", I, [2, 40], [I, I]) == 42
    k.run("%lesspy stop")
