"""The relay: one websocket of Jupyter Server <-> one FRAMES connection to a named lesspy session of this host.

A byte pump with header checks (docs/PROTOCOL.md section 10): it never decodes a payload. Jupyter Server has
authenticated and authorised the websocket; the relay then proves session.key to the session on the client's
behalf, so the key never leaves the host. Flow control both ways: a client message is forwarded (and flushed to
the session's socket) before the next one is read, and a session message is flushed to the websocket before the
next one is read, so a client that stops reading stops the session's lane and nothing grows without bound.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.ioloop import PeriodicCallback
from tornado.websocket import WebSocketClosedError, WebSocketHandler
from tornado.iostream import SSLIOStream
from traitlets import Bool, Float, Int
from traitlets.config import LoggingConfigurable

from .. import __version__
from ..wire import (FLAG_REPLY_IN_REQUEST, HEADER_SIZE, LENGTH_OFFSET, PROTOCOL_VERSION, SEQUENCE_OFFSET,
                    SESSION_OFFSET, STATUS_ERROR, ErrorKind, FrameError, encode_error)
from ..wire.message import (MAX_MESSAGE_PAYLOAD, check_client_message, check_server_message, keepalive_message,
                            message_header, read_message_header)
from ..transport.stream_lane import handoff_bytes
from ..wire.structs import U64
from . import sessions
from .sessions import GONE, REFUSED

HAND_OFF_POSSIBLE = hasattr(socket, "send_fds") and hasattr(socket, "AF_UNIX") and sys.platform != "win32"
MAX_CLOSE_REASON = 123  # bytes of a close frame's reason (a control frame carries at most 125 with the code)


class LessPyRelay(LoggingConfigurable):
    """The lesspy relay's settings (jupyter_server_config.py: `c.LessPyRelay.max_message_size = ...`)."""

    max_message_size = Int(1 << 30, help="Largest payload in bytes of one lesspy message over the websocket, "
                                         "either way (the 64-byte header comes on top). A larger request closes "
                                         "the websocket (code 1009); the C# client checks before sending."
                           ).tag(config=True)
    heartbeat_ms = Int(1000, help="A KEEPALIVE message goes to every open lesspy websocket this often (unless the "
                                  "previous write is still unflushed); a client that hears nothing for 5 of these "
                                  "treats the connection as lost.").tag(config=True)
    connect_timeout = Float(5.0, help="Seconds to connect to a session and shake hands with it.").tag(config=True)
    hand_off = Bool(True, help="Hand a websocket's TCP connection to the session once Jupyter Server has "
                               "authenticated and authorised it: the session then speaks the websocket itself "
                               "(no relaying hop). A TLS connection is always relayed; False relays every one."
                    ).tag(config=True)


def error_reply(sequence: int, session: int, message: str,
                kind: ErrorKind = ErrorKind.MALFORMED_REQUEST) -> bytes:
    """A REPLY carrying an error the relay makes: a client message that fails its checks (MALFORMED_REQUEST), a
    session's reply too large for the websocket (PAYLOAD_TOO_LARGE)."""
    payload = encode_error(kind, "", message, "")
    return message_header(sequence, len(payload), STATUS_ERROR, session) + payload


class Refusal(Exception):
    """A client message the relay does not forward: `sequence` > 0 -> answer with an error reply and go on;
    else close with `code`."""

    def __init__(self, message: str, code: int = 1002, sequence: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.sequence = sequence


def check_message(data: bytes, last_sequence: int, in_flight: int, session: int, max_message: int) -> int:
    """Check one client message's header (never its payload) before it is forwarded as it came (the session
    clears flag bit 0 itself). Returns its sequence (0: a CANCEL). Raises Refusal: with the sequence of a bad
    REQUEST that may be answered (above the last one, no call in flight), else with the close code."""
    if len(data) < HEADER_SIZE:
        raise Refusal(f"a lesspy message starts with a {HEADER_SIZE}-byte header; this one has {len(data)} bytes")
    sequence = U64.unpack_from(data, SEQUENCE_OFFSET)[0]
    if sequence and in_flight:
        raise Refusal(f"a request (sequence {sequence}) while request {in_flight} has no reply yet: one call at a "
                      "time per lane (open another websocket for another lane)", code=1008)
    if sequence and sequence <= last_sequence:
        raise Refusal(f"request sequence {sequence} is not above the previous one ({last_sequence})")
    try:
        h = read_message_header(memoryview(data), len(data), max_message)
        check_client_message(h._replace(flags=h.flags & ~FLAG_REPLY_IN_REQUEST))
        if sequence and h.session != session:
            raise FrameError(SESSION_OFFSET, f"the request names session {h.session}, this lane serves session "
                             f"{session} (the session was restarted: reconnect)")
    except FrameError as e:
        raise Refusal(str(e), sequence=sequence) from None
    return sequence


def _client_id(header: Optional[str]) -> int:
    """X-LessPy-Client: the app's channel id, the same for all its lanes (the session counts one client); absent
    or not a u64: a random id for this websocket."""
    try:
        value = int((header or "").strip())
    except ValueError:
        return secrets.randbits(63)
    return value if 0 <= value < 2**64 else secrets.randbits(63)


def _clip_reason(reason: str) -> str:
    raw = reason.encode("utf-8")
    if len(raw) <= MAX_CLOSE_REASON:
        return reason
    return raw[:MAX_CLOSE_REASON - 3].decode("utf-8", "ignore") + "..."


class SessionPipe:
    """The relay's end of the FRAMES connection: non-blocking, driven by the IOLoop's own reader and writer
    callbacks (a message is handled in the loop iteration that completed it: no task, no extra turn of the loop).

    `deliver(message)` gets each whole message (header and payload, as bytes); when it returns a future that is
    not done, reading stops until it is (the websocket has not flushed that message yet). A message whose payload
    is over `max_payload` is not kept: its header goes to `deliver` alone and its payload is read and dropped. `write` sends a message
    and returns None once all of it is in the socket, else a future done when it is. `lost(why)` is called once
    when the connection ends (EOF, reset), never after `close`.
    """

    CHUNK = 256 * 1024                  # bytes read at once into the buffer of small messages
    DIRECT = 1024 * 1024                # a message at least this big is read straight into its own buffer

    def __init__(self, sock: socket.socket, deliver: Callable[[bytes], Optional["asyncio.Future[Any]"]],
                 lost: Callable[[str], None], max_payload: int = MAX_MESSAGE_PAYLOAD) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = asyncio.get_running_loop()
        self.deliver, self.lost = deliver, lost
        self.buffer = bytearray()                    # received bytes of small messages
        self.big: Optional[bytearray] = None         # a big message being received, and how much of it came
        self.big_filled = 0
        self.max_payload = max_payload
        self.dropping = 0                            # payload bytes of an oversized message still to drop
        self.pending: Optional[memoryview] = None    # what `write` could not send yet
        self.pending_done: Optional["asyncio.Future[None]"] = None
        self.reading = False
        self.closed = False
        self.resume()

    def resume(self) -> None:
        if not self.reading and not self.closed:
            self.loop.add_reader(self.fd, self._readable)
            self.reading = True

    def pause(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.fd)
            self.reading = False

    def _readable(self) -> None:
        try:
            if self.dropping:
                n = len(self.sock.recv(min(self.dropping, self.CHUNK)))
                self.dropping -= n if n else 0
            elif self.big is not None:
                with memoryview(self.big) as view:
                    n = self.sock.recv_into(view[self.big_filled:])
                self.big_filled += n
            else:
                chunk = self.sock.recv(self.CHUNK)
                n = len(chunk)
                self.buffer += chunk
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._end(f"{type(e).__name__}: {e}")
            return
        if n == 0:
            self._end("closed")
            return
        self._deliver_ready()

    def _deliver_ready(self) -> None:
        """Hand over every whole message received, until one is not flushed yet."""
        while self.reading and not self.closed and not self.dropping:
            if self.big is not None:
                if self.big_filled < len(self.big):
                    return
                message = bytes(self.big)
                self.big = None
            else:
                if len(self.buffer) < HEADER_SIZE:
                    return
                size = HEADER_SIZE + U64.unpack_from(self.buffer, LENGTH_OFFSET)[0]
                if size > HEADER_SIZE + self.max_payload:       # the header alone; the payload is dropped
                    header = bytes(self.buffer[:HEADER_SIZE])
                    dropped = min(len(self.buffer), size) - HEADER_SIZE
                    del self.buffer[:HEADER_SIZE + dropped]
                    self.dropping = size - HEADER_SIZE - dropped
                    waiting = self.deliver(header)
                    if waiting is not None and not waiting.done():
                        self.pause()
                        waiting.add_done_callback(self._flushed)
                        return
                    continue
                if len(self.buffer) < size:
                    if size >= self.DIRECT:
                        self.big = bytearray(size)
                        self.big[:len(self.buffer)] = self.buffer
                        self.big_filled = len(self.buffer)
                        self.buffer = bytearray()
                    return
                with memoryview(self.buffer) as view:
                    message = bytes(view[:size])
                del self.buffer[:size]
            waiting = self.deliver(message)
            if waiting is not None and not waiting.done():
                self.pause()
                waiting.add_done_callback(self._flushed)
                return

    def _flushed(self, _: "asyncio.Future[Any]") -> None:
        self.resume()
        self._deliver_ready()

    def write(self, data: bytes) -> Optional["asyncio.Future[None]"]:
        if self.closed:
            return None
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as e:
            self._end(f"{type(e).__name__}: {e}")
            return None
        if sent == len(data):
            return None
        self.pending = memoryview(data)[sent:]
        self.pending_done = self.loop.create_future()
        self.loop.add_writer(self.fd, self._writable)
        return self.pending_done

    def _writable(self) -> None:
        assert self.pending is not None
        try:
            sent = self.sock.send(self.pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._end(f"{type(e).__name__}: {e}")
            return
        self.pending = self.pending[sent:]
        if not self.pending:
            self.loop.remove_writer(self.fd)
            self._release_writer()

    def _release_writer(self) -> None:
        self.pending = None
        if self.pending_done is not None and not self.pending_done.done():
            self.pending_done.set_result(None)
        self.pending_done = None

    def _end(self, why: str) -> None:
        if not self.closed:
            self.close()
            self.lost(why)

    def close(self) -> None:
        """Close the connection: the session sees EOF (and interrupts the lane's call)."""
        if self.closed:
            return
        self.pause()
        self.closed = True
        if self.pending is not None:
            self.loop.remove_writer(self.fd)
            self._release_writer()
        self.sock.close()
        self.buffer = bytearray()
        self.big = None


class RelayHandler(WebSocketMixin, WebSocketHandler, JupyterHandler):  # type: ignore[misc]
    """`<base_url>lesspy/<name>`: the session's status (a plain GET) or its websocket relay (an upgrade)."""

    auth_resource = "kernels"

    def initialize(self, relay: LessPyRelay) -> None:
        self.relay = relay
        self.name = ""
        self.folder: Optional[Path] = None
        self.pipe: Optional[SessionPipe] = None
        self.session_id = 0
        self.last_sequence = 0
        self.in_flight = 0
        self.keepalive: Optional[PeriodicCallback] = None
        self.closing = False

    def set_default_headers(self) -> None:
        """No JupyterHandler default headers on a websocket (as Jupyter's kernel channels)."""

    def get_compression_options(self) -> Optional[dict]:
        return None                         # arrays do not compress; and no inflating of a hostile message

    @property
    def max_message_size(self) -> int:      # type: ignore[override]
        return int(self.relay.max_message_size) + HEADER_SIZE

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors as JSON `{"message": ...}` (the C# client GETs the URL to show why its upgrade failed)."""
        sessions.write_json_error(self, status_code, **kwargs)

    @ws_authenticated
    async def get(self, name: str) -> None:     # type: ignore[override]
        self.name = name
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            await self._status(name)
            return
        authorized = await ensure_async(self.authorizer.is_authorized(self, self.current_user, "execute", "kernels"))
        if not authorized:
            raise web.HTTPError(403, "Jupyter Server's authorizer does not let this user execute code in kernels")
        if not self.check_origin():
            raise web.HTTPError(403, "cross-origin websocket refused (Origin %s); see ServerApp.allow_origin",
                                self.request.headers.get("Origin"))
        self.folder = sessions.served_folder(name)
        await super().get(name)

    async def _status(self, name: str) -> None:
        authorized = await ensure_async(self.authorizer.is_authorized(self, self.current_user, "read", "kernels"))
        if not authorized:
            raise web.HTTPError(403, "Jupyter Server's authorizer does not let this user read kernels")
        folder = sessions.served_folder(name)
        status = await asyncio.get_running_loop().run_in_executor(None, sessions.status_or_error, folder,
                                                                  sessions.STATUS_TIMEOUT)
        if isinstance(status, web.HTTPError):
            raise status
        status["path"] = sessions.session_path(self.base_url, name)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(status))

    # ------------------------------------------------------------------------------------------ the websocket

    def _handed_off_stream(self) -> Optional[Any]:
        """The websocket's IOStream when its connection may be handed to the session: plain TCP (a TLS
        connection's state lives in this process), and the relay configured to."""
        stream = getattr(self.ws_connection, "stream", None)
        if not (self.relay.hand_off and HAND_OFF_POSSIBLE) or stream is None or isinstance(stream, SSLIOStream):
            return None
        sock = getattr(stream, "socket", None)
        if not isinstance(sock, socket.socket) or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        return stream

    async def open(self, name: str) -> None:    # type: ignore[override]
        stream = self._handed_off_stream()
        if stream is None:
            super().open()                      # Jupyter's pings (a handed-off websocket: the session's keepalives)
        self.set_nodelay(True)
        assert self.folder is not None
        client_id = _client_id(self.request.headers.get("X-LessPy-Client"))
        loop = asyncio.get_running_loop()
        timeout = float(self.relay.connect_timeout)
        connecting = loop.run_in_executor(None, sessions.open_lane, self.folder, client_id, timeout,
                                          stream is not None)
        try:
            opened = await asyncio.wait_for(asyncio.shield(connecting), timeout + 1.0)
        except Exception as e:       # noqa: BLE001 - every failure to reach the session closes with its reason
            connecting.add_done_callback(_close_late_connection)
            code, why = sessions.connect_failure(name, e)
            self.log.info("lesspy relay: %s: %s", name, why)
            self._close(code, why)
            return
        if self.ws_connection is None or self.closing:       # the client left while the relay connected
            opened.sock.close()
            return
        self.session_id = opened.session
        if stream is not None:
            if opened.sock.family == getattr(socket, "AF_UNIX", None):
                await self._hand_off(stream, opened, name)
                return
            super().open()                      # the session took no descriptor (TCP notify socket): relayed
        hello = {"lesspy": __version__, "protocol": PROTOCOL_VERSION, "session": name,
                 "session_id": str(opened.session), "mode": int(opened.mode), "lane": opened.lane,
                 "pid": opened.pid, "max_message": int(self.relay.max_message_size),
                 "heartbeat_ms": int(self.relay.heartbeat_ms)}
        self._send(json.dumps(hello), binary=False)
        self.pipe = SessionPipe(opened.sock, self._from_session, self._session_lost,
                                int(self.relay.max_message_size))
        self.keepalive = PeriodicCallback(self._keepalive, int(self.relay.heartbeat_ms))
        self.keepalive.start()

    async def _hand_off(self, stream: Any, opened: Any, name: str) -> None:
        """Give the websocket's TCP connection to the session over the FRAMES connection (which proved the
        session's key) and forget it here without ending it: no close frame, no shutdown; bytes tornado already
        read go along. The FRAMES connection stays open as the tether: when this process ends, the session
        closes the websocket."""
        if stream.writing():
            await stream.write(b"")                     # the 101 response is all in the socket
        if self.ws_connection is None or self.closing or stream.closed():
            opened.sock.close()
            return
        early = bytes(stream._read_buffer[:stream._read_buffer_size])
        data = handoff_bytes(name, int(self.relay.max_message_size), int(self.relay.heartbeat_ms), early)
        try:
            opened.sock.settimeout(float(self.relay.connect_timeout))
            sent = socket.send_fds(opened.sock, [data], [stream.socket.fileno()])
            opened.sock.sendall(data[sent:])            # (a long early part may not fit in one write)
        except OSError as e:
            opened.sock.close()
            self._close(REFUSED, f"lesspy session {name!r} did not take the connection: {e}")
            return
        self.closing = True                     # from here nothing is written to the websocket by this process
        stream.close()                          # closes this process's descriptor only
        _tether(opened.sock)

    def on_message(self, message: Any) -> Optional["asyncio.Future[Any]"]:   # type: ignore[override]
        """Client -> session. A future returned (a message not all in the session's socket yet, or an error reply
        not flushed) makes tornado wait for it before it reads the next client message."""
        pipe = self.pipe
        if pipe is None or self.closing:
            return None
        if isinstance(message, str):
            self._close(1003, "lesspy takes binary messages only (a text message came)")
            return None
        try:
            seq = check_message(message, self.last_sequence, self.in_flight, self.session_id,
                                int(self.relay.max_message_size))
        except Refusal as refusal:
            if not refusal.sequence:
                self._close(refusal.code, str(refusal))
                return None
            self.last_sequence = refusal.sequence
            return self._send(error_reply(refusal.sequence, self.session_id, str(refusal)))
        if seq:
            self.last_sequence = seq
            self.in_flight = seq
        return pipe.write(message)

    def _from_session(self, message: bytes) -> Optional["asyncio.Future[Any]"]:
        """Session -> client: one websocket message per session message; a future while it is not flushed. A
        reply over max_message (its header alone here) becomes a PAYLOAD_TOO_LARGE error reply."""
        max_payload = int(self.relay.max_message_size)
        try:
            h = read_message_header(memoryview(message), None, MAX_MESSAGE_PAYLOAD)
            check_server_message(h)
            if h.length <= max_payload and h.length != len(message) - HEADER_SIZE:
                raise FrameError(LENGTH_OFFSET, f"the header says {h.length} payload bytes, "
                                 f"{len(message) - HEADER_SIZE} follow it")
        except FrameError as e:
            self._close(1011, f"the session {self.name!r} sent a malformed message: {e}")
            return None
        if h.sequence and h.sequence >= self.in_flight:
            self.in_flight = 0
        if h.length > max_payload:
            return self._send(error_reply(h.sequence, self.session_id,
                                          f"the reply is {h.length:,} bytes, more than this Jupyter Server's lesspy "
                                          f"relay passes (LessPyRelay.max_message_size = {max_payload:,})",
                                          ErrorKind.PAYLOAD_TOO_LARGE))
        return self._send(message)

    def _session_lost(self, why: str) -> None:
        self.log.debug("lesspy relay %s: the session's connection ended (%s)", self.name, why)
        self._close(GONE, f"lesspy session {self.name!r} closed the connection (stopped, restarted, or its "
                          "kernel went away)")

    def _unflushed(self) -> bool:
        """Whether the websocket's stream still holds bytes of an earlier message (tornado's IOStream)."""
        stream = getattr(self.ws_connection, "stream", None)
        return bool(stream is not None and stream.writing())

    def _send(self, message: Any, binary: bool = True) -> Optional["asyncio.Future[Any]"]:
        """One write_message per message. None once it is all in the socket, else the future of its flush."""
        if self.closing or self.ws_connection is None:
            return None
        try:
            future = self.write_message(message, binary=binary)
        except WebSocketClosedError:
            self._close_session()
            return None
        future.add_done_callback(_retrieve)
        return future if self._unflushed() else None

    def _keepalive(self) -> None:
        if not (self.closing or self.ws_connection is None or self._unflushed()):
            self._send(keepalive_message(self.session_id))

    def _close(self, code: int, reason: str) -> None:
        if not self.closing:
            self.closing = True
            try:
                self.close(code, _clip_reason(reason))
            except Exception:                  # noqa: BLE001 - already closing
                pass
        self._close_session()

    def _close_session(self) -> None:
        self.closing = True
        if self.keepalive is not None:
            self.keepalive.stop()
            self.keepalive = None
        if self.pipe is not None:
            self.pipe.close()                   # the session sees EOF and interrupts the lane's call

    def on_close(self) -> None:
        self._close_session()


_tethers: Dict[int, socket.socket] = {}


def _tether(sock: socket.socket) -> None:
    """Keep a handed-off lane's FRAMES connection open until the session closes it (then close it here)."""
    sock.setblocking(False)
    fd = sock.fileno()
    _tethers[fd] = sock
    loop = asyncio.get_running_loop()

    def ended() -> None:
        try:
            if sock.recv(4096):
                return                          # the session sends nothing here; ignore it
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        loop.remove_reader(fd)
        _tethers.pop(fd, None)
        sock.close()

    loop.add_reader(fd, ended)


def _close_late_connection(future: "asyncio.Future[Any]") -> None:
    """A connection that completed after the relay gave up on it is closed, not leaked."""
    if not future.cancelled() and future.exception() is None:
        future.result().close()


def _retrieve(future: "asyncio.Future[Any]") -> None:
    """A write to a websocket closed meanwhile fails its future: seen here, handled by on_close."""
    if not future.cancelled():
        future.exception()
