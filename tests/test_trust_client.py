"""Issue 14 (Trust), the C# client's robustness, with real Mono programs against real headless servers.

- item 12: opening a lane honours CallTimeout and the CancellationToken; a stopped (SIGSTOP) or GIL-holding server
  is "alive but not answering", not "stopped or crashed";
- item 13: open, undisposed stream enumerators never hold every lane silently: 64 lanes, a fast error that names
  the streams when they are all taken, and the lanes of garbage-collected enumerators taken over;
- item 9: a request on a full file system is an error (the app and the server live on), and a reply whose file was
  truncated is an error, never SIGBUS;
- item 8 (C# side): a cancelled stream stops, a null int[][] row arrives as None, a lone surrogate is an argument error.

The C# side is tests/csharp/TrustRobustClient.cs; the Python functions are tests/pymodules/trust_module.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import compile_csharp, csharp_checks, run_mono
from servers import Headless

ROOT = Path(__file__).resolve().parent.parent
TRUST_MODULE = ROOT / "tests" / "pymodules" / "trust_module.py"


@pytest.fixture(scope="module")
def client(csharp_bin):
    return compile_csharp(csharp_bin, [ROOT / "tests" / "csharp" / "TrustRobustClient.cs"], "TrustRobustClient.exe")


def run(client, mode, server, timeout=120):
    try:
        return run_mono(client, mode, server.folder, timeout=timeout)
    finally:
        if server.proc.poll() is None:
            os.kill(server.pid, signal.SIGCONT)     # never leave a stopped server behind


def test_lane_opening_honours_call_timeout_and_token(client, tmp_path):
    """A SIGSTOPped server: a call that needs a new lane ends within CallTimeout (2 s, not the handshake's 10 s) saying
    the server is alive but not answering (and how to resume it); a 300 ms token ends it as a cancellation near 300 ms.
    A server holding the GIL in a long C loop: the same, naming the GIL. Both answer again afterwards. A stream
    cancelled while the server is stopped ends at once. Once the server is killed, it "has stopped or crashed"."""
    with Headless(tmp_path / "work", TRUST_MODULE, "--keep-alive") as server:
        result = csharp_checks(run(client, "laneopen", server))
        for name in ("cancelled_stream_ends_at_once_on_a_stopped_server",
                     "stopped_server_lane_open_ends_within_call_timeout", "stopped_server_is_alive_but_not_answering",
                     "stopped_server_token_cancels_lane_open", "resumed_server_answers",
                     "gil_holding_server_lane_open_ends_within_call_timeout", "gil_holding_server_is_alive_but_not_answering",
                     "busy_server_answers_afterwards", "killed_server_has_stopped_or_crashed"):
            assert name in result, sorted(result)


def test_open_streams_never_hold_every_lane_silently(client, tmp_path):
    """16 undisposed enumerators leave lanes for calls (64 lanes, as CSHARP.md says); when open streams hold all 64,
    the next call fails at once with a LanesExhaustedException naming the streams and what to do, instead of waiting
    CallTimeout; enumerators dropped without Dispose give their lanes back (taken over, their generators closed)."""
    with Headless(tmp_path / "work", TRUST_MODULE, "--keep-alive") as server:
        result = csharp_checks(run(client, "streams", server))
        for name in ("sixteen_open_streams_leave_lanes_for_calls", "streams_fill_the_promised_64_lanes",
                     "lanes_held_by_streams_fail_fast", "lanes_held_by_streams_message_says_what_to_do",
                     "a_call_fails_fast_too", "disposed_streams_give_their_lanes_back",
                     "abandoned_streams_lanes_are_taken_over", "calls_work_after_abandoned_streams",
                     "abandoned_generators_are_closed"):
            assert name in result, sorted(result)
        assert server.proc.poll() is None


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 16 MiB tmpfs (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a full file system) needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_request_on_a_full_file_system_is_an_error(client, small_tmpfs):
    """A 100 MB argument (and a 100 MB in-place request array) on a 16 MiB file system: posix_fallocate says ENOSPC
    and the call fails with an error that says the work folder's file system is full; the Mono process survives
    (no SIGBUS) and the server serves the next calls."""
    # 1 MiB mappings: the server reserves its response files in full, and 16 MiB of them would fill the file system
    with Headless(small_tmpfs / "work", TRUST_MODULE, "--keep-alive", "--capacity", "1M") as server:
        result = csharp_checks(run(client, "diskfull", server))
        for name in ("full_file_system_is_an_error", "server_keeps_serving_after_disk_full",
                     "full_file_system_in_place_array_is_an_error", "server_keeps_serving_after_in_place_disk_full",
                     "a_smaller_array_still_goes"):
            assert name in result, sorted(result)
        assert server.proc.poll() is None


def test_truncated_reply_file_is_an_error_not_sigbus(client, tmp_path):
    """The reply header promises 2 MiB but the response file was cut to 8 KiB (the server stopped meanwhile): the
    client checks the file's size before reading and throws ProtocolException; the next call works."""
    with Headless(tmp_path / "work", TRUST_MODULE, "--keep-alive") as server:
        result = csharp_checks(run(client, "truncated", server))
        assert "truncated_reply_file_is_an_error" in result and "calls_work_after_truncated_reply" in result


def test_cancelled_stream_null_rows_and_lone_surrogates(client, tmp_path):
    """A cancelled IEnumerable<T> delivers no further item (even one already there), throws OperationCanceledException
    and closes its generator; a null int[][] row arrives as None (and comes back null, or as a clear
    ResultMismatchException naming the row where the server cannot send it); a lone surrogate in a string argument is
    an ArgumentMismatchException naming the parameter and the index."""
    with Headless(tmp_path / "work", TRUST_MODULE, "--keep-alive") as server:
        result = csharp_checks(run(client, "values", server))
        for name in ("null_row_arrives_as_none", "rows_without_null_unchanged", "null_row_comes_back_null_or_a_clear_error",
                     "lone_surrogate_is_an_argument_error", "lone_surrogate_in_a_list_is_an_argument_error",
                     "cancelled_stream_delivers_nothing_more", "cancelled_stream_closes_its_generator"):
            assert name in result, sorted(result)


@pytest.mark.parametrize("threads,rounds", [pytest.param(4, 100, id="short"),
                                            pytest.param(8, 1500, id="long", marks=pytest.mark.stress)])
def test_threads_abandoning_streams_among_calls(client, tmp_path, threads, rounds):
    """Threads on one proxy open streams and drop them undisposed (their lanes are taken over once collected),
    dispose others early, run some to the end and make calls: every item and result is right and no call waits for
    CallTimeout."""
    with Headless(tmp_path / "work", TRUST_MODULE, "--keep-alive") as server:
        proc = run_mono(client, "soak", server.folder, threads, rounds, timeout=900)
        result = csharp_checks(proc)
        assert "soak_streams_and_calls_all_right" in result and "soak_calls_work_after" in result
        assert server.proc.poll() is None
