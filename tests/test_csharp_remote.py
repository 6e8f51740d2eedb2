"""The C# client on the remote path: a real `jupyter server` with lesspy's relay, a real kernel running
`%lesspy serve --name rk`, and one real Mono program (tests/csharp/RemoteClient.cs) connecting by URL and running
the checks the test drives over its stdin (docs/PROTOCOL.md section 10, docs/CSHARP.md)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from conftest import compile_csharp
from jupyter_servers import KERNEL_DEFS, TOKEN, JupyterServer, make_certificate, wait_for

ROOT = Path(__file__).resolve().parent.parent
CS = ROOT / "tests" / "csharp"

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the fixture's kernels and signals are POSIX")

SESSION = "rk"
DEFS = KERNEL_DEFS + """
from dataclasses import dataclass
@dataclass
class Point:
    x: float
    y: float
def move(p: Point, dx: float) -> Point:
    return Point(p.x + dx, p.y)
def noop():
    pass
"""


class Mono:
    """RemoteClient.exe, driven line by line: `run(command)` -> its CHECK lines by name (all must be ok)."""

    def __init__(self, exe: Path, tmp: Path, env: Optional[Dict[str, str]] = None) -> None:
        self.err = open(tmp / "remote-client.stderr", "wb")
        full = dict(os.environ, MONO_PATH=str(exe.parent))
        full.pop("JUPYTER_TOKEN", None)
        full.update(env or {})
        self.proc = subprocess.Popen(["mono", "--debug", str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, bufsize=1, env=full)
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.seen: List[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.until("READY", 60)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def until(self, prefix: str, timeout: float) -> List[str]:
        """The lines up to and including the first that starts with `prefix`."""
        got: List[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {prefix!r} from RemoteClient within {timeout} s; so far:\n" + "\n".join(got)
                                     + "\n" + self.stderr()) from None
            if line is None:
                raise AssertionError(f"RemoteClient exited ({self.proc.wait()}) before {prefix!r}:\n" + "\n".join(got)
                                     + "\n" + self.stderr())
            got.append(line)
            self.seen.append(line)
            if line.startswith(prefix):
                return got

    def run(self, command: str, timeout: float = 90, *expected: str) -> Dict[str, str]:
        self.send(command)
        return self.finish(command, timeout, *expected)

    def finish(self, command: str, timeout: float = 90, *expected: str) -> Dict[str, str]:
        lines = self.until("DONE " + command.split()[0], timeout)
        checks = {line.split()[1]: line for line in lines if line.startswith("CHECK ")}
        failed = [line for line in checks.values() if not line.endswith(" ok")]
        assert checks and not failed, "\n".join(lines)
        for name in expected:
            assert name in checks, f"no CHECK {name}: {sorted(checks)}\n" + "\n".join(lines)
        return checks

    def stderr(self) -> str:
        self.err.flush()
        return Path(self.err.name).read_text(errors="replace")[-3000:]

    def close(self) -> None:
        for line in self.seen:            # the messages, for a reader of `pytest -s`
            if line.startswith(("GONE ", "SILENT ", "REFUSED ", "UNKNOWN ", "FORBIDDEN ", "BIG_MS ", "URL ")):
                print(line)
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(20)
            except (subprocess.TimeoutExpired, OSError, AssertionError):
                self.proc.kill()
                self.proc.wait(10)
        self.err.close()


@pytest.fixture(scope="module")
def remote_client(csharp_bin) -> Path:
    return compile_csharp(csharp_bin, [CS / "RemoteClient.cs"], "RemoteClient.exe")


@pytest.fixture(scope="module")
def setup(remote_client, tmp_path_factory):
    """A Jupyter Server under /base/ with a kernel serving `rk`, and the Mono program (JUPYTER_TOKEN set for it)."""
    tmp = tmp_path_factory.mktemp("remote")
    js = JupyterServer(tmp, base_url="/base/")
    mono = None
    try:
        kernel = js.start_kernel()
        kernel.serve(SESSION, DEFS)
        mono = Mono(remote_client, tmp, env={"JUPYTER_TOKEN": TOKEN})
        yield js, kernel, mono
    finally:
        if mono is not None:
            mono.close()
        js.stop()


def session_url(js: JupyterServer, name: str = SESSION) -> str:
    return js.url + "lesspy/" + name


def test_connect_by_url_with_the_token_in_the_query_from_the_environment_and_by_uri(setup):
    js, kernel, mono = setup
    mono.run(f"connect {session_url(js)}?token={TOKEN} query", 90, "connect_query")
    mono.run(f"connect {session_url(js)} env", 60, "connect_env")   # JUPYTER_TOKEN
    mono.run(f"connect-uri {js.url} {SESSION} {TOKEN}", 60, "connect_uri")
    mono.run(f"connect {js.ws_url}lesspy/{SESSION}?token={TOKEN} ws", 60, "connect_ws")     # ws:// is taken too
    url = [line for line in mono.seen if line.startswith("URL ")][-1].split()[1]
    assert url == session_url(js) and "/base/lesspy/rk" in url


def test_scalar_array_record_stream_task(setup):
    js, kernel, mono = setup
    mono.run("basics", 90, "scalar", "array", "record", "stream", "stream_closed_early", "task", "url", "no_request_arrays")


def test_four_threads_each_on_a_lane_of_its_own(setup):
    js, kernel, mono = setup
    mono.run("threads", 90, "threads")
    status, body = js.request("GET", f"lesspy/{SESSION}")
    assert status == 200, body
    # the program's own connection (one proxy: one client) holds at least one websocket per thread
    assert body["lanes"] >= 4, body


def test_cancelling_a_running_task_call_and_call_timeout(setup):
    js, kernel, mono = setup
    mono.run("cancel", 90, "cancel", "cancel_then_call")
    mono.run("timeout", 90, "timeout", "timeout_then_call")


def test_jupyter_interrupt_ends_a_running_call(setup):
    js, kernel, mono = setup
    mono.send("spin")
    mono.until("STARTED", 30)
    time.sleep(1.0)
    kernel.interrupt()
    mono.finish("spin", 60, "interrupt", "interrupt_then_call")


def test_a_result_view_goes_stale_as_locally_and_large_arrays_both_ways(setup):
    js, kernel, mono = setup
    mono.run("stale", 60, "stale_view")
    mono.run(f"big {3 * 1024 * 1024}", 120, "big")          # 12 MiB each way: above tornado's 10 MiB default


def test_wrong_token_unknown_session_and_a_folder_open_to_others(setup, tmp_path):
    js, kernel, mono = setup
    mono.run(f"refused {session_url(js)}?token=wrong-{TOKEN[-6:]} wrong-{TOKEN[-6:]}", 60, "wrong_token")
    mono.run(f"unknown {session_url(js, 'nosuch')}?token={TOKEN} {SESSION}", 60, "unknown_session")
    module = tmp_path / "open_module.py"
    module.write_text(DEFS)
    js.headless("opened", module)
    os.chmod(js.folder("opened"), 0o750)            # group may enter: the relay refuses it, as a local client does
    status, body = js.request("GET", "lesspy/opened")
    assert status == 403, (status, body)
    mono.run(f"forbidden {session_url(js, 'opened')}?token={TOKEN} {js.folder('opened')}", 60, "untrusted_folder")


def test_lesspy_stop_and_kernel_restart_then_the_next_call_reconnects(setup):
    js, kernel, mono = setup
    kernel.stop_serving()
    mono.run("gone stop", 60, "gone_stop")
    kernel.serve(SESSION, DEFS)
    mono.run("add after_stop", 60, "add_after_stop")
    kernel.restart()
    mono.run("gone restart", 60, "gone_restart")
    kernel.serve(SESSION, DEFS)
    mono.run("add after_restart", 60, "add_after_restart")


def test_no_op_round_trip_through_the_relay(setup):
    """Not a benchmark (make bench has the remote rows): the figure for the report, and a bound that catches a stall
    such as a delayed acknowledgement (tens of ms)."""
    js, kernel, mono = setup
    mono.send("rtt 2000")
    line = [x for x in mono.until("DONE rtt", 120) if x.startswith("RTT ")][0]
    median, p99 = map(float, line.split()[1:])
    print(f"remote no-op round trip: median {median} us, p99 {p99} us")
    assert median < 20_000, line


def test_a_frozen_server_end_is_noticed_by_its_silence(setup):
    """The process holding the websocket's server end stops (SIGSTOP): the kernel, which Jupyter Server handed
    the connection to (the relayed case, a frozen Jupyter Server, is the same silence)."""
    js, kernel, mono = setup
    mono.run("add before_stop", 60, "add_before_stop")
    pid = js.request("GET", f"lesspy/{SESSION}")[1]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        mono.run("silent", 30, "silent")
    finally:
        os.kill(pid, signal.SIGCONT)
    mono.run("add after_silence", 60, "add_after_silence")


def test_wss_with_a_self_signed_certificate_and_the_relays_max_message(remote_client, tmp_path):
    cert, key = make_certificate(tmp_path)
    js = JupyterServer(tmp_path / "tls", certfile=cert, keyfile=key, args=(f"--LessPyRelay.max_message_size={2**20}",))
    mono = None
    try:
        module = tmp_path / "remote_module.py"
        module.write_text(DEFS)
        js.headless("tk", module)
        mono = Mono(remote_client, tmp_path)
        mono.run(f"untrusted {session_url(js, 'tk')}?token={TOKEN}", 60, "tls_untrusted")
        mono.run(f"trusted {js.url} tk {TOKEN} {cert} {2**20}", 60, "tls_trusted", "max_message")
        (tmp_path / "other").mkdir()
        other, _ = make_certificate(tmp_path / "other")
        mono.run(f"wrongcert {js.url} tk {TOKEN} {other}", 60, "tls_other_certificate")
    finally:
        if mono is not None:
            mono.close()
        js.stop()
