"""A real `jupyter server` with lesspy's extension for tests, kernels started through its REST API, headless named
sessions beside them, and a small websocket client of the relay (docs/PROTOCOL.md section 10).

    with JupyterServer(tmp_path, base_url="/base/") as js:         # its own runtime/config/data dirs in tmp_path
        k = js.start_kernel()                                        # REST POST api/kernels, then a kernel client
        k.serve("demo", "def add(a, b): return a + b")               # %load_ext lesspy_kernel ... %lesspy serve
        with js.relay("demo") as ws:                                 # ws://127.0.0.1:PORT/base/lesspy/demo
            assert ws.call("add", Tag.INT64, [2, 3], [Tag.INT64, Tag.INT64]) == 5
        hl = js.headless("hl")                                       # `lesspy serve` in <runtime>/lesspy/hl

Every wait has a timeout; every process started here is stopped by its own pid.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import websocket                        # websocket-client, a dependency of jupyter_server
from jupyter_client import BlockingKernelClient

import servers
from servers import TYPES_MODULE, Headless
from lesspy_kernel.client import END, RemoteError
from lesspy_kernel.coerce import encode_call
from lesspy_kernel.wire import (HEADER_SIZE, REQUEST_CALL, REQUEST_CLOSE, REQUEST_NEXT, REQUEST_STREAM, STATUS_END,
                                STATUS_ERROR, decode_error, decode_value)
from lesspy_kernel.wire.message import cancel_message, message_header, read_message_header

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "lesspy-test-token-" + secrets.token_hex(8)
KERNEL_NAME = "lesspy-python"
WRAPPED_KERNEL = "lesspy-wrapped"

# What the relay tests call in a kernel: a scalar, arrays both ways, an error, output, a stream, a long call
KERNEL_DEFS = """
import time
import numpy as np
def add(a, b):
    return a + b
def plus_one(a):
    return a + 1
def fail(text):
    raise ValueError(text)
def shout(text):
    print("shout:", text)
    return text.upper()
def count(n):
    for i in range(n):
        yield i
def spin():
    n = 0
    while True:
        n += 1
def nap(seconds):
    time.sleep(seconds)
    return seconds
def big(n):
    return np.arange(n, dtype=np.float32)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    """servers.wait_for with the longer default that starting Jupyter Server and its kernels needs."""
    return servers.wait_for(predicate, timeout, what)


def http_json(method: str, url: str, body: Any = None, token: Optional[str] = None,
              headers: Optional[Dict[str, str]] = None, timeout: float = 30,
              context: Optional[ssl.SSLContext] = None) -> Tuple[int, Any]:
    """(HTTP status, the JSON answer or its text) of `method url`, with `Authorization: token` when given."""
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"token {token}"
    data = json.dumps(body).encode() if body is not None else (b"" if method in ("POST", "PUT", "PATCH") else None)
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            status, text = resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode("utf-8", "replace")
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text


def make_certificate(folder: Path, host: str = "127.0.0.1") -> Tuple[Path, Path]:
    """A self-signed certificate for `host` (an IP: subjectAltName IP) made with openssl; (certfile, keyfile)."""
    cert, key = folder / "server.crt", folder / "server.key"
    san = f"IP:{host}" if host.replace(".", "").isdigit() else f"DNS:{host}"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={host}",
                    "-addext", f"subjectAltName={san}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class JupyterServer:
    """`python -m jupyter_server` on 127.0.0.1 with a token, optional base_url and TLS, in dirs of its own."""

    def __init__(self, tmp: Path, token: str = TOKEN, base_url: str = "/", certfile: Optional[Path] = None,
                 keyfile: Optional[Path] = None, args: Tuple[str, ...] = (), env: Optional[Dict[str, str]] = None,
                 runtime_dir: Optional[Path] = None) -> None:
        self.tmp = Path(tmp)
        self.token = token
        self.base_url = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
        self.certfile = certfile
        self.port = free_port()
        self.runtime = Path(runtime_dir) if runtime_dir else self.tmp / "runtime"
        self.root = self.tmp / "root"
        home = self.tmp / "jupyter"
        launch = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        # WRAPPED_KERNEL: the kernel a child of a shell the server started (the server is its grandparent)
        for name, argv in ((KERNEL_NAME, launch), (WRAPPED_KERNEL, ["/bin/sh", "-c", " ".join(launch) + "; :"])):
            (home / "kernels" / name).mkdir(parents=True, exist_ok=True)
            (home / "kernels" / name / "kernel.json").write_text(json.dumps({
                "argv": argv, "display_name": name, "language": "python"}))
        for d in (self.root, self.tmp / "config"):
            d.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(self.runtime), JUPYTER_CONFIG_DIR=str(self.tmp / "config"),
                        JUPYTER_DATA_DIR=str(home), JUPYTER_PATH=str(home), IPYTHONDIR=str(self.tmp / "ipython"),
                        PYTHONPATH=str(ROOT / "tests"))
        self.env.pop("JUPYTER_TOKEN", None)
        self.env.update(env or {})
        scheme = "https" if certfile else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}{self.base_url}"
        self.ws_url = ("wss" if certfile else "ws") + self.url[len(scheme):]
        self.log = self.tmp / f"jupyter-server-{self.port}.log"
        cmd = [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               "--port-retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.base_url={self.base_url}",
               f"--ServerApp.root_dir={self.root}", f"--MappingKernelManager.default_kernel_name={KERNEL_NAME}"]
        if hasattr(os, "getuid") and os.getuid() == 0:
            cmd.append("--allow-root")
        if certfile:
            cmd += [f"--certfile={certfile}", f"--keyfile={keyfile}"]
        self._log = open(self.log, "wb")
        self.proc = subprocess.Popen(cmd + list(args), stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=str(self.root))
        self.kernels: List["ServerKernel"] = []
        self.headlesses: List["HeadlessSession"] = []
        try:
            wait_for(lambda: self._answers() or self.proc.poll() is not None, 60, "jupyter server to answer")
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter server exited ({self.proc.returncode}):\n{self.output()}")
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ssl_context(self) -> Optional[ssl.SSLContext]:
        """A context that trusts this server's own certificate (None for http)."""
        if not self.certfile:
            return None
        return ssl.create_default_context(cafile=str(self.certfile))

    def _answers(self) -> bool:
        try:
            return self.request("GET", "api/status")[0] == 200
        except (OSError, ValueError):
            return False

    def output(self) -> str:
        self._log.flush()
        return self.log.read_text(errors="replace")

    def request(self, method: str, path: str, body: Any = None, token: Optional[str] = "default",
                headers: Optional[Dict[str, str]] = None, timeout: float = 30) -> Tuple[int, Any]:
        """(HTTP status, the JSON answer or its text) of `method <base_url><path>` with the token."""
        token = self.token if token == "default" else token
        return http_json(method, self.url + path, body, token, headers, timeout, self.ssl_context())

    # ------------------------------------------------------------------------------------------ kernels, sessions

    def start_kernel(self, kernel_name: str = KERNEL_NAME) -> "ServerKernel":
        status, model = self.request("POST", "api/kernels", {"name": kernel_name})
        assert status == 201, (status, model)
        kernel = ServerKernel(self, model["id"])
        self.kernels.append(kernel)
        return kernel

    def folder(self, name: str) -> Path:
        return self.runtime / "lesspy" / name

    def headless(self, name: str, module: Path = TYPES_MODULE, *flags: str, folder: Optional[Path] = None
                 ) -> "HeadlessSession":
        """A headless session named `name` (or, given `folder`, serving that plain work folder)."""
        h = HeadlessSession(self, folder or self.folder(name), module, *flags)
        self.headlesses.append(h)
        return h

    def relay(self, name: str, **kwargs: Any) -> "RelayClient":
        """A websocket to session `name` through this server's relay (its token; TLS trusting its certificate)."""
        kwargs.setdefault("token", self.token)
        if self.certfile and "sslopt" not in kwargs:
            kwargs["sslopt"] = {"ca_certs": str(self.certfile)}
        return RelayClient(self.ws_url + "lesspy/" + name, **kwargs)

    def runtime_file(self) -> Path:
        return self.runtime / f"lesspy-jpserver-{self.pid}.json"

    def rss(self) -> int:
        """The server process's resident memory in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self, timeout: float = 20) -> None:
        for k in self.kernels:
            k.close_client()
        for h in self.headlesses:
            h.stop()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()

    def __enter__(self) -> "JupyterServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class ServerKernel:
    """A kernel the Jupyter server started (REST), driven by a BlockingKernelClient on its connection file."""

    def __init__(self, server: JupyterServer, kernel_id: str) -> None:
        self.server, self.id = server, kernel_id
        self.kc: Optional[BlockingKernelClient] = None
        self.connect()

    def connect(self) -> None:
        self.close_client()
        cf = self.server.runtime / f"kernel-{self.id}.json"
        wait_for(cf.exists, 30, f"{cf}")
        kc = BlockingKernelClient(connection_file=str(cf))
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        self.kc = kc

    def close_client(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None

    def run(self, code: str, timeout: float = 60, allow_error: bool = False) -> str:
        """Execute a cell; its text output (stream, results, errors)."""
        assert self.kc is not None
        chunks: List[str] = []

        def hook(msg: Dict[str, Any]) -> None:
            t, c = msg["msg_type"], msg["content"]
            if t == "stream":
                chunks.append(c["text"])
            elif t in ("execute_result", "display_data"):
                chunks.append(c["data"].get("text/plain", "") + "\n")
            elif t == "error":
                chunks.append("\n".join(c["traceback"]) + "\n")

        reply = self.kc.execute_interactive(code, output_hook=hook, timeout=timeout)
        out = "".join(chunks)
        if reply["content"]["status"] != "ok" and not allow_error:
            raise AssertionError(f"cell failed:\n{code}\n---\n{out}")
        return out

    def start(self, code: str) -> str:
        """Send a cell without waiting for it; its msg id."""
        assert self.kc is not None
        return self.kc.execute(code)

    def drain(self) -> None:
        assert self.kc is not None
        try:
            while True:
                self.kc.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            pass

    def serve(self, name: str, defs: str = KERNEL_DEFS, flags: str = "") -> str:
        """`%load_ext lesspy_kernel`, the definitions, `%lesspy serve --name NAME`; its output (with the URLs)."""
        out = self.run(f"%load_ext lesspy_kernel\n{defs}")
        out += self.run(f"%lesspy serve --name {name} {flags}".rstrip())
        wait_for((self.server.folder(name) / "notify.port").exists, 30, f"session {name} to be served")
        return out

    def stop_serving(self) -> str:
        return self.run("%lesspy stop")

    def interrupt(self) -> None:
        status, body = self.server.request("POST", f"api/kernels/{self.id}/interrupt")
        assert status == 204, (status, body)

    def restart(self) -> None:
        status, body = self.server.request("POST", f"api/kernels/{self.id}/restart", timeout=90)
        assert status == 200, (status, body)
        self.connect()

    def shutdown(self) -> None:
        self.close_client()
        self.server.request("DELETE", f"api/kernels/{self.id}")
        if self in self.server.kernels:
            self.server.kernels.remove(self)


class HeadlessSession(Headless):
    """`lesspy serve --module M --work-folder <runtime>/lesspy/NAME`: a headless named session of that server's
    user, in its runtime dir (its environment)."""

    def __init__(self, server: JupyterServer, folder: Path, module: Path = TYPES_MODULE, *flags: str) -> None:
        super().__init__(folder, module, *flags, env=server.env, log=server.tmp / f"headless-{folder.name}.log",
                         timeout=30)


# ---------------------------------------------------------------------------------------------- the relay's client


class Closed(Exception):
    """The relay closed the websocket: `code` and `reason` of its close frame."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"websocket closed: {code} {reason}")
        self.code, self.reason = code, reason


class RelayClient:
    """One lane through the relay: REQUEST messages made with the Python client's call encoder, replies decoded."""

    def __init__(self, url: str, token: Optional[str] = TOKEN, origin: Optional[str] = None,
                 client_id: Optional[int] = None, sslopt: Optional[Dict[str, Any]] = None, timeout: float = 30,
                 headers: Optional[List[str]] = None) -> None:
        hdrs = list(headers or [])
        if token:
            hdrs.append(f"Authorization: token {token}")
        if client_id is not None:
            hdrs.append(f"X-LessPy-Client: {client_id}")
        self.ws = websocket.create_connection(url, header=hdrs, origin=origin, sslopt=sslopt, timeout=timeout,
                                              skip_utf8_validation=True, enable_multithread=True)
        try:
            opcode, frame = self.ws.recv_data_frame(True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                data = frame.data or b""
                raise Closed(int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005,
                             data[2:].decode("utf-8", "replace"))
            assert opcode == websocket.ABNF.OPCODE_TEXT, f"the relay's first message is not its text hello: {opcode}"
            self.hello: Dict[str, Any] = json.loads(frame.data)
        except BaseException:
            self.ws.close()
            raise
        self.session = int(self.hello["session_id"])
        self.seq = 0
        self.keepalives = 0

    # raw messages
    def send(self, data: bytes) -> None:
        self.ws.send_binary(data)

    def request(self, payload: bytes, status: int = REQUEST_CALL, flags: int = 0) -> int:
        self.seq += 1
        self.ws.send_binary(message_header(self.seq, len(payload), status, self.session, flags=flags) + payload)
        return self.seq

    def cancel(self, seq: Optional[int] = None) -> None:
        self.ws.send_binary(cancel_message(self.seq if seq is None else seq, self.session))

    def receive(self, timeout: Optional[float] = None, keepalives: bool = False) -> Tuple[Any, bytes]:
        """The next message: (its header, its payload); KEEPALIVEs are counted and skipped unless asked for.
        Raises Closed when the relay closed the websocket."""
        if timeout is not None:
            self.ws.settimeout(timeout)
        while True:
            opcode, frame = self.ws.recv_data_frame(True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                data = frame.data or b""
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                raise Closed(code, data[2:].decode("utf-8", "replace"))
            if opcode in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG):
                continue
            if opcode == websocket.ABNF.OPCODE_TEXT:
                raise AssertionError(f"a text message after the hello: {frame.data[:200]!r}")
            data = frame.data
            h = read_message_header(memoryview(data), len(data))
            if h.sequence == 0 and not keepalives:
                self.keepalives += 1
                continue
            return h, data[HEADER_SIZE:]

    def reply(self, seq: int, timeout: Optional[float] = None) -> Tuple[int, bytes]:
        """(status, payload) of the reply to `seq` (late replies of abandoned calls are dropped)."""
        while True:
            h, payload = self.receive(timeout)
            if h.sequence == seq:
                return h.status, payload
            assert h.sequence < seq, f"reply {h.sequence} while waiting for {seq}"

    def value(self, seq: int, timeout: Optional[float] = None) -> Any:
        status, payload = self.reply(seq, timeout)
        if status == STATUS_ERROR:
            raise RemoteError(decode_error(payload))
        if status == STATUS_END:
            return END
        return decode_value(payload)

    def call(self, name: str, returns: Any, args: Any = (), arg_descs: Any = None,
             timeout: Optional[float] = None) -> Any:
        return self.value(self.request(encode_call(name, returns, list(args), arg_descs)), timeout)

    def stream(self, name: str, item: Any, args: Any = (), arg_descs: Any = None) -> List[Any]:
        """Every item of a streamed call."""
        items = []
        value = self.value(self.request(encode_call(name, item, list(args), arg_descs), REQUEST_STREAM))
        while value is not END:
            items.append(value)
            value = self.value(self.request(b"", REQUEST_NEXT))
        return items

    def close_stream(self) -> Any:
        return self.value(self.request(b"", REQUEST_CLOSE))

    def closed(self, timeout: float = 10) -> Closed:
        """Wait for the relay to close the websocket; the Closed it raised."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.receive(max(0.05, deadline - time.monotonic()))
            except Closed as c:
                return c
            except (websocket.WebSocketConnectionClosedException, ConnectionError) as e:
                return Closed(1006, f"connection dropped: {e}")
            except websocket.WebSocketTimeoutException:
                break
        raise AssertionError(f"the relay did not close the websocket within {timeout} s")

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass

    def __enter__(self) -> "RelayClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
