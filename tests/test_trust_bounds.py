"""Issue 14 ("Trust"), items 11 and 14 and their neighbours: what a client can make the server keep (log lines,
error counts, call records) is bounded in bytes; a process forked by a served function (a multiprocessing pool)
ends like any child and leaves its parent's server alone.

Real headless servers (tests/servers.py), the Python client (lesspy_kernel.client) and real kernels
(tests/kernels.py).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from kernels import FLAVOURS, kernel
from lesspy_kernel.client import ClientLane, RemoteError
from lesspy_kernel.wire import ErrorKind, Tag
from servers import ROOT, Headless

TRUST_MODULE = ROOT / "tests" / "pymodules" / "trust_module.py"
I, S = Tag.INT32, Tag.STRING


# ---------------------------------------------------------------- the log: failed calls, lanes, refusals


def _flood_missing(folder: Path, seconds: float, stop: threading.Event, counts: list) -> None:
    lane = ClientLane(folder)
    try:
        i = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not stop.is_set():
            name = f"missing_{i:08d}_" + "x" * 990          # 1,000-byte names nobody serves
            try:
                lane.call(name, I, [1, 2], [I, I])
            except RemoteError as e:
                assert e.reply.kind == ErrorKind.FUNCTION_NOT_FOUND, e
            i += 1
        counts.append(i)
    finally:
        lane.close()


def _sample_sizes(path: Path, stop: threading.Event, sizes: list) -> None:
    while not stop.is_set():
        try:
            sizes.append(path.stat().st_size)
        except OSError:
            pass
        time.sleep(0.002)


def test_a_flood_of_failed_calls_keeps_the_log_within_its_bound(tmp_path):
    """Calls to missing functions with 1,000-byte names as fast as two clients can send them, with
    --log-max-bytes 64K: the log never holds more than its bound (it reached 35 MB with 1M before: one line per
    call, the rotation once a second), and it still says what happened: some lines in full (names cut), then
    how many more failed like this."""
    _failed_call_flood(tmp_path, clients=2, seconds=3.0)


@pytest.mark.stress
def test_stress_four_clients_flood_failed_calls_for_20_seconds(tmp_path):
    _failed_call_flood(tmp_path, clients=4, seconds=20.0)


def _failed_call_flood(tmp_path: Path, clients: int, seconds: float) -> None:
    log_file = tmp_path / "server.log"
    cap = 64 * 1024
    with Headless(tmp_path / "work", TRUST_MODULE, "--keep-alive", "--log-file", str(log_file),
                  "--log-max-bytes", "64K") as s:
        stop = threading.Event()
        sizes: list = []
        counts: list = []
        sampler = threading.Thread(target=_sample_sizes, args=(log_file, stop, sizes))
        sampler.start()
        flooders = [threading.Thread(target=_flood_missing, args=(s.folder, seconds, stop, counts))
                    for _ in range(clients)]
        for t in flooders:
            t.start()
        for t in flooders:
            t.join(seconds + 30)
        time.sleep(1.5)                 # the summary line of the last second
        stop.set()
        sampler.join(10)
        with ClientLane(s.folder) as lane:
            assert lane.call("add_ints", I, [1, 2], [I, I]) == 3
    calls = sum(counts)
    assert calls > 2000, f"only {calls} calls in the flood"
    peak = max(sizes)
    assert peak <= cap + 32 * 1024, f"server.log reached {peak} bytes with --log-max-bytes 64K ({calls} calls)"
    text = log_file.read_text(errors="replace")
    backup = tmp_path / "server.log.1"
    if backup.exists():
        text = backup.read_text(errors="replace") + text
    failed = [line for line in text.splitlines() if "call missing_" in line and "failed" in line]
    assert failed, text[-3000:]
    assert all(len(line) < 1200 for line in failed), max(failed, key=len)[:300]
    assert "more calls failed like this" in text, text[-3000:]


def test_a_flood_of_lane_openings_keeps_the_log_within_its_bound(tmp_path):
    """A client that opens and closes lanes as fast as it can (one log line each before) and one that asks the
    server to stop while another client is connected (a refusal each time): the log stays within its bound."""
    log_file = tmp_path / "server.log"
    cap = 16 * 1024
    from lesspy_kernel import client
    from lesspy_kernel.transport.handshake import HandshakeError

    with Headless(tmp_path / "work", TRUST_MODULE, "--keep-alive", "--log-file", str(log_file),
                  "--log-max-bytes", "16K") as s:
        stop = threading.Event()
        sizes: list = []
        sampler = threading.Thread(target=_sample_sizes, args=(log_file, stop, sizes))
        sampler.start()
        keeper = ClientLane(s.folder)
        n = 0
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            ClientLane(s.folder).close()
            try:
                client.stop(s.folder, wait=False)
            except HandshakeError:
                pass
            n += 1
        time.sleep(1.5)
        stop.set()
        sampler.join(10)
        assert keeper.call("add_ints", I, [1, 2], [I, I]) == 3
        keeper.close()
    assert n > 200, f"only {n} rounds"
    peak = max(sizes)
    assert peak <= 2 * cap, f"server.log reached {peak} bytes with --log-max-bytes 16K ({n} rounds)"


def test_what_served_functions_print_is_rotated_between_the_watchdogs_seconds(tmp_path):
    """Calls that print (about 11 KB each, as fast as a client sends them) with --log-max-bytes 64K: the log is
    counted as it is printed and looked at every 16 KiB, not once a second: it stays near its cap (it reached
    megabytes before)."""
    log_file = tmp_path / "server.log"
    with Headless(tmp_path / "work", ROOT / "tests" / "pymodules" / "lanes_module.py", "--keep-alive",
                  "--log-file", str(log_file), "--log-max-bytes", "64K") as s:
        stop = threading.Event()
        sizes: list = []
        sampler = threading.Thread(target=_sample_sizes, args=(log_file, stop, sizes))
        sampler.start()
        calls = 0
        with ClientLane(s.folder) as lane:
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                assert lane.call("chatty", I, [100], [I]) == 100
                calls += 1
        stop.set()
        sampler.join(10)
    assert calls > 300, calls
    peak = max(sizes)
    assert peak <= 2 * 64 * 1024, f"server.log reached {peak} bytes with --log-max-bytes 64K ({calls} calls)"


# ---------------------------------------------------------------- forked children (multiprocessing, os.fork)

FORK_MODULE = '''
import atexit
import multiprocessing
import os
import sys
import time


def square(x):
    return x * x


def pool_squares(n):
    with multiprocessing.get_context("fork").Pool(2) as p:     # __exit__ is terminate(): SIGTERM to the workers
        return sum(p.map(square, range(n)))


def slow_square(x):
    time.sleep(0.2)
    return x * x


def pool_first(n):
    """Leaves the pool while its workers are busy: only SIGTERM ends them."""
    with multiprocessing.get_context("fork").Pool(2) as p:
        for x in p.imap(slow_square, range(n)):
            return x


def fork_child(how, marker):
    """Fork; the child ends `how` (exit: sys.exit(3), with an atexit handler that writes `marker`; _exit:
    os._exit(4); return: the function returns in the child too). The parent returns the child's exit code."""
    pid = os.fork()
    if pid == 0:
        atexit.register(lambda: open(marker, "w").write("atexit ran in the child"))
        if how == "exit":
            sys.exit(3)
        if how == "_exit":
            os._exit(4)
        return -1
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def sockets_in_child():
    """How many sockets a child forked here holds (the server's listener, wake-up pair, lane sockets...)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        n = sum(os.readlink(f"/proc/self/fd/{fd}").startswith("socket:") for fd in os.listdir("/proc/self/fd")
                if os.path.exists(f"/proc/self/fd/{fd}"))
        os.write(w, str(n).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    return int(os.read(r, 100))
'''


def _folder_files(folder: Path) -> dict:
    return {p.name: p.stat().st_ino for p in folder.iterdir()}


def test_a_multiprocessing_pool_in_a_served_function_returns_promptly(tmp_path):
    """`with Pool(2) as p: return ...` (fork start method): the pool's terminate sends SIGTERM to its workers,
    which ran the server's SIGTERM handler (server.stop) instead of dying, so a call that left the pool while its
    workers were busy hung forever."""
    module = tmp_path / "fork_module.py"
    module.write_text(FORK_MODULE)
    with Headless(tmp_path / "work", module, "--keep-alive") as s:
        with ClientLane(s.folder, timeout=20) as lane:
            for _ in range(3):
                t0 = time.monotonic()
                assert lane.call("pool_squares", I, [10], [I]) == 285
                assert lane.call("pool_first", I, [50], [I]) == 0
                assert time.monotonic() - t0 < 10
            assert s.proc.poll() is None
        with ClientLane(s.folder) as lane:
            assert lane.call("square", I, [7], [I]) == 49


def test_a_forked_child_holds_none_of_the_servers_sockets(tmp_path):
    """A child forked by a served function (a pool worker may live long) closes its copies of the server's
    listener, wake-up pair and lanes' sockets: a client whose lane the parent closed sees it closed, and nothing
    answers on notify.sock once the parent has gone."""
    module = tmp_path / "fork_module.py"
    module.write_text(FORK_MODULE)
    with Headless(tmp_path / "work", module, "--keep-alive") as s:
        with ClientLane(s.folder) as lane, ClientLane(s.folder) as other:
            assert other.call("square", I, [2], [I]) == 4
            assert lane.call("sockets_in_child", I, [], []) == 0
            assert lane.call("square", I, [3], [I]) == 9


@pytest.mark.parametrize("how, code", [("exit", 3), ("_exit", 4), ("return", 0)])
def test_a_child_forked_by_a_served_function_ends_and_leaves_the_server_alone(tmp_path, how, code):
    """A served function forks and its child ends by sys.exit (atexit handlers run), os._exit, or by returning
    from the function: the child ends with that exit code and never answers, serves or cleans up for its parent
    (before, a child's sys.exit or return came back into the server, which wrote its reply into the parent's
    mapping and went on serving the parent's lane in the child: the parent waited for it forever)."""
    module = tmp_path / "fork_module.py"
    module.write_text(FORK_MODULE)
    marker = tmp_path / "marker.txt"
    with Headless(tmp_path / "work", module, "--keep-alive") as s:
        with ClientLane(s.folder, timeout=15) as lane:
            before = _folder_files(s.folder)
            assert lane.call("fork_child", I, [how, str(marker)], [S, S]) == code
            assert marker.exists() == (how != "_exit")
            assert lane.call("square", I, [5], [I]) == 25
            assert _folder_files(s.folder) == before
        with ClientLane(s.folder) as lane:
            assert lane.call("square", I, [6], [I]) == 36
        assert s.proc.poll() is None


NOTEBOOK_FORKS = """
%load_ext lesspy_kernel
import atexit, os, sys
def fork_child(how, marker):
    pid = os.fork()
    if pid == 0:
        atexit.register(lambda: open(marker, "w").write("atexit ran in the child"))
        if how == "exit":
            sys.exit(3)
        if how == "_exit":
            os._exit(4)
        return -1
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
def square(x):
    return x * x
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("threaded", [False, True], ids=["main-thread", "threaded"])
def test_forks_in_a_served_notebook_leave_its_server_and_folder_alone(tmp_path, threaded, flavour):
    """A notebook serving with %lesspy serve: a served function that forks (the child ends by sys.exit with
    atexit handlers, os._exit, or by returning), and a cell that forks a child which runs its atexit handlers
    (the kernel's, among them %lesspy's stop_server): the parent's server keeps serving and its work folder
    keeps its files. Before, a child whose call came back (sys.exit, return) went on as a copy of the kernel,
    and its parent waited for it forever."""
    with kernel(tmp_path, flavour) as k:
        k.run(NOTEBOOK_FORKS + "%lesspy serve --name forks" + (" --threaded" if threaded else ""))
        folder = k.folder("forks")
        with ClientLane(folder, timeout=20) as lane:
            before = _folder_files(folder)
            for how, code in (("exit", 3), ("_exit", 4), ("return", 0)):
                marker = tmp_path / f"marker-{how}.txt"
                assert lane.call("fork_child", I, [how, str(marker)], [S, S]) == code, how
                assert marker.exists() == (how != "_exit"), how
            # the child ends as a process does: its atexit handlers (IPython's clear the namespace, lesspy's stop
            # the server) and then _exit (sys.exit in a cell is caught by IPython)
            out = k.run("def child():\n"
                        "    import atexit, os\n"
                        "    atexit._run_exitfuncs()\n"
                        "    os._exit(0)\n"
                        "pid = os.fork()\n"
                        "if pid == 0:\n"
                        "    child()\n"
                        "print('child exit code', os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))", timeout=30)
            assert "child exit code 0" in out, out
            assert lane.call("square", I, [9], [I]) == 81
            assert _folder_files(folder) == before
        with ClientLane(folder) as lane:
            assert lane.call("square", I, [3], [I]) == 9
        k.run("%lesspy stop")


# ---------------------------------------------------------------- the notebook: error counts and call records

NOTEBOOK_ERRORS = """
%load_ext lesspy_kernel
%config LessPyMagics.history_records_budget = 1024 * 1024
def raise_kind(n):
    raise type(f"Kind{n}Error", (Exception,), {})("boom " + "y" * 400)
def square(x):
    return x * x
%lesspy serve --name bounds
"""

NOTEBOOK_MEASURE = """
import sys
_m = get_ipython().magics_manager.registry["LessPyMagics"]
_recs = _m.history.records()
print("KINDS", len(_m.server.executor.output.errors.counts))
print("OWN", sum(sys.getsizeof(r.function) + sys.getsizeof(r.error or "") + sys.getsizeof(r.traceback or "")
                 for r in _recs))
print("BYTES", _m.history.record_bytes)
print("RECORDS", len(_recs))
print("LAST", _recs[-1].function[:17])
"""


def _measures(text: str) -> dict:
    return {line.split()[0]: line.split()[1] for line in text.splitlines() if line.split()[:1] and
            line.split()[0] in ("KINDS", "OWN", "BYTES", "RECORDS", "LAST")}


def test_a_notebooks_error_counts_and_call_records_are_bounded(tmp_path):
    """In a notebook serving with %lesspy serve: errors of 400 exception types made at run time from what the
    client sent are counted under at most MAX_KINDS + 1 keys (one each before, for good), and 1,500 calls to
    missing functions with 1,000-byte names keep the call records within history_records_budget (1 MiB here;
    they took 10,000 x a few KiB before: only the record count was bounded), the newest kept."""
    from lesspy_kernel.jupyter.celloutput import MAX_KINDS

    with kernel(tmp_path) as k:
        k.run(NOTEBOOK_ERRORS, timeout=60)
        with ClientLane(k.folder("bounds"), timeout=30) as lane:
            for n in range(400):
                with pytest.raises(RemoteError) as e:
                    lane.call("raise_kind", I, [n], [I])
                assert e.value.reply.python_type == f"Kind{n}Error"
            for i in range(1500):
                with pytest.raises(RemoteError) as e:
                    lane.call(f"missing_{i:08d}_" + "x" * 990, I, [i], [I])
                assert e.value.reply.kind == ErrorKind.FUNCTION_NOT_FOUND
            assert lane.call("square", I, [12], [I]) == 144
        k.drain()
        got = _measures(k.run(NOTEBOOK_MEASURE, timeout=60))
        assert int(got["KINDS"]) <= MAX_KINDS + 1, got
        assert int(got["OWN"]) <= 1024 * 1024 and int(got["BYTES"]) <= 1024 * 1024, got
        assert int(got["RECORDS"]) >= 300, got              # the newest records are all there
        assert got["LAST"] == "square", got
        k.run("%lesspy stop")
