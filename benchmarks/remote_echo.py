"""The floor of the remote rows of `make bench`: a bare websocket echo that speaks lesspy's message format, served
by the same Jupyter Server (same process, IOLoop, authentication and websocket code) as lesspy's relay.

    <base_url>echo/lesspy/<name>    (so the C# client parses it as a session URL with base_url `<base_url>echo/`)

It sends the relay's hello JSON, then answers each REQUEST with the same message as a REPLY of the same sequence
(the same bytes when the header already reads as a plain reply, which is what the bench sends), ignores CANCEL
messages and sends a KEEPALIVE every heartbeat while no write is pending. No session behind it: what is left of a
remote call without the Unix socket hop and the work in the session. Loaded by benchmarks/run.py with
`jpserver_extensions = {"remote_echo": true}` and benchmarks/ on PYTHONPATH; never installed.
"""

from __future__ import annotations

import json
import os
import secrets
import struct
from typing import Any, Optional

from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.ioloop import PeriodicCallback
from tornado.websocket import WebSocketClosedError, WebSocketHandler

HEADER_SIZE = 64
# magic, version, header size, capacity, sequence, payload length, status, waiting, session id, cancel, flags, reserved
HEADER = struct.Struct("<4sHHQQQIIQQI4x")
MAGIC, VERSION = b"LPYM", 2
MAX_MESSAGE = 1 << 30               # what the relay allows by default
HEARTBEAT_MS = 1000
SESSION_ID = secrets.randbits(64)
_lanes = [0]


class EchoHandler(WebSocketMixin, WebSocketHandler, JupyterHandler):  # type: ignore[misc]
    """Authenticated and authorised exactly as the relay's websocket (Jupyter's kernel channels rules)."""

    auth_resource = "kernels"
    _keepalive: Optional[PeriodicCallback] = None
    _writing = False

    def set_default_headers(self) -> None:
        """No JupyterHandler default headers on a websocket."""

    def get_compression_options(self) -> Any:
        return None

    @property
    def max_message_size(self) -> int:       # type: ignore[override]
        return MAX_MESSAGE + HEADER_SIZE

    async def pre_get(self) -> None:
        if self.current_user is None:
            raise web.HTTPError(403)
        ok = self.authorizer.is_authorized(self, self.current_user, "execute", "kernels")
        if hasattr(ok, "__await__"):
            ok = await ok
        if not ok:
            raise web.HTTPError(403)

    @ws_authenticated
    async def get(self, name: str) -> None:  # type: ignore[override]
        await self.pre_get()
        await super().get(name)

    def open(self, name: str) -> None:  # type: ignore[override]
        super().open()
        self.set_nodelay(True)
        _lanes[0] += 1
        self.write_message(json.dumps({
            "lesspy": "echo", "protocol": VERSION, "session": name, "session_id": str(SESSION_ID), "mode": 0,
            "lane": _lanes[0], "pid": os.getpid(), "max_message": MAX_MESSAGE, "heartbeat_ms": HEARTBEAT_MS}))
        self._keepalive = PeriodicCallback(self._send_keepalive, HEARTBEAT_MS)
        self._keepalive.start()

    def _send_keepalive(self) -> None:
        if self._writing:                   # never behind an unflushed write, as the relay
            return
        try:
            self.write_message(HEADER.pack(MAGIC, VERSION, HEADER_SIZE, 0, 0, 0, 0, 0, SESSION_ID, 0, 0),
                               binary=True)
        except WebSocketClosedError:
            pass

    async def on_message(self, message: Any) -> None:
        if isinstance(message, str):
            self.close(1003, "binary messages only")
            return
        if len(message) < HEADER_SIZE:
            self.close(1002, "a message shorter than its header")
            return
        magic, version, hsize, _cap, seq, length, status, _w, session, cancel, flags = HEADER.unpack_from(message)
        if magic != MAGIC or version != VERSION or hsize != HEADER_SIZE or length != len(message) - HEADER_SIZE:
            self.close(1002, "not a lesspy message")
            return
        if seq == 0:                        # CANCEL: nothing to abandon here
            return
        if status != 0 or cancel != 0 or flags != 0 or session != SESSION_ID:
            reply = bytearray(message)
            HEADER.pack_into(reply, 0, MAGIC, VERSION, HEADER_SIZE, 0, seq, length, 0, 0, SESSION_ID, 0, 0)
            message = bytes(reply)
        self._writing = True
        try:
            await self.write_message(message, binary=True)
        except WebSocketClosedError:
            pass
        finally:
            self._writing = False

    def on_close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.stop()


def _jupyter_server_extension_points() -> list:
    return [{"module": "remote_echo"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", [(url_path_join(base, "echo", "lesspy", r"([^/]+)"), EchoHandler)])
