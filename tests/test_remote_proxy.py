"""A proxy between the app and Jupyter Server that drops its connections, as a reverse proxy or a flaky network
does (issue 16, item 4): the C# caller gets ServerUnavailableException naming the URL soon after, never a hang,
and its next call reconnects once the way is open again. Real Jupyter Server, real kernel, real Mono program
(tests/csharp/RemoteClient.cs); the proxy is plain TCP in this process."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import List, Optional
from urllib.parse import urlsplit

import pytest

from jupyter_servers import TOKEN, JupyterServer
from test_csharp_remote import DEFS, Mono, remote_client  # noqa: F401 - the fixture compiles RemoteClient.exe

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the fixture's kernels are POSIX")

SESSION = "px"


class Proxy:
    """127.0.0.1:port -> the target: every accepted connection pumped both ways by two threads. `drop` cuts every
    open connection (both ends closed); `refuse` stops listening; `listen` listens again on the same port."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.listener: Optional[socket.socket] = None
        self.open: List[socket.socket] = []
        self.lock = threading.Lock()
        self.accepted = 0
        self.listen()

    def listen(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        self.port = s.getsockname()[1]
        s.listen(16)
        self.listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:                         # nothing behind the proxy: the client's connection is closed
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.open += [client, upstream]
                self.accepted += 1
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                data = a.recv(1 << 16)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def drop(self) -> int:
        """Cut every open connection; how many there were."""
        with self.lock:
            cut, self.open = self.open, []
        for s in cut:
            try:
                s.shutdown(socket.SHUT_RDWR)        # both ends hear the close now (a pump blocked in recv wakes)
            except OSError:
                pass
            s.close()
        return len(cut) // 2

    def refuse(self) -> None:
        assert self.listener is not None
        try:
            self.listener.shutdown(socket.SHUT_RDWR)     # wakes the accepting thread (a close alone would not)
        except OSError:
            pass
        self.listener.close()
        self.listener = None

    def close(self) -> None:
        if self.listener is not None:
            self.refuse()
        self.drop()


@pytest.fixture(scope="module")
def through_proxy(remote_client, tmp_path_factory):  # noqa: F811 - the fixture imported above
    tmp = tmp_path_factory.mktemp("proxy")
    js = JupyterServer(tmp)
    proxy = mono = None
    try:
        kernel = js.start_kernel()
        kernel.serve(SESSION, DEFS)
        proxy = Proxy(urlsplit(js.url).port)
        mono = Mono(remote_client, tmp, env={"JUPYTER_TOKEN": TOKEN})
        yield js, proxy, mono
    finally:
        if mono is not None:
            mono.close()
        if proxy is not None:
            proxy.close()
        js.stop()


def test_a_proxy_dropping_the_connection_idle_and_mid_call(through_proxy):
    js, proxy, mono = through_proxy
    url = f"http://127.0.0.1:{proxy.port}/lesspy/{SESSION}"
    mono.run(f"connect {url} proxy", 90, "connect_proxy")
    mono.run("add first", 30, "add_first")

    # idle: the lane learns of the cut from its closed socket, and the next call opens a new websocket
    before = proxy.accepted
    assert proxy.drop() >= 1
    time.sleep(0.5)
    mono.run("add after_idle_drop", 30, "add_after_idle_drop")
    assert proxy.accepted > before, "the call after the cut went through a new connection"

    # mid-call: the caller hears of it at once (the cut connection), not when nap(30) would have returned
    mono.send("dropped")
    mono.until("STARTED", 30)
    time.sleep(1.0)
    proxy.drop()
    checks = mono.finish("dropped", 30, "dropped_mid_call")
    assert "dropped_mid_call ok" in checks["dropped_mid_call"]
    mono.run("add after_call_drop", 30, "add_after_call_drop")

    # the way closed: ServerUnavailableException naming the URL; open again: the next call works
    proxy.refuse()
    proxy.drop()
    mono.run("gone proxy_down", 60, "gone_proxy_down")
    proxy.listen()
    mono.run("add back", 30, "add_back")


HEADLESS_MODULE = """
import time
def add(a: int, b: int) -> int:
    return a + b
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
"""


def test_jupyter_server_restarted_the_next_call_reconnects(through_proxy, tmp_path):
    """A headless session outlives its Jupyter Server: stopping the server ends the app's websocket (the session
    closes a handed-off one when the server's process ends), the next call says the server is gone, and once a
    new Jupyter Server serves the same runtime dir (behind the same address: the proxy), calls work again."""
    _, _, mono = through_proxy
    runtime = tmp_path / "runtime"
    module = tmp_path / "hs_module.py"
    module.write_text(HEADLESS_MODULE)
    first = JupyterServer(tmp_path / "first", runtime_dir=runtime)
    second = None
    proxy = Proxy(urlsplit(first.url).port)
    try:
        session = first.headless("hs", module)
        first.headlesses.remove(session)        # the session is not the server's: it outlives it
        mono.run(f"connect http://127.0.0.1:{proxy.port}/lesspy/hs hs", 90, "connect_hs")
        mono.run("add before_restart", 30, "add_before_restart")
        first.stop()
        mono.run("gone server_stopped", 60, "gone_server_stopped")
        second = JupyterServer(tmp_path / "second", runtime_dir=runtime)
        proxy.target = urlsplit(second.url).port
        mono.run("add after_restart", 60, "add_after_restart")
    finally:
        proxy.close()
        if second is not None:
            second.headlesses.append(session)
            second.stop()
        else:
            session.stop()
        first.stop()


def test_two_apps_call_one_session_at_once(through_proxy, remote_client, tmp_path):  # noqa: F811
    """Several apps: a second Mono process connects to the same session while the first is connected, and both
    call from four threads at the same time; each keeps getting its own answers."""
    js, _, first = through_proxy
    url = f"{js.url}lesspy/{SESSION}"
    second = Mono(remote_client, tmp_path, env={"JUPYTER_TOKEN": TOKEN})
    try:
        first.run(f"connect {url} first_app", 90, "connect_first_app")
        second.run(f"connect {url} second_app", 90, "connect_second_app")
        first.send("threads")
        second.send("threads")
        first.finish("threads", 120)
        second.finish("threads", 120)
        first.run("add first_after", 30, "add_first_after")
        second.run("add second_after", 30, "add_second_after")
    finally:
        second.close()
