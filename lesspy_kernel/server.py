"""The one server: work folder, listener, handshakes, clients and their lanes, and a watchdog.

It is given a namespace (where names are looked up at call time) and an executor (on which thread a call
runs). The headless process and the notebook extension differ only in those two and in their lifecycle
(`exit_when_idle`, `parent_pid`), which the host passes in. Every verified connection is a lane: a transport
(transport/mapped_lane.py: its mappings and notify socket; transport/stream_lane.py: frames as messages on
the socket, the Jupyter Server relay's lanes) and a call loop with its own thread (callloop.py), given
what it needs of the server as a LaneHost. One thread here accepts and verifies connections without ever blocking
on one, and a watchdog cancels calls whose caller gave up or went away. The call history is an observer that
sees each call's outcome before the reply goes out (while argument views are still valid).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import selectors
import socket
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set, Union

from .transport import handshake
from .dispatch import Outcome
from .interrupts import StopReason
from .executors import DirectExecutor, Executor
from .transport.handshake import Answer, HandshakeError, Pending
from .wire.handshake import LANE_ID, Mode, Purpose, Result
from .hooks import thread_started
from .callloop import CallLoop, LaneHost
from .logfile import DEFAULT_LOG_CAP, LogFile
from .loglimit import LOG_TEXT_CHARS, LogLimiter, clip
from .namespaces import Namespace
from .transport.mapped_lane import MappedLane
from .transport.stream_lane import HANDOFF_NEEDS_UNIX, Handoff, StreamLane, receive_handoff
from .transport.spinner import Spinner
from .workfolder import FORCE_TCP_ENV, SOCKET_FILE, UNIX, WorkFolder, peer_uid, pid_alive, use_unix_socket

log = logging.getLogger("lesspy_kernel")

DEFAULT_CAPACITY = 16 * 1024 * 1024
DEFAULT_MAX_CLIENTS = 8
MAX_LANES_PER_CLIENT = 64
MAX_PENDING = 256            # connections being verified at once; past it the oldest is dropped
ACCEPT_BATCH = 16            # connections accepted per turn of the loop, so answers already in are read first
TCP_HANDSHAKE_TIMEOUT = 2.0  # on TCP (Windows) anyone local can connect: an unanswered handshake goes sooner
REFUSAL_LOG_INTERVAL = 1.0   # refusals are logged at most once a second (a flood must not fill the log)
WATCH_INTERVAL = 0.05        # how often the watchdog looks at running calls (cancel words, lost clients)
IDLE_WATCH_INTERVAL = 0.25   # how often it looks when no call was running
RESCUE_INTERVAL = 0.002      # how often it looks while a thread spins for every lane (Spinner.rescue)
STOP_GRACE = 3.0             # how long stop() waits for running calls to end after interrupting them
Observer = Callable[[Outcome], None]


_servers: "weakref.WeakSet[Server]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A child forked from a process that serves (os.fork, a multiprocessing pool with the fork start method):
    its copy of every server is inert (see Server.forget_in_child)."""
    for server in list(_servers):
        try:
            server.forget_in_child()
        except Exception:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)



@dataclass
class ServerStats:
    """Counters for `%lesspy status` and `lesspy status`, updated under the server's lock."""

    calls: int = 0
    errors: int = 0
    clients_seen: int = 0
    refused: int = 0
    last_error: str = ""


@dataclass
class Client:
    """One connected client (one C# proxy): its lanes, and whether it asked the server to stop after it."""

    id: int
    pid: int
    lanes: Set[CallLoop] = field(default_factory=set)
    shutdown_requested: bool = False


class Server:
    """Serves calls from up to `max_clients` clients, each on as many lanes as it opens."""

    def __init__(self, namespace: Namespace, folder: Union[str, os.PathLike], *,
                 executor: Optional[Executor] = None, capacity: int = DEFAULT_CAPACITY,
                 exit_when_idle: bool = False, parent_pid: Optional[int] = None,
                 max_clients: int = DEFAULT_MAX_CLIENTS, lock_held: bool = False,
                 log_file: Optional[Union[str, os.PathLike]] = None, log_cap: int = DEFAULT_LOG_CAP) -> None:
        if max_clients < 1:
            raise ValueError("max_clients must be at least 1")
        self.namespace = namespace
        self.folder = WorkFolder(folder)
        self.executor = executor or DirectExecutor()
        # headless: the spinning thread serves every lane (a kernel runs calls on its main thread instead)
        self._stop = threading.Event()
        self.spinner = Spinner(serve_all=self.executor.runs_inline, stop=self._stop)
        self.capacity = capacity
        self.exit_when_idle = exit_when_idle
        self.parent_pid = parent_pid
        self.max_clients = max_clients
        self.lock_held = lock_held
        self.logfile = LogFile(Path(log_file), log_cap, self.folder) if log_file else None
        self.observers: List[Observer] = []
        self.stats = ServerStats()
        self.session = secrets.randbits(64) or 1
        self.port = 0
        self.address = ""
        self.clients: Dict[int, Client] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._pending: Dict[socket.socket, Pending] = {}
        self._next_lane = 1
        self._had_client = False
        self._shutdown_asked_by = 0           # a client that sent SHUTDOWN and has gone: stop once idle
        self._opened = False
        self._started_at = time.time()
        self._listener: Optional[socket.socket] = None
        self._handshake_timeout = handshake.TIMEOUT
        self._refusals_unlogged = 0
        self._refusal_logged_at = 0.0
        self._wake_r: Optional[socket.socket] = None
        self._wake_w: Optional[socket.socket] = None
        self._selector: Optional[selectors.BaseSelector] = None
        self.limiter = LogLimiter()
        self._lane_host = LaneHost(namespace=namespace, executor=self.executor, stop_event=self._stop,
                                   limiter=self.limiter, record=self.record, lane_closed=self.lane_closed)
        _servers.add(self)

    @property
    def mode(self) -> Mode:
        return self.executor.mode

    @property
    def forked(self) -> bool:
        """True in a child forked from this process: touch nothing (forget_in_child)."""
        return self._lane_host.forked

    @property
    def running(self) -> bool:
        return self._opened and not self._stopped.is_set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def lanes(self) -> List[CallLoop]:
        with self._lock:
            return [lane for c in self.clients.values() for lane in c.lanes]

    # ------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Create the folder, key and listener, then publish pid and address (ready)."""
        try:
            self.folder.open()          # refuses a symlink, another user's folder, one that is not private
            if self.lock_held:
                self._open()
            else:
                with self.folder.start_lock():
                    self._open()
        except BaseException:
            self.folder.close()
            raise

    def _open(self) -> None:
        self.folder.prepare()
        try:
            self._key = self.folder.write_key()
            if use_unix_socket():
                # bound through the open folder (/proc/self/fd/N/notify.sock on Linux): any folder length works
                address = self.folder.address()
                self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._listener.bind(address)
                os.chmod(address, 0o600)
                where: Union[int, str] = UNIX
                self.address = str(self.folder.path / SOCKET_FILE)
                self._listener.listen(64)
            else:
                if sys.platform != "win32":
                    log.warning("%s is set: serving on TCP 127.0.0.1, where every local user can connect. It is "
                                "for tests only; unset it.", FORCE_TCP_ENV)
                self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self._listener.bind(("127.0.0.1", 0))
                self.port = self._listener.getsockname()[1]
                where = self.port
                self.address = f"127.0.0.1:{self.port}"
                self._handshake_timeout = TCP_HANDSHAKE_TIMEOUT
                self._listener.listen(socket.SOMAXCONN)    # a flood waits in the kernel, not in front of the owner
            self._listener.setblocking(False)
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._selector = selectors.DefaultSelector()
            self._selector.register(self._listener, selectors.EVENT_READ, "accept")
            self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            self.folder.publish(os.getpid(), where, getattr(self.namespace, "path", ""))
        except BaseException:
            self._close_sockets()
            if self.folder.fd is not None or os.name != "posix":
                self.folder.remove_files()
            raise
        self._opened = True
        if self.logfile is not None:
            self.logfile.attach()
        log.info("lesspy serving %s on %s (%s, capacity %d, up to %d clients)", self.folder.path, self.address,
                 self.mode.name.lower(), self.capacity, self.max_clients)

    def start(self) -> "Server":
        """Open and serve on a daemon thread (a daemon, so a kernel's atexit still runs)."""
        self.open()
        self._thread = threading.Thread(target=self.serve_forever, name="lesspy-server", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: interrupt running calls, close every lane, remove the files. Safe from any thread,
        twice, and from a signal handler (then it only asks; serve_forever does the rest). In a forked child it
        does nothing: the server is its parent's."""
        if self.forked:
            return
        self._stop.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        elif self._thread is None and self._opened and timeout > 0:
            self._stopped.wait(timeout)

    def _wake(self) -> None:
        if self._wake_w is not None:
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass

    def serve_forever(self) -> None:
        thread_started()
        watchdog = threading.Thread(target=self._watch, name="lesspy-watchdog", daemon=True)
        watchdog.start()
        self.spinner.start()
        try:
            assert self._selector is not None
            while not self._stop.is_set():
                timeout = self._next_deadline()
                ready = self._selector.select(timeout=timeout)
                accept = False
                for key, _ in ready:            # answers that are in first: a flood of new connections waits
                    if key.data == "accept":
                        accept = True
                    elif key.data == "wake":
                        try:
                            self._wake_r.recv(4096)  # type: ignore[union-attr]
                        except OSError:
                            pass
                    else:
                        self._on_pending(key.fileobj)  # type: ignore[arg-type]
                if accept:
                    self._accept()
                self._expire_pending()
        except Exception:
            log.exception("lesspy server loop failed")
        finally:
            self._close()

    def forget_in_child(self) -> None:
        """Called in a child just forked (os.register_at_fork): the child's copy of this server must never touch
        what its parent serves with. It is marked forked (stop, lane_closed, the log's rotation and the file
        removal do nothing), and its copies of the listener, the wake-up pair and the lanes' sockets are closed
        without shutdown() (which would end the parent's connections too): a child that lives on (a pool
        worker) keeps no client's connection open after the parent closed it."""
        self._lane_host.forked = True         # (no Event or Lock here: another thread may have held theirs)
        if self.logfile is not None:
            self.logfile.forked = True
        socks = [self._listener, self._wake_r, self._wake_w]
        for client in list(self.clients.values()):
            for lane in list(client.lanes):
                lane.transport.forget_in_child()
        for p in list(self._pending):
            socks.append(p)
        for s in socks:
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self._wake_w = None
        if self.logfile is not None:
            self.logfile.detach()

    def _close(self) -> None:
        if self.forked:
            return
        self._stop.set()
        for sock in list(self._pending):
            self._drop_pending(sock)
        lanes = self.lanes()
        for lane in lanes:
            lane.call.cancel(StopReason.SERVER_STOPPING)
            lane.close()
        self.spinner.stop()
        deadline = time.monotonic() + STOP_GRACE
        for lane in lanes:
            lane.thread.join(max(0.0, deadline - time.monotonic()))
        if self.spinner.thread is not None:
            self.spinner.thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [lane.id for lane in lanes if lane.thread.is_alive()]
        if stuck:
            log.warning("lanes %s still run a call that did not stop; leaving them behind", stuck)
        self._close_sockets()
        if self.logfile is not None:
            self.logfile.detach()
        self.limiter.flush()
        if self.mode == Mode.HEADLESS:
            self.folder.remove_files()
        else:
            self.folder.remove()
        self.folder.close()
        self._stopped.set()
        log.info("lesspy server stopped")

    def _close_sockets(self) -> None:
        """Close the listener, the wake-up pair and the selector (whatever exists)."""
        if self._selector is not None:
            self._selector.close()
        for s in (self._listener, self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._wake_w = None

    # ------------------------------------------------------------ connections

    def _accept(self) -> None:
        """Start verifying new connections; never waits for one of them. At most ACCEPT_BATCH per turn of the
        loop, so an answer that arrived meanwhile is read before more connections come in.

        Crowding (TCP, where any local user can connect): when MAX_PENDING connections wait for their answer,
        the one that has waited longest is closed. A client that answers (it has the key) answers as soon as it
        has read its hello; to push it out a flood must open MAX_PENDING connections in that time,
        while the server reads every answer between batches of ACCEPT_BATCH. Evicting the newest instead, or
        refusing new connections when full, would let a flood that keeps the table full refuse the owner
        every time."""
        assert self._listener is not None and self._selector is not None
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE) and self._pending:   # out of descriptors: make room
                    oldest = min(self._pending.values(), key=lambda p: p.deadline)
                    self._refused(oldest.sock, "too many unverified connections (out of file descriptors)")
                return
            if conn.family != socket.AF_INET:
                try:
                    uid = peer_uid(conn)
                except OSError:
                    uid = None
                if uid is not None and hasattr(os, "getuid") and uid != os.getuid():
                    conn.close()       # nothing is sent to another user, not even the hello
                    self._count_refusal(f"a connection from uid {uid}: only the server's own user (uid "
                                        f"{os.getuid()}) may connect")
                    continue
            if len(self._pending) >= MAX_PENDING:
                oldest = min(self._pending.values(), key=lambda p: p.deadline)
                self._refused(oldest.sock, "too many unverified connections")
            try:
                if conn.family == socket.AF_INET:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                pending = Pending.start(conn, self.mode, self.session, self._handshake_timeout)
            except OSError:
                conn.close()
                continue
            self._pending[conn] = pending
            self._selector.register(conn, selectors.EVENT_READ, "pending")

    def _next_deadline(self) -> Optional[float]:
        if not self._pending:
            return 1.0
        return max(0.0, min(p.deadline for p in self._pending.values()) - time.monotonic())

    def _expire_pending(self) -> None:
        now = time.monotonic()
        for sock, p in list(self._pending.items()):
            if p.deadline <= now:
                self._refused(sock, f"no handshake answer within {self._handshake_timeout:g} s")

    def _drop_pending(self, sock: socket.socket) -> Optional[Pending]:
        p = self._pending.pop(sock, None)
        try:
            assert self._selector is not None
            self._selector.unregister(sock)
        except (KeyError, ValueError, AssertionError):
            pass
        return p

    def _refused(self, sock: socket.socket, why: str, counted: bool = True) -> None:
        self._drop_pending(sock)
        sock.close()
        if counted:
            self._count_refusal(why)

    def _count_refusal(self, why: str) -> None:
        """Count a refused connection; log it, at most once per REFUSAL_LOG_INTERVAL (with how many went
        unlogged), so a flood of connections cannot fill the log."""
        with self._lock:
            self.stats.refused += 1
        now = time.monotonic()
        if now - self._refusal_logged_at < REFUSAL_LOG_INTERVAL:
            self._refusals_unlogged += 1
            return
        more = f" ({self._refusals_unlogged} more refused since the last such line)" if self._refusals_unlogged else ""
        self._refusals_unlogged = 0
        self._refusal_logged_at = now
        log.info("refused a connection: %s%s", why, more)

    def _on_pending(self, sock: socket.socket) -> None:
        p = self._pending.get(sock)
        if p is None:
            return
        try:
            answer = p.feed(self._key)
        except (BlockingIOError, InterruptedError):
            return
        except HandshakeError as e:
            p.reply(e.result, str(e).encode("utf-8"))
            self._refused(sock, str(e))
            return
        except OSError as e:           # closed: a liveness probe that sent nothing is not a refusal
            self._refused(sock, str(e), counted=len(p.received) > 0)
            return
        if answer is None:
            return
        self._drop_pending(sock)
        try:
            self._admit(p, answer)
        except Exception as e:
            self.limiter.log("connections not admitted", logging.ERROR, "admitting a connection failed", exc_info=True)
            p.reply(Result.BUSY, f"the server could not open a lane: {e}".encode("utf-8"))
            sock.close()

    def _admit(self, p: Pending, answer: Answer) -> None:
        sock = p.sock
        if answer.purpose == Purpose.STATUS:
            p.reply(Result.ACCEPTED, json.dumps(self.status()).encode("utf-8"))
            sock.close()
            return
        if answer.purpose == Purpose.STOP:
            with self._lock:
                others = [c for c in self.clients.values() if c.id != answer.client_id and c.lanes]
            if others:
                module = getattr(self.namespace, "path", "") or "a notebook's namespace"
                pids = ", ".join(str(c.pid) for c in others)
                why = (f"the server (pid {os.getpid()}) serving {module} in {self.folder.path} is in use by "
                       f"{len(others)} other client{'s' if len(others) > 1 else ''} (pid {pids}): it was not "
                       "stopped. Use another work folder for another app, or stop those clients first")
                self.limiter.log("refusals to stop", logging.INFO,
                                 "refused to stop for pid %d: %d other clients have lanes open (pid %s)", answer.pid,
                                 len(others), pids)
                p.reply(Result.IN_USE, why.encode("utf-8"))
                sock.close()
                return
            p.reply(Result.ACCEPTED)
            sock.close()
            log.info("stop requested by pid %d", answer.pid)
            self._stop.set()
            return
        if self._stop.is_set():
            p.reply(Result.BUSY, b"the server is stopping")
            sock.close()
            return
        with self._lock:
            client = self.clients.get(answer.client_id)
            problem = None
            if client is None and len(self.clients) >= self.max_clients:
                pids = ", ".join(str(c.pid) for c in self.clients.values())
                problem = (f"this server already serves {len(self.clients)} clients, its limit (pids {pids}); "
                           f"close one, or start the server with a higher --max-clients")
            elif client is not None and len(client.lanes) >= MAX_LANES_PER_CLIENT:
                problem = f"this client already has {MAX_LANES_PER_CLIENT} lanes open, the limit per client"
            if problem:
                self.stats.refused += 1
            else:
                lane_id = self._next_lane
                self._next_lane += 1
        if problem:
            self.limiter.log("refused lanes", logging.INFO, "refused pid %d: %s", answer.pid, problem)
            p.reply(Result.BUSY, problem.encode("utf-8"))
            sock.close()
            return
        sock.setblocking(True)
        sock.settimeout(None)
        new_client = client is None
        if client is None:
            client = Client(answer.client_id, answer.pid)
        handoff: Optional[Handoff] = None
        if answer.purpose == Purpose.WEBSOCKET:
            handoff = self._receive_handoff(p, lane_id)
            if handoff is None:
                return
        framed = answer.purpose in (Purpose.FRAMES, Purpose.WEBSOCKET)
        if framed:          # frames as messages on this socket (the Jupyter Server relay): no lane files
            lane = CallLoop(self._lane_host, StreamLane(lane_id, client, sock, self.session, self.limiter, handoff))
        else:
            mappings = MappedLane.create_mappings(self.folder, lane_id, self.capacity, self.session)
            lane = CallLoop(self._lane_host, MappedLane(lane_id, client, sock, mappings, self.session, self.spinner,
                                                        self.limiter))
        with self._lock:
            if new_client:
                self.clients[client.id] = client
                self.stats.clients_seen += 1
            client.lanes.add(lane)
            if not framed:      # the spinner watches lane files; a stream lane's thread waits on its socket
                self.spinner.lanes = self.spinner.lanes + (lane,)
            self._had_client = True
        if handoff is None:
            p.reply(Result.ACCEPTED, LANE_ID.pack(lane_id))
        else:
            try:
                self._say_hello(lane, handoff)
            except OSError:
                lane.close()                # the lane thread sees it closed and ends
        lane.start()
        self.limiter.log("lanes opened", logging.INFO, "client pid %d opened lane %d", answer.pid, lane_id)

    def _receive_handoff(self, p: Pending, lane_id: int) -> Optional[Handoff]:
        """Purpose WEBSOCKET: accept (the relay proved the key), then receive the websocket's TCP connection
        over this Unix socket. None (the socket closed) when that fails."""
        sock = p.sock
        if sock.family != getattr(socket, "AF_UNIX", None):
            p.reply(Result.BUSY, HANDOFF_NEEDS_UNIX.encode("utf-8"))
            sock.close()
            return None
        p.reply(Result.ACCEPTED, LANE_ID.pack(lane_id))
        try:
            return receive_handoff(sock)
        except (OSError, ValueError) as e:
            self.limiter.log("websocket hand-offs refused", logging.WARNING, "websocket hand-off failed: %s", e)
            sock.close()
            return None

    def _say_hello(self, lane: CallLoop, handoff: Handoff) -> None:
        """The hello the relay would have sent, now from the session (docs/PROTOCOL.md section 10)."""
        from . import __version__
        from .wire import PROTOCOL_VERSION

        assert isinstance(lane.transport, StreamLane)
        lane.transport.say_hello({"lesspy": __version__, "protocol": PROTOCOL_VERSION, "session": handoff.name,
                                  "session_id": str(self.session), "mode": int(self.mode), "lane": lane.id,
                                  "pid": os.getpid(), "max_message": handoff.max_message,
                                  "heartbeat_ms": handoff.heartbeat_ms})

    def lane_closed(self, lane: CallLoop) -> None:
        """Called by a lane's thread when it ends: forget it, remove its files, maybe stop the server."""
        if self.forked:                    # a forked child's copy: the lane and its files are the parent's
            return
        with self._lock:
            self.spinner.lanes = tuple(other for other in self.spinner.lanes if other is not lane)
        lane.close()
        lane.dispose(self.stopping)
        with self._lock:
            client = lane.client
            client.lanes.discard(lane)
            self.stats.calls += lane.calls        # from now on counted here (status adds the open lanes' own)
            gone = not client.lanes and self.clients.get(client.id) is client
            if gone:
                del self.clients[client.id]
                if client.shutdown_requested:
                    self._shutdown_asked_by = client.pid
            idle = not self.clients
            others = len(self.clients)
        if gone:
            self.limiter.log("disconnections", logging.INFO, "client pid %d disconnected", client.pid)
        if self.mode == Mode.HEADLESS and not self._stop.is_set():
            if self._shutdown_asked_by and idle:
                log.info("client pid %d asked the server to stop", self._shutdown_asked_by)
                self.stop(timeout=0)
            elif gone and client.shutdown_requested:
                # a SHUTDOWN must not stop a server other apps still use: it stops after the last of them
                log.info("client pid %d asked the server to stop, but %d other clients use it: stopping when the "
                         "last of them has gone", client.pid, others)
            elif idle and self.exit_when_idle:
                log.info("the last client has gone and the server was started with --exit-when-idle: stopping")
                self.stop(timeout=0)

    # ------------------------------------------------------------ calls

    def record(self, outcome: Outcome) -> None:
        """Count a failed call and show every call to the observers (the call history). Calls are counted by
        their lane (`CallLoop.calls`, one thread at a time), which spares every call a lock."""
        if outcome.error is not None:
            name, message = clip(outcome.name, 100), clip(outcome.error.message, 2 * LOG_TEXT_CHARS)
            with self._lock:
                self.stats.errors += 1
                self.stats.last_error = f"{name}: {message}"
            # a client may send any number of failing calls: a few lines a second, then how many more
            self.limiter.log("calls failed like this", logging.INFO, "call %s failed: %s", name, message)
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("call %s(%d args) -> %s in %.1f us", outcome.name, len(outcome.args),
                      type(outcome.result).__name__, outcome.duration * 1e6)
        for observer in self.observers:
            try:
                observer(outcome)
            except Exception:
                self.limiter.log("observer failures", logging.ERROR, "call observer failed", exc_info=True)

    def _watch(self) -> None:
        """Cancel calls whose caller abandoned them or went away; stop when the parent is gone; cap the log."""
        thread_started()
        last_slow = last_cap = 0.0
        interval = WATCH_INTERVAL
        while not self._stop.wait(interval):
            interval = IDLE_WATCH_INTERVAL                 # nothing running: look less often (idle when idle)
            if self.spinner.active:
                self.spinner.rescue()                      # a long call on the spinner gives the other lanes back
                interval = RESCUE_INTERVAL
            now = time.monotonic()
            for lane in self.lanes():
                try:
                    if isinstance(lane.transport, StreamLane):
                        lane.transport.tick(now)           # a handed-over websocket's KEEPALIVE
                    if not lane.busy:
                        continue
                    interval = min(interval, WATCH_INTERVAL)
                    if lane.transport.cancelled == lane.call.sequence:
                        lane.call.cancel(StopReason.CANCELLED)
                    elif lane.transport.connection_lost():
                        lane.call.cancel(StopReason.DISCONNECTED)
                except (ValueError, OSError):      # the lane was remapped or closed under us: look next time
                    continue
            now = time.monotonic()
            if now - last_cap >= WATCH_INTERVAL:           # a stat: what calls print stays near the cap too
                last_cap = now
                if self.logfile is not None:
                    self.logfile.rotate_if_full()
            if now - last_slow < 1.0:
                continue
            last_slow = now
            if self.parent_pid and not pid_alive(self.parent_pid):
                with self._lock:
                    idle = not self.clients
                if idle:
                    log.info("parent process %d is gone and no client is connected: stopping", self.parent_pid)
                    self.stop(timeout=0)
            self.limiter.flush()

    # ------------------------------------------------------------ status

    def status(self) -> Dict[str, Any]:
        """What `lesspy status` and `%lesspy status` show."""
        from . import __version__
        from .wire import PROTOCOL_VERSION

        with self._lock:
            clients = [{"pid": c.pid, "lanes": len(c.lanes)} for c in self.clients.values()]
            stats = self.stats
            return {"pid": os.getpid(), "version": __version__, "protocol": PROTOCOL_VERSION,
                    "mode": self.mode.name.lower(), "module": getattr(self.namespace, "path", ""),
                    "folder": str(self.folder.path), "clients": len(clients), "client_list": clients,
                    "lanes": sum(c["lanes"] for c in clients), "max_clients": self.max_clients,
                    "calls": stats.calls + sum(lane.calls for c in self.clients.values() for lane in c.lanes),
                    "errors": stats.errors, "refused": stats.refused,
                    "clients_seen": stats.clients_seen, "last_error": stats.last_error,
                    "uptime_s": round(time.time() - self._started_at, 1)}
