"""The one server: work folder, listener, handshake, mappings and the call loop.

It is given a namespace (where names are looked up at call time) and an executor (on which thread a call
runs). The headless process and the notebook extension differ only in those two; the call history is an
observer that sees each call's outcome before the reply goes out (while argument views are still valid).
"""

from __future__ import annotations

import logging
import os
import queue
import select
import selectors
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Union

from . import handshake
from .dispatch import Outcome, invoke
from .executors import DirectExecutor, Executor
from .mapping import Mapping
from .namespaces import Namespace
from .protocol import (HEADER, STATUS_ERROR, STATUS_OK, ErrorKind, ErrorReply, decode_call, publish,
                       read_header, value_size, write_error, write_value)
from .workfolder import WorkFolder, pid_alive

log = logging.getLogger("lesspy_kernel")

DEFAULT_CAPACITY = 16 * 1024 * 1024
MAX_HANDSHAKES = 8      # connections being verified at once; more are closed at once
Observer = Callable[[Outcome], None]


@dataclass
class ServerStats:
    """What `%lesspy status` shows."""

    calls: int = 0
    errors: int = 0
    client_pid: Optional[int] = None
    clients_seen: int = 0
    refused: int = 0
    last_error: str = ""


class Server:
    """Serves calls from one C# client at a time through `folder`'s mappings."""

    def __init__(self, namespace: Namespace, folder: Union[str, os.PathLike], *,
                 executor: Optional[Executor] = None, capacity: int = DEFAULT_CAPACITY,
                 keep_alive: bool = True, parent_pid: Optional[int] = None) -> None:
        self.namespace = namespace
        self.folder = WorkFolder(folder)
        self.executor = executor or DirectExecutor()
        self.capacity = capacity
        self.keep_alive = keep_alive
        self.parent_pid = parent_pid
        self.observers: List[Observer] = []
        self.stats = ServerStats()
        self.port = 0
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._shutdown_requested = False
        self._thread: Optional[threading.Thread] = None
        self._client: Optional[socket.socket] = None
        self._listener: Optional[socket.socket] = None
        self._verified: "queue.Queue[tuple]" = queue.Queue()
        self._handshakes = threading.BoundedSemaphore(MAX_HANDSHAKES)
        self._opened = False

    @property
    def mode(self) -> handshake.Mode:
        return self.executor.mode

    @property
    def running(self) -> bool:
        return self._opened and not self._stopped.is_set()

    # ------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Create the folder, key, mappings and listener, then publish pid and port (ready)."""
        self.folder.prepare()
        self.request = self.response = None
        self._listener = self._wake_r = self._wake_w = self._selector = None
        try:
            self._key = self.folder.write_key()
            self.request = Mapping(self.folder.request, self.capacity)
            self.response = Mapping(self.folder.response, self.capacity)
            self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._listener.bind(("127.0.0.1", 0))
            self._listener.listen(16)
            self.port = self._listener.getsockname()[1]
            self._wake_r, self._wake_w = socket.socketpair()
            self._selector = selectors.DefaultSelector()
            self._selector.register(self._listener, selectors.EVENT_READ, "accept")
            self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            self.folder.publish(os.getpid(), self.port, getattr(self.namespace, "path", ""))
        except BaseException:
            self._release()
            self.folder.remove()
            raise
        self._opened = True
        log.info("lesspy serving %s on 127.0.0.1:%d (%s, capacity %d)", self.folder.path, self.port,
                 self.mode.name.lower(), self.capacity)

    def start(self) -> "Server":
        """Open and serve on a daemon thread (a daemon, so a kernel's atexit still runs)."""
        self.open()
        self._thread = threading.Thread(target=self.serve_forever, name="lesspy-server", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and remove the folder's files. Safe to call twice and from any thread."""
        self._stop.set()
        if self._opened:
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        elif self._thread is None and self._opened:
            self._stopped.wait(timeout)

    def serve_forever(self) -> None:
        try:
            while not self._stop.is_set():
                for key, _ in self._selector.select(timeout=1.0):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "client":
                        self._on_client_byte()
                    else:
                        self._wake_r.recv(64)
                self._admit_verified()
                if self.parent_pid and not pid_alive(self.parent_pid):
                    log.info("parent process %d is gone: stopping", self.parent_pid)
                    break
        except Exception:
            log.exception("lesspy server loop failed")
        finally:
            self._close()

    def _close(self) -> None:
        self._drop_client()
        self._release()
        if self.keep_alive and self.mode == handshake.Mode.HEADLESS:
            self.folder.remove_files(keep_mappings=True)   # nothing may claim a live server any more
        else:
            self.folder.remove()
        self._stopped.set()
        log.info("lesspy server stopped")

    def _release(self) -> None:
        """Close sockets, selector and mappings (whatever exists)."""
        while not self._verified.empty():
            self._verified.get_nowait()[0].close()
        if self._selector is not None:
            self._selector.close()
        for s in (self._listener, self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        for m in (self.request, self.response):
            if m is not None:
                m.close()

    # ------------------------------------------------------------ connections

    def _accept(self) -> None:
        """Verify a new connection on its own short-lived thread: a silent client must not stall calls."""
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        if not self._handshakes.acquire(blocking=False):
            self.stats.refused += 1
            conn.close()
            return
        threading.Thread(target=self._verify, args=(conn,), name="lesspy-handshake", daemon=True).start()

    def _verify(self, conn: socket.socket) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pid = handshake.verify(conn, self._key, self.mode)
        except (handshake.HandshakeError, OSError) as e:
            self.stats.refused += 1
            log.info("refused a connection: %s", e)
            conn.close()
            return
        finally:
            self._handshakes.release()
        self._verified.put((conn, pid))
        try:
            self._wake_w.send(b"v")
        except OSError:
            conn.close()

    def _admit_verified(self) -> None:
        """On the server thread: admit verified clients, or refuse them while another client is connected."""
        while not self._verified.empty():
            conn, pid = self._verified.get_nowait()
            if self._client is not None and not self._client_alive():
                self._drop_client()
            if self._client is not None or self._stop.is_set():
                handshake.refuse(conn, handshake.Result.BUSY, f"another client (pid {self.stats.client_pid}) is "
                                 "connected; this server serves one client at a time")
                self.stats.refused += 1
                conn.close()
                continue
            try:
                handshake.admit(conn)
            except OSError:
                conn.close()
                continue
            self._client = conn
            self.stats.client_pid = pid
            self.stats.clients_seen += 1
            self._selector.register(conn, selectors.EVENT_READ, "client")
            log.info("client pid %d connected", pid)

    def _client_alive(self) -> bool:
        """False when the current client has hung up but its EOF is not processed yet."""
        try:
            ready, _, _ = select.select([self._client], [], [], 0)
            return not ready or self._client.recv(1, socket.MSG_PEEK) != b""
        except OSError:
            return False

    def _drop_client(self) -> None:
        if self._client is None:
            return
        try:
            self._selector.unregister(self._client)
        except (KeyError, ValueError):
            pass
        self._client.close()
        self._client = None
        log.info("client pid %s disconnected", self.stats.client_pid)
        self.stats.client_pid = None
        if self.mode == handshake.Mode.HEADLESS and (not self.keep_alive or self._shutdown_requested):
            self._stop.set()

    def _on_client_byte(self) -> None:
        try:
            byte = self._client.recv(1)
        except OSError:
            byte = b""
        if byte == handshake.CALL:
            self._serve_call()
        elif byte == handshake.SHUTDOWN:
            self._shutdown_requested = True
        else:
            if byte:
                log.warning("protocol error: byte 0x%02x on the notify socket; closing the connection", byte[0])
            self._drop_client()

    # ------------------------------------------------------------ calls

    def _serve_call(self) -> None:
        seq = HEADER.unpack_from(self.request.view)[4]
        try:
            _, length, _ = read_header(self.request.view)
            call = decode_call(self.request.payload(length))
        except Exception as e:  # FrameError, or anything a hostile frame provokes: never fatal
            outcome = self._failed("?", ErrorKind.MALFORMED_REQUEST, f"the request could not be decoded ({e}): the "
                                   "client and server disagree about docs/PROTOCOL.md; use matching versions")
        else:
            try:
                outcome = self.executor.run(lambda: invoke(call, self.namespace), self._stop)
            except BaseException as e:  # the executor gave up (server stopping) or something of ours broke
                outcome = self._failed(call.name, ErrorKind.SERVER_ERROR,
                                       f"the server could not run {call.name}: {e}" if not self._stop.is_set()
                                       else f"the server is stopping, so {call.name} did not run")
        self._write_reply(seq, outcome)
        self.stats.calls += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("call %d %s(%d args) -> %s in %.1f us", seq, outcome.name, len(outcome.args),
                      "error" if outcome.error else type(outcome.result).__name__, outcome.duration * 1e6)
        if outcome.error is not None:
            self.stats.errors += 1
            self.stats.last_error = f"{outcome.name}: {outcome.error.message}"
            log.info("call %s failed: %s", outcome.name, outcome.error.message)
        for observer in self.observers:
            try:
                observer(outcome)
            except Exception:
                log.exception("call observer failed")
        try:
            self._client.sendall(handshake.REPLY)
        except OSError:
            log.info("client went away before the reply to %s", outcome.name)
            self._drop_client()

    @staticmethod
    def _failed(name: str, kind: ErrorKind, message: str) -> Outcome:
        return Outcome(name, 0, [], time.time(), error=ErrorReply(kind, "", message, ""))

    def _write_reply(self, seq: int, outcome: Outcome) -> None:
        buf = self.response.payload(self.response.payload_capacity)
        try:
            if outcome.error is None:
                size = value_size(outcome.value, outcome.returns)
                if size <= len(buf):
                    write_value(buf, outcome.value, outcome.returns)
                    publish(self.response.header, seq, size, STATUS_OK)
                    return
                outcome.error = ErrorReply(
                    ErrorKind.PAYLOAD_TOO_LARGE, "",
                    f"the result of {outcome.name} is {size:,} bytes but the response mapping holds {len(buf):,}: "
                    "raise the capacity (Initialize(..., capacity: N) or %lesspy serve --capacity SIZE)", "")
        except Exception as e:  # a bug of ours must not kill the server: tell the caller
            log.exception("encoding the result of %s failed", outcome.name)
            outcome.error = ErrorReply(ErrorKind.SERVER_ERROR, type(e).__name__,
                                       f"lesspy could not encode the result of {outcome.name}: {e}", "")
        e = outcome.error
        n = write_error(buf, e.kind, e.python_type, e.message, e.traceback)
        publish(self.response.header, seq, n, STATUS_ERROR)
