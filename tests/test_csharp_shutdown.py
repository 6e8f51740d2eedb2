"""SHUTDOWN from the C# client: a connection that started its server without keepAlive stops it when disposed, as
soon as the server is idle, and never under another app that shares it (PROTOCOL.md section 3)."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import compile_csharp
from lesspy_kernel.workfolder import pid_alive
from servers import TYPES_MODULE, wait_for

CS = Path(__file__).resolve().parent / "csharp"


class App:
    """tests/csharp/ShutdownClient.exe, driven line by line: each command is answered up to a READY line."""

    def __init__(self, exe: Path):
        env = dict(os.environ, MONO_PATH=str(exe.parent))
        self.proc = subprocess.Popen(["mono", "--debug", str(exe), str(TYPES_MODULE), sys.executable],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.pid = int(next(line.split()[1] for line in self.answer() if line.startswith("PID ")))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def answer(self, timeout: float = 60) -> list:
        got = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, f"the app ended: {got}\n{self.proc.stderr.read() if self.proc.stderr else ''}"
            if line == "READY":
                return got
            assert not line.startswith("CHECK ") or line.endswith(" ok"), line
            got.append(line)

    def send(self, command: str) -> list:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.answer()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("exit")
            except (AssertionError, OSError, queue.Empty):
                pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def app_exe(csharp_bin, tmp_path):
    """ShutdownClient.exe beside its own LessPy.dll: Initialize puts lesspy_work/ there, shared by every app run from it."""
    d = tmp_path / "app"
    d.mkdir()
    shutil.copy(csharp_bin / "LessPy.dll", d)
    return compile_csharp(d, [CS / "ShutdownClient.cs"], "ShutdownClient.exe")


@pytest.fixture
def apps(app_exe):
    started: list = []

    def start() -> App:
        app = App(app_exe)
        started.append(app)
        return app

    yield start
    for app in started:
        app.close()
    for app in started:                      # nothing may outlive the test
        if pid_alive(app.pid):
            os.kill(app.pid, 15)


def test_dispose_of_the_starting_connection_stops_its_server_while_the_app_runs_on(apps):
    app = apps()
    assert "CHECK call ok" in app.send("call")
    assert "DISPOSED" in app.send("dispose")
    # the app is still running, so --parent-pid alone would keep the server: SHUTDOWN is what stops it
    wait_for(lambda: not pid_alive(app.pid), timeout=10, what="the server to stop once its starter disposed its connection")
    assert app.proc.poll() is None


def test_a_second_app_keeps_the_server_alive_until_it_leaves(apps, app_exe):
    starter = apps()
    sharer = apps()
    assert sharer.pid == starter.pid, "the second app reuses the server the first one started"
    server = starter.pid
    assert "DISPOSED" in starter.send("dispose")
    time.sleep(1.0)
    assert pid_alive(server), "SHUTDOWN must not stop a server another app is connected to"
    assert "CHECK call ok" in sharer.send("call")
    # the sharer did not start the server, so its Dispose sends no SHUTDOWN: the starter's, pending, stops it now
    assert "DISPOSED" in sharer.send("dispose")
    wait_for(lambda: not pid_alive(server), timeout=10, what="the server to stop once the last app has gone")
    assert starter.proc.poll() is None and sharer.proc.poll() is None
    log = (app_exe.parent / "lesspy_work" / "server.log").read_text(errors="replace")
    assert "asked the server to stop" in log, log[-2000:]
