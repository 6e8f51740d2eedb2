"""Protocol v2 from the real C# client: lanes under threads, async and cancellation, several apps, starting together.

Every test runs real Mono programs (tests/csharp/*.cs, compiled with mcs) against a real headless server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import compile_csharp, csharp_checks, run_mono
from kernels import LANE_DEFS, kernel
from lesspy_kernel import wire
from lesspy_kernel.workfolder import pid_alive
from servers import Headless, wait_for

ROOT = Path(__file__).resolve().parent.parent
CS = ROOT / "tests" / "csharp"
LANES_MODULE = ROOT / "tests" / "pymodules" / "cs_lanes_module.py"


@pytest.fixture(scope="module")
def programs(csharp_bin):
    return {name: compile_csharp(csharp_bin, [CS / f"{name}.cs"], f"{name}.exe")
            for name in ("ThreadsClient", "AsyncClient", "ManyAppsClient")}


@pytest.fixture
def server(tmp_path):
    with Headless(tmp_path / "work", LANES_MODULE, "--keep-alive") as s:
        yield s


@pytest.mark.parametrize("calls,elements", [(300, 1024), (40, 262144)], ids=["small", "1MiB"])
def test_threads_share_one_proxy_and_keep_their_own_results(programs, server, calls, elements):
    result = csharp_checks(run_mono(programs["ThreadsClient"], server.folder, 8, calls, elements, timeout=300))
    for name in ("threads_results_correct", "threads_results_unchanged_until_next_call", "threads_stale_views_throw",
                 "derived_interface_timeout", "derived_interface_call"):
        assert name in result, sorted(result)
    assert server.proc.poll() is None


@pytest.mark.skipif(not hasattr(wire.Tag, "NDARRAY_AT"), reason="this server's decoder has no NDARRAY_AT (0x0C) yet")
def test_in_place_request_arrays(programs, server):
    result = csharp_checks(run_mono(programs["ThreadsClient"], server.folder, 2, 10, 100, "inplace", timeout=120))
    for name in ("in_place_request_array", "in_place_array_dead_after_call", "in_place_array_sent_once",
                 "held_view_survives_new_request_array", "in_place_big_request_array", "held_view_dies_on_next_call",
                 "request_array_of_another_thread_refused"):
        assert name in result, sorted(result)


def test_results_that_are_arguments_come_back_as_views_of_the_request(programs, server):
    """NDARRAY_IN_REQUEST from C#: 8 threads echo their own arrays (the reply points into each call's request)
    between other calls; such a view is right, unchanged until the thread's next call, usable as that call's
    argument, untouched by a new in-place request array, and dead afterwards."""
    result = csharp_checks(run_mono(programs["ThreadsClient"], server.folder, 8, 150, 1024, "inrequest", timeout=180))
    for name in ("threads_results_correct", "threads_results_unchanged_until_next_call", "threads_stale_views_throw",
                 "in_request_echo", "in_request_view_as_next_argument", "in_request_view_dies_on_next_call",
                 "in_request_view_survives_new_request_array", "in_request_then_in_place",
                 "in_request_part_of_an_argument", "in_request_echo_of_in_place_array", "in_request_flag_sent",
                 "in_request_then_plain_call"):
        assert name in result, sorted(result)
    assert server.proc.poll() is None


def test_async_cancellation_and_timeouts(programs, server):
    result = csharp_checks(run_mono(programs["AsyncClient"], server.folder, timeout=180))
    for name in ("async_does_not_block", "cancelled_before_start_never_runs",
                 "cancel_while_running_interrupts_and_next_call_goes_at_once", "sync_timeout_interrupts_endless_call",
                 "dispose_during_a_call"):
        assert name in result, sorted(result)
    assert server.proc.poll() is None, "cancellation must never stop the server"
    # the interrupted endless calls really stopped: their lanes (and files) went away with their connections
    wait_for(lambda: not list(server.folder.glob("lane-*.mmf")), timeout=20, what="every lane's files to go")


def test_eight_apps_at_once_and_a_ninth_refused_naming_the_limit(programs, server):
    exe = programs["ManyAppsClient"]
    env = dict(os.environ, MONO_PATH=str(exe.parent))
    apps = [subprocess.Popen(["mono", "--debug", str(exe), str(server.folder), "200"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(8)]
    try:
        for app in apps:
            lines = []
            for line in app.stdout:
                lines.append(line.strip())
                if line.startswith("CHECK") or line.startswith("REFUSED"):
                    break
            assert lines and lines[-1] == "CHECK calls ok", lines
        ninth = run_mono(exe, server.folder, 1, timeout=60)
        assert ninth.returncode == 3 and ninth.stdout.startswith("REFUSED HandshakeException"), ninth.stdout + ninth.stderr
        assert "8" in ninth.stdout and "limit" in ninth.stdout, ninth.stdout
        for app in apps:
            out, err = app.communicate("\n", timeout=60)
            assert app.returncode == 0 and "CHECK still_connected ok" in out, out + err
    finally:
        for app in apps:
            if app.poll() is None:
                app.kill()
    assert server.proc.poll() is None


@pytest.fixture
def app_dir(csharp_bin, tmp_path):
    d = tmp_path / "app"
    d.mkdir()
    (d / "LessPy.dll").write_bytes((csharp_bin / "LessPy.dll").read_bytes())
    return compile_csharp(d, [CS / "KeepAliveClient.cs"], "KeepAliveClient.exe").parent


def test_four_apps_initialize_one_folder_together(app_dir):
    exe = app_dir / "KeepAliveClient.exe"
    pids: set = set()
    try:
        for _ in range(5):
            with ThreadPoolExecutor(4) as pool:
                runs = list(pool.map(lambda _: run_mono(exe, LANES_MODULE, sys.executable, "true", timeout=120), range(4)))
            for run in runs:
                pids.update(int(l.split()[1]) for l in run.stdout.splitlines() if l.startswith("PID "))
                csharp_checks(run)
        assert len(pids) == 1, f"one shared server, not {sorted(pids)}"
        (pid,) = pids
        assert pid_alive(pid)
        assert int((app_dir / "lesspy_work" / "python.pid").read_text()) == pid
        assert (app_dir / "lesspy_work" / "lesspy.lock").exists(), "the start lock stays"
    finally:
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
        for pid in pids:
            wait_for(lambda: not pid_alive(pid), timeout=15, what=f"server {pid} to stop")


def test_notebook_interrupt_and_cancel_while_queued(csharp_bin, tmp_path):
    exe = compile_csharp(csharp_bin, [CS / "InterruptClient.cs"], "InterruptClient.exe")
    with kernel(tmp_path) as k:
        k.run(LANE_DEFS + "%lesspy serve --name intr")
        env = dict(os.environ, MONO_PATH=str(csharp_bin), JUPYTER_RUNTIME_DIR=str(k.runtime_dir))
        app = subprocess.Popen(["mono", "--debug", str(exe), "intr"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env)

        def send(command: str) -> None:
            app.stdin.write(command + "\n")
            app.stdin.flush()

        try:
            assert app.stdout.readline().strip() == "READY"
            send("spin")
            time.sleep(0.7)                                   # spin() now holds the kernel's main thread
            k.km.interrupt_kernel()
            line = app.stdout.readline().strip()
            assert line.startswith("SPIN CallInterruptedException") and "interrupt" in line, line
            assert app.stdout.readline().strip() == "ADD 42", "the next call runs"
            assert "3" in k.run("print(1 + 2)", timeout=20), "the next cell runs"

            msg = k.start("time.sleep(2)")                    # the main thread is busy: the call queues
            time.sleep(0.3)
            send("queue")
            assert app.stdout.readline().strip() == "QUEUED"
            send("cancel")
            line = app.stdout.readline().strip()
            assert line.startswith("CANCELLED") and "Canceled" in line, line
            k.wait_idle(msg)
            assert "[]" in k.run("print(order)"), "a call cancelled while queued never runs"
            send("quit")
            assert app.stdout.readline().strip() == "BYE"
        finally:
            if app.poll() is None:
                app.kill()
            app.wait(10)


def test_a_dead_headless_server_is_named_as_such(programs, tmp_path):
    server = Headless(tmp_path / "work", LANES_MODULE, "--keep-alive")
    exe = programs["ManyAppsClient"]
    env = dict(os.environ, MONO_PATH=str(exe.parent))
    app = subprocess.Popen(["mono", "--debug", str(exe), str(server.folder), "5"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        for line in app.stdout:
            if line.startswith("CHECK"):
                assert line.strip() == "CHECK calls ok", line
                break
        server.stop(signal.SIGKILL)
        out, _ = app.communicate("\n", timeout=60)
        last = next(l for l in out.splitlines() if l.startswith("last call: "))
        assert "headless server" in last and "server.log" in last and "notebook" not in last, last
        assert "CHECK still_connected FAIL" in out
    finally:
        if app.poll() is None:
            app.kill()
        server.stop()
