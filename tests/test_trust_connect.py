"""Issue 14 (Trust), item 12: the connect of a lane opening honours CallTimeout and the CancellationToken too.

A SIGSTOPped server accepts nothing; each lane opening that timed out leaves its connection in the server's listen
queue (listen(64)), and once that is full a blocking Unix-socket connect() waits until the server resumes: before the
fix the 66th lane opening hung for good. The C# client connects without blocking (EAGAIN: a full queue, retried until
the deadline or the token). The C# side is tests/csharp/TrustConnectClient.cs; the functions tests/pymodules/trust_module.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
from pathlib import Path

import pytest

from conftest import compile_csharp, csharp_checks, run_mono
from servers import Headless

ROOT = Path(__file__).resolve().parent.parent
TRUST_MODULE = ROOT / "tests" / "pymodules" / "trust_module.py"


@pytest.fixture(scope="module")
def client(csharp_bin):
    return compile_csharp(csharp_bin, [ROOT / "tests" / "csharp" / "TrustConnectClient.cs"], "TrustConnectClient.exe")


def test_lane_opening_connect_honours_call_timeout_and_token_when_the_listen_queue_is_full(client, tmp_path):
    """A stopped server, CallTimeout 200 ms: 100 calls, each on a fresh thread that opens a new lane, all end within
    a second with a CallTimeoutException saying the server is alive but not answering (the first 65 in the handshake
    wait, the rest in the connect to the full listen queue); a 300 ms token ends as a cancellation; Connect ends within
    its 10 s as "alive but not answering". Resumed, the server answers."""
    with Headless(tmp_path / "work", TRUST_MODULE, "--keep-alive") as server:
        try:
            result = csharp_checks(run_mono(client, "stopped", server.folder, 100, timeout=90))
        finally:
            if server.proc.poll() is None:
                os.kill(server.pid, signal.SIGCONT)     # never leave a stopped server behind
        for name in ("every_lane_opening_ends_within_a_second", "every_lane_opening_is_a_call_timeout_not_answering",
                     "full_queue_token_cancels_lane_open", "full_queue_connect_ends_within_its_start_timeout",
                     "full_queue_connect_is_alive_but_not_answering", "resumed_server_answers"):
            assert name in result, sorted(result)
        assert server.proc.poll() is None


def _fill_listen_queue(folder: Path) -> list:
    """Connections to the folder's notify socket until its listen queue is full (EAGAIN), none accepted yet."""
    dirfd = os.open(folder, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    socks = []
    try:
        for _ in range(1000):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(f"/proc/self/fd/{dirfd}/notify.sock")
            except BlockingIOError:
                s.close()
                return socks
            socks.append(s)
        raise AssertionError("the server's listen queue never filled")
    finally:
        os.close(dirfd)


def test_initialize_on_a_stopped_server_with_a_full_listen_queue_ends(client, tmp_path):
    """Initialize finds its lesspy_work/ served by its module's server, stopped, with a full listen queue: it ends
    within its 10 s start timeout (plus the probe's second) with a ServerUnavailableException saying the server runs
    but is alive and not answering, and neither hangs nor starts a second server."""
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(client.parent / "LessPy.dll", app)
    shutil.copy(client, app)
    with Headless(app / "lesspy_work", TRUST_MODULE, "--keep-alive") as server:
        socks = []
        os.kill(server.pid, signal.SIGSTOP)
        try:
            socks = _fill_listen_queue(server.folder)
            result = csharp_checks(run_mono(app / client.name, "init", sys.executable, TRUST_MODULE, timeout=60))
        finally:
            os.kill(server.pid, signal.SIGCONT)
            for s in socks:
                s.close()
        for name in ("full_queue_initialize_ends_within_its_start_timeout",
                     "full_queue_initialize_says_the_server_runs_but_does_not_answer"):
            assert name in result, sorted(result)
        assert server.proc.poll() is None
        assert int((server.folder / "python.pid").read_text()) == server.pid, "Initialize started a second server"


def test_tcp_connect_to_a_full_listen_queue_ends(client, tmp_path):
    """The managed Socket path (TCP: Windows, or a server of an older version on Linux): notify.port names a loopback
    port whose listener never accepts and whose queue is full, so the kernel drops the SYNs and a blocking connect
    would retry for minutes. Connect ends within its 10 s start timeout, saying nothing answers on that port."""
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    listener = socket.socket()
    fill = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(8):                               # more than the queue holds: later SYNs are dropped
            s = socket.socket()
            s.setblocking(False)
            fill.append(s)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
        for name, data in (("session.key", os.urandom(32)), ("python.pid", str(os.getpid()).encode()),
                           ("notify.port", str(port).encode())):
            fd = os.open(work / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.write(fd, data)
            os.close(fd)
        result = csharp_checks(run_mono(client, "connect", work, timeout=60))
    finally:
        for s in fill:
            s.close()
        listener.close()
    for name in ("tcp_full_queue_connect_ends_within_its_start_timeout", "tcp_full_queue_connect_is_not_answering"):
        assert name in result, sorted(result)


def test_the_python_client_honours_its_timeout_against_a_stopped_server(tmp_path):
    """The Python client's connect and handshake end within the timeout it is given (they always took 5 s), and
    say the server is alive but not answering."""
    import time

    from lesspy_kernel import client

    with Headless(tmp_path / "work", TRUST_MODULE, "--keep-alive") as server:
        os.kill(server.pid, signal.SIGSTOP)
        try:
            for attempt in (lambda: client.ClientLane(server.folder, timeout=1), lambda: client.status(server.folder, 1)):
                start = time.monotonic()
                with pytest.raises(TimeoutError) as e:
                    attempt()
                took = time.monotonic() - start
                assert took < 3, took
                assert "alive but not answering" in str(e.value), e.value
        finally:
            os.kill(server.pid, signal.SIGCONT)
        lane = client.ClientLane(server.folder)
        try:
            assert lane.call("add_ints", client.Tag.INT32, [3, 4], [client.Tag.INT32, client.Tag.INT32]) == 7
        finally:
            lane.close()
