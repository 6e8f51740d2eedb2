"""A handed-over websocket whose client vanishes (the network to it cut, no FIN, no RST) is noticed by the session
within seconds: its KEEPALIVEs go unacknowledged (stream_lane.peer_gone), the lane closes. The client lives in a
network namespace joined by a veth pair, the host's end of the pair is taken down. Needs root and `ip netns`;
skipped with the reason otherwise; every wait bounded, everything made here removed."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lesspy_kernel import client
from lesspy_kernel.transport.stream_lane import DEAD_PEER_MS, handoff_bytes
from lesspy_kernel.wire.handshake import Purpose

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(120)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(("ip",) + args, capture_output=True, text=True, timeout=20, check=check)


@pytest.fixture
def veth():
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root to make a network namespace")
    if shutil.which("ip") is None:
        pytest.skip("needs `ip` (iproute2)")
    tag = secrets.token_hex(2)
    ns, host, inner = f"lpdead{tag}", f"lpd{tag}a", f"lpd{tag}b"
    add = _ip("netns", "add", ns, check=False)
    if add.returncode:
        pytest.skip(f"`ip netns add` does not work here: {add.stderr.strip()}")
    try:
        _ip("link", "add", host, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", ns)
        _ip("addr", "add", "10.219.77.1/24", "dev", host)
        _ip("link", "set", host, "up")
        _ip("netns", "exec", ns, "ip", "addr", "add", "10.219.77.2/24", "dev", inner)
        _ip("netns", "exec", ns, "ip", "link", "set", inner, "up")
        yield ns, host
    finally:
        _ip("link", "del", host, check=False)
        _ip("netns", "del", ns, check=False)


def test_a_client_cut_off_is_noticed_and_its_lane_closed(veth, tmp_path):
    ns, host = veth
    folder = tmp_path / "wf"
    log = open(tmp_path / "session.log", "wb")
    session = subprocess.Popen([sys.executable, "-m", "lesspy_kernel", "serve", "--module",
                                str(ROOT / "tests" / "pymodules" / "types_module.py"), "--work-folder", str(folder)],
                               stdout=log, stderr=subprocess.STDOUT)
    peer = None
    try:
        deadline = time.monotonic() + 30
        while not (folder / "notify.port").exists():
            assert session.poll() is None and time.monotonic() < deadline, "the session did not start"
            time.sleep(0.05)
        with socket.socket() as listener:
            listener.bind(("10.219.77.1", 0))
            listener.listen(1)
            port = listener.getsockname()[1]
            peer = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c",
                                     f"import socket, time; s = socket.create_connection(('10.219.77.1', {port})); "
                                     "time.sleep(100)"])
            listener.settimeout(20)
            conn, _ = listener.accept()
        with conn:                                   # what the relay does after Jupyter's auth
            lane = client.open_frames(folder, purpose=Purpose.WEBSOCKET)
            socket.send_fds(lane.sock, [handoff_bytes("cut", 1 << 20, 1000, b"")], [conn.fileno()])
        try:
            time.sleep(1.5)
            assert client.status(folder)["lanes"] == 1
            _ip("link", "set", host, "down")
            start = time.monotonic()
            while client.status(folder)["lanes"] and time.monotonic() - start < 60:
                time.sleep(0.25)
            took = time.monotonic() - start
            assert client.status(folder)["lanes"] == 0, "the lane of a vanished client stayed open"
            assert took < DEAD_PEER_MS / 1000 + 5, took
        finally:
            lane.close()
    finally:
        if peer is not None:
            peer.kill()
            peer.wait(10)
        session.terminate()
        session.wait(20)
        log.close()
