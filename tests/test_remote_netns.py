"""The notebook on another host: a real `jupyter server` with lesspy's extension and a real kernel serving
`%lesspy serve --name`, inside a network namespace made for the test and joined to this one by a veth pair with
addresses of its own; the Mono app outside calls by URL across the veth.

Proof that the calls cross the veth: the server listens on the namespace's address only (127.0.0.1 here refuses,
and no socket of this namespace listens on its port), and the veth's byte counters grow by at least the array
sent and returned. Needs root and `ip netns` (iproute2); skipped with the reason otherwise. Every wait is bounded;
the namespace, the veth and every process the test started are removed whatever happens.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import List, Optional

import pytest

from conftest import compile_csharp, csharp_checks, run_mono

ROOT = Path(__file__).resolve().parent.parent
SESSION = "netns"
ARRAY_N = 512                   # a 512 x 512 float32 array: 1 MiB each way

NOTEBOOK = """
%load_ext lesspy_kernel
import numpy as np
def add(a, b):
    return a + b
def greet(name):
    return "hello " + name + " from inside"
def scale(a, k):
    return (a * k).astype(a.dtype)
def cumsum(x):
    return np.cumsum(x)
def fail(message):
    raise ValueError(message)
%lesspy serve --name {name}
"""


def _run(cmd: List[str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _why_no_netns() -> Optional[str]:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "creating a network namespace and a veth pair needs root"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed: apt-get install iproute2"
    return None


def _free_subnet() -> int:
    """A third octet x such that no interface here has an address in 10.213.x.0/24."""
    used = _run(["ip", "-o", "-4", "addr", "show"]).stdout
    start = os.getpid() % 250
    for i in range(250):
        x = (start + i) % 250 + 1
        if f" 10.213.{x}." not in used:
            return x
    pytest.skip("no free 10.213.x.0/24 subnet for the veth pair")


class Netns:
    """A network namespace joined to this one by a veth pair: OUTSIDE (here) 10.213.x.1/30, INSIDE .2/30."""

    def __init__(self) -> None:
        pid = os.getpid()
        self.name = f"lesspy-test-{pid}"
        self.outer, self.inner = f"lpo{pid}", f"lpi{pid}"
        x = _free_subnet()
        self.outside, self.inside = f"10.213.{x}.1", f"10.213.{x}.2"
        self.procs: List[subprocess.Popen] = []
        self.created = False

    def create(self) -> None:
        add = _run(["ip", "netns", "add", self.name])
        if add.returncode != 0:
            pytest.skip(f"`ip netns add` does not work here: {add.stderr.strip()}")
        self.created = True
        for cmd in (["ip", "link", "add", self.outer, "type", "veth", "peer", "name", self.inner],
                    ["ip", "link", "set", self.inner, "netns", self.name],
                    ["ip", "addr", "add", f"{self.outside}/30", "dev", self.outer],
                    ["ip", "link", "set", self.outer, "up"],
                    self.exec_argv("ip", "addr", "add", f"{self.inside}/30", "dev", self.inner),
                    self.exec_argv("ip", "link", "set", self.inner, "up"),
                    self.exec_argv("ip", "link", "set", "lo", "up")):
            p = _run(cmd)
            assert p.returncode == 0, f"{' '.join(cmd)} failed: {p.stderr}"

    def exec_argv(self, *argv: str) -> List[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def popen(self, argv: List[str], log: Path, env: dict) -> subprocess.Popen:
        """Start `argv` inside (`ip netns exec` execs it: the pid is the program's own)."""
        p = subprocess.Popen(self.exec_argv(*argv), stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env)
        self.procs.append(p)
        return p

    def counters(self) -> int:
        """Bytes the outer end of the veth sent and received."""
        stats = Path(f"/sys/class/net/{self.outer}/statistics")
        return int((stats / "tx_bytes").read_text()) + int((stats / "rx_bytes").read_text())

    def pids(self) -> List[int]:
        p = _run(["ip", "netns", "pids", self.name])
        return [int(x) for x in p.stdout.split()] if p.returncode == 0 else []

    def destroy(self) -> None:
        for p in reversed(self.procs):       # the server first: it stops its kernels itself
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        if self.created:
            # what the server started inside and left behind (its kernels), each by its own pid
            deadline = time.monotonic() + 5
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.1)
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _run(["ip", "link", "del", self.outer])
            _run(["ip", "netns", "del", self.name])


def _listens_here(port: int) -> bool:
    """Whether a TCP socket of this network namespace listens on `port` (any address)."""
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def _http(url: str, token: str, method: str = "GET", body: Optional[bytes] = None, timeout: float = 10):
    import urllib.request
    req = urllib.request.Request(url, data=body, method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read() or b"null")


def _execute(ws_url: str, token: str, code: str, timeout: float = 60) -> str:
    """Run a cell in the kernel over Jupyter Server's kernel channels (from outside, across the veth); its text
    output. Fails the test on an error reply or a timeout."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    async def run() -> str:
        ws = await asyncio.wait_for(websocket_connect(HTTPRequest(
            ws_url, headers={"Authorization": f"token {token}"})), 20)
        msg_id = uuid.uuid4().hex
        await ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": uuid.uuid4().hex,
                       "username": "test", "date": "", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        out: List[str] = []
        status = None
        idle = False
        while status is None or not idle:
            raw = await asyncio.wait_for(ws.read_message(), timeout)
            assert raw is not None, "the kernel channels websocket closed"
            m = json.loads(raw)
            if m.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            t, c = m["msg_type"], m["content"]
            if t == "stream":
                out.append(c["text"])
            elif t in ("execute_result", "display_data"):
                out.append(c["data"].get("text/plain", "") + "\n")
            elif t == "error":
                out.append("\n".join(c["traceback"]) + "\n")
            elif t == "execute_reply":
                status = c["status"]
            elif t == "status" and c["execution_state"] == "idle":
                idle = True
        ws.close()
        assert status == "ok", f"cell failed:\n{code}\n---\n{''.join(out)}"
        return "".join(out)

    return asyncio.run(run())


@pytest.fixture
def netns():
    why = _why_no_netns()
    if why:
        pytest.skip(why)
    ns = Netns()
    try:
        ns.create()
        yield ns
    finally:
        ns.destroy()


@pytest.mark.timeout(300)
def test_app_calls_a_notebook_on_another_host(netns, tmp_path, csharp_bin):
    pytest.importorskip("jupyter_server")
    home = tmp_path / "jupyter"
    runtime = home / "runtime"
    for d in (home / "config", runtime, tmp_path / "root"):
        d.mkdir(parents=True)
    os.chmod(runtime, 0o700)
    # explicit, so the test does not depend on how the package's jupyter-config file was installed
    (home / "config" / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": {"lesspy_kernel": True}}}))
    token = secrets.token_hex(16)
    with socket.socket() as s:                  # a port number; the server binds it inside the namespace
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home),
               JUPYTER_RUNTIME_DIR=str(runtime), IPYTHONDIR=str(tmp_path / "ipython"))
    env.pop("JUPYTER_TOKEN", None)
    log = tmp_path / "jupyter_server.log"
    server = netns.popen([sys.executable, "-m", "jupyter_server", f"--ServerApp.ip={netns.inside}",
                          f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--ServerApp.open_browser=False",
                          f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path / 'root'}",
                          "--ServerApp.allow_root=True"], log, env)
    base = f"http://{netns.inside}:{port}"

    def server_log() -> str:
        return log.read_text(errors="replace")[-4000:]

    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, f"jupyter server exited with {server.returncode}:\n{server_log()}"
        try:
            _http(base + "/api/status", token, timeout=2)
            break
        except OSError:
            assert time.monotonic() < deadline, f"jupyter server did not answer at {base} in 60 s:\n{server_log()}"
            time.sleep(0.2)
    assert "lesspy_kernel | extension was successfully loaded" in log.read_text(errors="replace"), server_log()

    # the server is in the other namespace only: nothing listens on its port here, 127.0.0.1 refuses
    assert not _listens_here(port)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=3).close()

    _, kernel = _http(base + "/api/kernels", token, "POST", b"{}", timeout=30)
    ws_url = f"ws://{netns.inside}:{port}/api/kernels/{kernel['id']}/channels"
    out = _execute(ws_url, token, NOTEBOOK.format(name=SESSION), timeout=90)
    # the way in that %lesspy serve prints is the namespace's address: usable from the other host as printed
    assert f"{base}/lesspy/{SESSION}" in out, f"%lesspy serve did not print the remote URL {base}/lesspy/{SESSION}:\n{out}"
    assert token not in out

    status, listing = _http(base + "/lesspy/", token)
    assert status == 200 and SESSION in [s["name"] for s in listing["sessions"]], listing

    exe = compile_csharp(csharp_bin, [ROOT / "tests" / "csharp" / "NetnsClient.cs"], "NetnsClient.exe")
    before = netns.counters()
    proc = run_mono(exe, f"{base}/lesspy/{SESSION}?token={token}", ARRAY_N, timeout=120)
    crossed = netns.counters() - before
    csharp_checks(proc, "add", "greet", "ndarray", "double_array", "python_exception", "after_error")
    assert crossed >= 2 * ARRAY_N * ARRAY_N * 4, f"only {crossed} bytes crossed the veth"
    assert server.poll() is None, server_log()
