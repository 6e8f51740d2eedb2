"""Issue 14 follow-up (data integrity first): NdArray views and in-place request arrays of the C# client, with real
Mono programs against real headless servers. A view read while its lane is closed, taken over or reused returns the
right bytes or throws InvalidOperationException; it never returns another call's bytes and never crashes the app.

- a copy racing the proxy's Dispose, or another thread's reconnection to a restarted server: before the fix the lane
  was unmapped under the copy and Mono died of SIGSEGV;
- copies (ToArray, Data, CopyTo) of results whose lane another thread takes over (more threads than the 64 lanes):
  before the fix they returned the other call's bytes without an error;
- a result passed as an argument by another thread while its owner calls again: Python got the next reply's bytes;
- in-place request arrays (NewRequestArray) of threads whose lane was taken over: their writes landed in the thief's
  request, and their own calls failed or sent wrong bytes.

The C# side is tests/csharp/TrustViewsClient.cs; the Python functions are written by the test (VIEWS_MODULE).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import compile_csharp, csharp_checks, run_mono
from servers import Headless, wait_for

ROOT = Path(__file__).resolve().parent.parent

VIEWS_MODULE = '''
import numpy as np

def fill(tag, n):
    return np.full(n, tag, dtype=np.int32)

def count_not(a, tag):
    return int((a != tag).sum())

def add_ints(a, b):
    return a + b
'''


@pytest.fixture(scope="module")
def client(csharp_bin):
    return compile_csharp(csharp_bin, [ROOT / "tests" / "csharp" / "TrustViewsClient.cs"], "TrustViewsClient.exe")


@pytest.fixture
def module(tmp_path):
    path = tmp_path / "views_module.py"
    path.write_text(VIEWS_MODULE)
    return path


def dispose_race(client, module, tmp_path, rounds):
    with Headless(tmp_path / "work", module, "--keep-alive") as server:
        proc = run_mono(client, "dispose", server.folder, rounds, 4_000_000, timeout=300)
        csharp_checks(proc, "copies_racing_dispose_are_right_or_throw", "every_reader_saw_its_view_die")
        assert server.proc.poll() is None


def test_copies_racing_dispose_throw_and_never_crash(client, module, tmp_path):
    """Three threads copy a 16 MB result (ToArray, Data, CopyTo) while the proxy is disposed, 8 rounds: every copy is
    right or throws InvalidOperationException, and the app lives (before: SIGSEGV in the first rounds)."""
    dispose_race(client, module, tmp_path, 8)


@pytest.mark.stress
def test_copies_racing_dispose_stress(client, module, tmp_path):
    dispose_race(client, module, tmp_path, 60)


def restart_race(client, module, tmp_path):
    folder = tmp_path / "work"
    first = Headless(folder, module, "--keep-alive")
    second = None
    go = tmp_path / "go"
    env = dict(os.environ, MONO_PATH=str(client.parent))
    app = subprocess.Popen(["mono", "--debug", str(client), "restart", str(folder), str(go), "8000000"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = app.stdout.readline()
        assert line.strip() == "READY", line + app.stdout.read()
        first.stop(signal.SIGKILL)              # a new server run in the same folder (a restarted kernel or server)
        second = Headless(folder, module, "--keep-alive")
        go.write_text("")
        out, _ = app.communicate(timeout=120)
    finally:
        if app.poll() is None:
            app.kill()
            app.communicate()
        first.stop()
        if second is not None:
            second.stop()
    proc = subprocess.CompletedProcess(app.args, app.returncode, out, "")
    csharp_checks(proc, "copy_racing_reconnect_is_right_or_throws", "reader_saw_its_view_die", "call_after_restart_works")


def test_copy_racing_reconnect_to_restarted_server_throws_and_never_crashes(client, module, tmp_path):
    """A thread copies a 32 MB result in a loop; the server is killed and started again in the same folder; another
    thread's call reconnects, which closes every lane of the old run, the reader's too: the reader's copy throws
    InvalidOperationException, the call works, the app lives (before: SIGSEGV)."""
    restart_race(client, module, tmp_path)


@pytest.mark.stress
def test_copy_racing_reconnect_stress(client, module, tmp_path):
    for i in range(5):
        (tmp_path / str(i)).mkdir()
        restart_race(client, module, tmp_path / str(i))


def test_copies_of_taken_over_views_throw(client, module, tmp_path):
    """72 threads (64 lanes) call and copy their 1 MB results again and again for 4 s: lanes are taken over all the
    time; every copy (ToArray, Data, CopyTo) holds the thread's own data or throws (before: other threads' data)."""
    with Headless(tmp_path / "work", module, "--keep-alive") as server:
        csharp_checks(run_mono(client, "torn", server.folder, 72, 4, 262144, timeout=240),
               "copies_of_taken_over_views_are_right_or_throw", "takeovers_happened", "no_call_errors")


@pytest.mark.stress
def test_copies_of_taken_over_views_stress(client, module, tmp_path):
    with Headless(tmp_path / "work", module, "--keep-alive") as server:
        csharp_checks(run_mono(client, "torn", server.folder, 80, 15, 1_000_000, timeout=600),
               "copies_of_taken_over_views_are_right_or_throw", "takeovers_happened", "no_call_errors")


LIMITED_SERVER = """
import runpy, sys
import lesspy_kernel.server as server
server.MAX_LANES_PER_CLIENT = int(sys.argv.pop(1))    # the server counts fewer lanes than the client may open
sys.argv[0] = "lesspy"
runpy.run_module("lesspy_kernel", run_name="__main__", alter_sys=True)
"""


class LimitedHeadless(Headless):
    """A real headless server whose per-client lane limit is lower than the client's 64: it refuses lanes the client
    believes it may open, as a server does while its side of the client's lane closes lags behind the client's."""

    def __init__(self, folder: Path, module: Path, limit: int) -> None:
        launcher = folder.parent / "limited_server.py"
        launcher.write_text(LIMITED_SERVER)
        self.folder = Path(folder)
        self.log = self.folder.parent / (self.folder.name + ".server.log")
        self._log = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(launcher), str(limit), "serve", "--module", str(module), "--work-folder", str(self.folder),
             "--keep-alive"], stdout=self._log, stderr=subprocess.STDOUT, cwd=str(ROOT))
        wait_for(lambda: self._ready() or self.proc.poll() is not None, what="notify.port")
        assert self.proc.poll() is None, self.output()


def test_server_refusing_lanes_over_its_limit_makes_calls_wait_or_take_over(client, module, tmp_path):
    """A server that counts more of this client's lanes than the client does (its side of a lane's close lags; here:
    a limit of 8) refuses a lane with "this client already has 8 lanes open": the call takes a lane over (or waits
    for one) instead of failing with that HandshakeException (before: the refusal reached the app)."""
    with LimitedHeadless(tmp_path / "work", module, 8) as server:
        csharp_checks(run_mono(client, "torn", server.folder, 16, 2, 4096, timeout=240),
               "copies_of_taken_over_views_are_right_or_throw", "takeovers_happened", "no_call_errors")
        assert "lanes open, the limit per client" in server.output()


def test_shared_result_passed_as_argument_is_right_or_throws(client, module, tmp_path):
    """4 pairs of threads for 4 s: one calls fill again and again, the other passes its latest result to count_not. The argument's
    copy into the request overlaps the owner's next reply: the call throws InvalidOperationException (not sent), or
    Python sees only the right value (before: the next reply's bytes, no error)."""
    with Headless(tmp_path / "work", module, "--keep-alive") as server:
        csharp_checks(run_mono(client, "sharedarg", server.folder, 4, 4, 1_000_000, timeout=240),
               "shared_view_arguments_are_right_or_throw", "shared_view_arguments_no_other_errors")


@pytest.mark.stress
def test_shared_result_passed_as_argument_stress(client, module, tmp_path):
    with Headless(tmp_path / "work", module, "--keep-alive") as server:
        csharp_checks(run_mono(client, "sharedarg", server.folder, 8, 15, 1_000_000, timeout=600),
               "shared_view_arguments_are_right_or_throw", "shared_view_arguments_no_other_errors")


def test_in_place_arrays_are_never_taken_over(client, module, tmp_path):
    """72 threads (64 lanes) for 4 s; half fill in-place request arrays chunk by chunk, half send copies: no call gets
    wrong argument bytes, no in-place array dies before its own thread's call, no error (before: corrupted arguments,
    stale arrays, "can be sent only by the next call" errors)."""
    with Headless(tmp_path / "work", module, "--keep-alive") as server:
        csharp_checks(run_mono(client, "inplace", server.folder, 72, 4, 262144, timeout=240),
               "in_place_arrays_never_corrupted_by_takeovers", "in_place_arrays_never_stale_for_their_own_thread",
               "in_place_no_call_errors")


@pytest.mark.stress
def test_in_place_arrays_stress(client, module, tmp_path):
    with Headless(tmp_path / "work", module, "--keep-alive") as server:
        csharp_checks(run_mono(client, "inplace", server.folder, 80, 15, 262144, timeout=600),
               "in_place_arrays_never_corrupted_by_takeovers", "in_place_arrays_never_stale_for_their_own_thread",
               "in_place_no_call_errors")
