"""Who may reach a session through the relay (docs/SECURITY.md): Jupyter Server's token, its origin check, names
that try to leave <runtime dir>/lesspy/, another user's folders, TLS, and the message size limit. Every refusal is
shown to run nothing: a call that would create a file was sent and the file is not there."""

from __future__ import annotations

import base64
import http.client
import os
import pwd
import socket
import ssl
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import websocket

from jupyter_servers import KERNEL_DEFS, Closed, JupyterServer, RelayClient, make_certificate, wait_for
from lesspy_kernel.client import RemoteError
from lesspy_kernel.coerce import encode_call
from lesspy_kernel.wire import ErrorKind, Tag
from lesspy_kernel.wire.message import message_header

pytestmark = pytest.mark.timeout(240)

OTHER_USER = "lesspy_other"
MAX_MESSAGE = 1024 * 1024
DEFS = KERNEL_DEFS + """
def touch(path):
    open(path, "w").close()
    return path
"""


@pytest.fixture(scope="module")
def js(tmp_path_factory):
    server = JupyterServer(tmp_path_factory.mktemp("security"), args=(f"--LessPyRelay.max_message_size={MAX_MESSAGE}",))
    try:
        k = server.start_kernel()
        k.serve("kn", DEFS)
        yield server
    finally:
        server.stop()


def _session_id(js) -> int:
    with js.relay("kn") as ws:
        return ws.session


def _raw_upgrade(js, path: str, headers: dict, then_send: bytes = b"") -> int:
    """An upgrade request written by hand, followed at once by a websocket frame (as an attacker would, not
    waiting for the answer); the HTTP status the server answered."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{js.port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"] + [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection(("127.0.0.1", js.port), timeout=10) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + then_send)
        answer = s.recv(4096).decode("latin-1")
        time.sleep(0.5)                             # give anything that slipped through the time to run
    return int(answer.split(" ", 2)[1])


def _touch_frame(js, target: Path) -> bytes:
    call = encode_call("touch", Tag.STRING, [str(target)], [Tag.STRING])
    message = message_header(1, len(call), 0, _session_id(js)) + call
    return websocket.ABNF.create_frame(message, websocket.ABNF.OPCODE_BINARY).format()


def _calls(js) -> int:
    return js.request("GET", "lesspy/kn")[1]["calls"]


# ------------------------------------------------------------------------------------------------ the token


@pytest.mark.parametrize("auth", [None, "token not-the-token", "Bearer not-the-token"])
def test_no_or_a_wrong_token_is_refused_and_nothing_runs(js, tmp_path, auth):
    headers = {"Authorization": auth} if auth else {}
    token = auth.split()[-1] if auth else None
    assert js.request("GET", "lesspy/", token=token)[0] == 403
    assert js.request("GET", "lesspy/kn", token=token)[0] == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        RelayClient(js.ws_url + "lesspy/kn", token=token)
    assert e.value.status_code == 403
    target = tmp_path / "ran"
    before = _calls(js)
    assert _raw_upgrade(js, "/lesspy/kn", headers, _touch_frame(js, target)) == 403
    assert not target.exists()
    assert _calls(js) == before


def test_the_same_attempt_with_the_token_runs(js, tmp_path):
    """The control of the test above: the very same bytes with the right token do run the call."""
    target = tmp_path / "ran"
    assert _raw_upgrade(js, "/lesspy/kn", {"Authorization": f"token {js.token}"}, _touch_frame(js, target)) == 101
    wait_for(target.exists, 10, "the call to run")


def test_the_token_may_come_in_the_query_as_jupyter_allows(js):
    with RelayClient(js.ws_url + f"lesspy/kn?token={js.token}", token=None) as ws:
        assert ws.call("add", Tag.INT64, [1, 2], [Tag.INT64, Tag.INT64]) == 3


# ------------------------------------------------------------------------------------------------ origin


def _login_cookie(js) -> str:
    """The cookie Jupyter Server gives a token-authenticated request: what a browser then sends on its own."""
    conn = http.client.HTTPConnection("127.0.0.1", js.port, timeout=10)
    conn.request("GET", "/lesspy/", headers={"Authorization": f"token {js.token}"})
    resp = conn.getresponse()
    resp.read()
    cookie = resp.getheader("Set-Cookie")
    assert cookie, resp.getheaders()
    return cookie.split(";", 1)[0]


def test_a_cross_origin_websocket_is_refused_and_nothing_runs(js, tmp_path):
    """A page of another site opening a websocket with the user's cookie (what a browser does by itself) is
    refused by Jupyter's origin check; the cookie alone from the server's own origin is accepted. A request
    carrying the token skips the origin check, as on Jupyter's kernel channels: a page of another site cannot
    know the token."""
    cookie = _login_cookie(js)
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        js.relay("kn", token=None, origin="http://evil.example", headers=[f"Cookie: {cookie}"])
    assert e.value.status_code == 403
    target = tmp_path / "ran"
    headers = {"Cookie": cookie, "Origin": "http://evil.example"}
    assert _raw_upgrade(js, "/lesspy/kn", headers, _touch_frame(js, target)) == 403
    assert not target.exists()
    with js.relay("kn", token=None, origin=f"http://127.0.0.1:{js.port}", headers=[f"Cookie: {cookie}"]) as ws:
        assert ws.call("add", Tag.INT64, [1, 2], [Tag.INT64, Tag.INT64]) == 3
    with pytest.raises(websocket.WebSocketBadStatusException) as e:   # and without the cookie, from nowhere
        js.relay("kn", token=None, origin=f"http://127.0.0.1:{js.port}")
    assert e.value.status_code == 403


# ------------------------------------------------------------------------------------------------ names


ESCAPES = ["..%2F..%2Foutside", "..%2Foutside", "%2E%2E", "%2e%2e%2fkn", "..", ".", "a%2Fb", "..%5Coutside",
           "../outside", "..%252Foutside", "kn%00", "%2E", "..%2F..%2F..%2F..%2Fetc%2Fpasswd"]


@pytest.fixture(scope="module")
def outside(js):
    """A real session served at <runtime dir>/outside: a plain work folder next to lesspy/."""
    return js.headless("outside", folder=js.runtime / "outside")


@pytest.mark.parametrize("name", ESCAPES)
def test_a_name_that_tries_to_leave_the_sessions_folder_is_refused(js, outside, name):
    """Never another folder: the session at <runtime dir>/outside is not reachable by any spelling of
    ../outside, with or without an upgrade."""
    conn = http.client.HTTPConnection("127.0.0.1", js.port, timeout=10)
    conn.request("GET", "/lesspy/" + name, headers={"Authorization": f"token {js.token}"})
    resp = conn.getresponse()
    body = resp.read().decode("utf-8", "replace")
    assert resp.status in (400, 404), (resp.status, body)
    assert str(outside.pid) not in body and "types_module" not in body
    assert _raw_upgrade(js, "/lesspy/" + name, {"Authorization": f"token {js.token}"}) in (400, 404)


# ------------------------------------------------------------------------------------------------ folders


def _fake_session(folder: Path, mode: int = 0o700) -> None:
    folder.mkdir(mode=0o700)
    fd = os.open(folder / "notify.port", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"unix")
    os.close(fd)
    os.chmod(folder, mode)


def _other_uid() -> int:
    if not hasattr(os, "getuid") or os.getuid() != 0:
        pytest.skip("making a folder of another user needs root")
    try:
        return pwd.getpwnam(OTHER_USER).pw_uid
    except KeyError:
        pytest.skip(f"no user {OTHER_USER} on this machine")


def _refused(js, name: str, needle: str) -> None:
    status, body = js.request("GET", f"lesspy/{name}")
    assert status == 403 and needle in body["message"], (status, body)
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        js.relay(name)
    assert e.value.status_code == 403


def test_another_users_session_folder_is_refused_with_the_checks_text(js):
    uid = _other_uid()
    folder = js.folder("theirs")
    _fake_session(folder)
    os.chown(folder / "notify.port", uid, uid)
    os.chown(folder, uid, uid)
    try:
        _refused(js, "theirs", f"belongs to uid {uid} ({OTHER_USER})")
    finally:
        (folder / "notify.port").unlink()
        folder.rmdir()


def test_a_session_folder_open_to_others_or_a_symlink_is_refused(js):
    folder = js.folder("open")
    _fake_session(folder, 0o770)
    link = js.folder("link")
    link.symlink_to(js.folder("kn"))
    try:
        _refused(js, "open", "open to other users")
        _refused(js, "link", "symbolic link")
    finally:
        link.unlink()
        (folder / "notify.port").unlink()
        folder.rmdir()


def test_a_sessions_folder_made_by_another_user_is_refused(tmp_path):
    """A shared runtime dir where another user made lesspy/ (and a session in it): the listing and the session
    are refused with the trust check's text, by a server of our own on that runtime dir."""
    uid = _other_uid()
    runtime = tmp_path / "shared-runtime"
    runtime.mkdir(mode=0o1777)
    os.chmod(runtime, 0o1777)
    sessions = runtime / "lesspy"
    sessions.mkdir(mode=0o700)
    _fake_session(sessions / "theirs")
    for p in (sessions / "theirs" / "notify.port", sessions / "theirs", sessions):
        os.chown(p, uid, uid)
    with JupyterServer(tmp_path / "srv", runtime_dir=runtime) as js:
        status, body = js.request("GET", "lesspy/")
        assert status == 403 and f"belongs to uid {uid} ({OTHER_USER})" in body["message"], body
        _refused(js, "theirs", f"belongs to uid {uid} ({OTHER_USER})")


# ------------------------------------------------------------------------------------------------ size


def test_max_message_size_is_configurable_and_a_bigger_request_closes_1009(js):
    """Tornado closes with 1009 and drops the connection at once: the client, still sending, may see the reset
    before the close frame (the C# client checks the size before sending)."""
    small = np.ones(MAX_MESSAGE // 8, dtype=np.float32)            # well under the limit
    big = np.ones(MAX_MESSAGE // 2, dtype=np.float32)              # 2 MiB: over it
    with js.relay("kn") as ws:
        assert ws.hello["max_message"] == MAX_MESSAGE
        assert np.array_equal(ws.call("plus_one", Tag.NDARRAY, [small], [Tag.NDARRAY]), small + 1)
        try:
            ws.request(encode_call("plus_one", Tag.NDARRAY, [big], [Tag.NDARRAY]))
            c = ws.closed()
        except (ConnectionError, websocket.WebSocketConnectionClosedException) as e:   # reset while sending
            c = Closed(1006, str(e))
        assert c.code in (1009, 1006), (c.code, c.reason)
    with js.relay("kn") as ws:
        assert ws.call("add", Tag.INT64, [1, 2], [Tag.INT64, Tag.INT64]) == 3


def test_a_reply_over_max_message_size_becomes_an_error_reply_and_the_lane_goes_on(js):
    with js.relay("kn") as ws:
        for n in (MAX_MESSAGE // 2, MAX_MESSAGE * 3):        # 2 MiB, 12 MiB of float32: both over 1 MiB
            with pytest.raises(RemoteError) as e:
                ws.call("big", Tag.NDARRAY, [n], [Tag.INT64])
            assert e.value.reply.kind == ErrorKind.PAYLOAD_TOO_LARGE and "max_message_size" in e.value.reply.message
            assert ws.call("add", Tag.INT64, [1, 2], [Tag.INT64, Tag.INT64]) == 3
        got = ws.call("big", Tag.NDARRAY, [1000], [Tag.INT64])
        assert got.shape == (1000,) and got[-1] == 999


def test_the_jupyter_server_logged_no_traceback(js):
    """Refusals are answers, not failures: nothing above raised inside Jupyter Server (nor upset its log)."""
    log = js.output()
    assert "Traceback" not in log and "Logging error" not in log, log[-5000:]
    assert "Blocking Cross Origin WebSocket Attempt" in log


# ------------------------------------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = make_certificate(tmp)
    server = JupyterServer(tmp, certfile=cert, keyfile=key)
    try:
        server.hl = server.headless("hl")
        yield server
    finally:
        server.stop()


def test_wss_works_with_the_certificate_trusted(tls):
    assert tls.url.startswith("https://") and tls.ws_url.startswith("wss://")
    with tls.relay("hl") as ws:
        assert ws.call("add_ints", Tag.INT32, [2, 3], [Tag.INT32, Tag.INT32]) == 5
    status, body = tls.request("GET", "lesspy/")
    assert status == 200 and [s["name"] for s in body["sessions"]] == ["hl"]


def test_a_tls_websocket_is_relayed_never_handed_to_the_session(tls):
    """The TLS state lives in Jupyter Server's process: it keeps the connection (LessPyRelay.hand_off is on)."""
    with tls.relay("hl") as ws:
        assert ws.call("add_ints", Tag.INT32, [2, 3], [Tag.INT32, Tag.INT32]) == 5
        client, server = ws.ws.sock.getsockname()[:2], ws.ws.sock.getpeername()[:2]

        def holds(pid):
            return any(c.laddr and c.raddr and tuple(c.laddr) == tuple(server) and tuple(c.raddr) == tuple(client)
                       for c in psutil.Process(pid).net_connections(kind="tcp"))

        assert holds(tls.pid) and not holds(tls.hl.pid)


def test_wss_fails_when_the_certificate_is_not_trusted(tls):
    with pytest.raises(ssl.SSLCertVerificationError):
        RelayClient(tls.ws_url + "lesspy/hl", token=tls.token)                 # the system's trust store only
    with pytest.raises((websocket.WebSocketException, ConnectionError, ssl.SSLError)):
        RelayClient("ws" + tls.ws_url[3:] + "lesspy/hl", token=tls.token)     # plain ws:// to the TLS port


def test_the_server_file_goes_when_the_server_stops(tls):
    path = tls.runtime_file()
    assert path.exists() and tls.url in path.read_text()
    tls.stop()
    assert not path.exists()
