"""A Python client of docs/PROTOCOL.md: `lesspy status` and `lesspy stop`, and lanes for tests and tools.

The real client is C# (csharp/LessPy); this one follows the same rules (handshake, lane handover with the
waiting word, cancel word, growth) so the server can be checked without Mono, and so the CLI can ask a
running server how it is.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Union

from .transport import handshake
from .wire.handshake import CALL, LANE_ID, Mode, Purpose
from .transport.mapping import Mapping, full_fence
from .coerce import encode_call
from .wire import (FLAG_REPLY_IN_REQUEST, REQUEST_CALL, REQUEST_CLOSE, REQUEST_NEXT, REQUEST_STREAM, STATUS_END,
                   STATUS_ERROR, ErrorReply, Tag, decode_error, decode_reply, decode_value, read_header)
from .workfolder import KEY_FILE, connect_notify, folder_base, open_folder, read_private

PathLike = Union[str, os.PathLike]
TCP_ATTEMPTS = 4                # handshakes tried on TCP when the server closes the connection first
END = object()                  # what `receive` returns when a stream has no more items
_IN_REQUEST = bytes([Tag.NDARRAY_IN_REQUEST])


class RemoteError(Exception):
    """The server answered a call with an error reply."""

    def __init__(self, reply: ErrorReply) -> None:
        super().__init__(f"{reply.kind.name}: {reply.message}")
        self.reply = reply


def _key(folder: Path, dirfd: Optional[int] = None) -> bytes:
    """session.key, read only when it is a private file of ours (not through a symlink)."""
    return read_private(folder_base(folder, dirfd) / KEY_FILE, folder / KEY_FILE).strip()


def _connect(folder: Path, purpose: Purpose, key: Optional[bytes] = None, client_id: int = 0,
             timeout: float = 5.0, dirfd: Optional[int] = None):
    """Connect and shake hands, after the ownership checks (docs/PROTOCOL.md section 1): the folder, notify.port
    and session.key are the current user's and private, and the server behind a Unix socket is the current
    user (SO_PEERCRED). `dirfd`: the folder opened by `open_folder` (else opened and closed here)."""
    folder = Path(folder).absolute()
    own = dirfd is None
    if own:
        dirfd = open_folder(folder)
    try:
        for attempt in range(TCP_ATTEMPTS):
            sock = connect_notify(folder, timeout, dirfd)
            try:
                mode, session, message = handshake.connect(sock, key if key is not None else _key(folder, dirfd),
                                                           purpose, client_id, timeout)
                break
            except socket.timeout:
                sock.close()
                raise TimeoutError(f"the lesspy server of {folder} accepted the connection but did not complete the "
                                   f"handshake within {timeout:g} s: it is alive but not answering (stopped, or a "
                                   "call holding the GIL); `lesspy status` says more once it answers") from None
            except (handshake.HandshakeClosed, ConnectionResetError, BrokenPipeError):
                sock.close()
                # on TCP (Windows) another local user's flood may have pushed this connection out before the
                # server read its answer (docs/PROTOCOL.md section 3): try again. A Unix socket is never crowded.
                if sock.family != socket.AF_INET or attempt == TCP_ATTEMPTS - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
            except BaseException:
                sock.close()
                raise
    finally:
        if own and dirfd is not None:
            os.close(dirfd)
    return sock, mode, session, message


def status(folder: PathLike, timeout: float = 5.0) -> Dict[str, Any]:
    """The status of the server of `folder` (pid, version, mode, clients, lanes, calls, ...)."""
    sock, _, _, message = _connect(Path(folder), Purpose.STATUS, timeout=timeout)
    sock.close()
    result: Dict[str, Any] = json.loads(message.decode("utf-8"))
    return result


def stop(folder: PathLike, timeout: float = 5.0, wait: bool = True, client_id: int = 0) -> None:
    """Ask the server of `folder` to stop, and (by default) wait until its process has gone. Raises
    handshake.HandshakeError with result IN_USE (and the server's message) when other clients use it."""
    from .workfolder import PID_FILE, pid_alive

    folder = Path(folder).absolute()
    try:
        pid: Optional[int] = int(read_private(folder / PID_FILE).decode("ascii").strip())
    except (OSError, ValueError):
        pid = None
    sock, _, _, _ = _connect(folder, Purpose.STOP, timeout=timeout, client_id=client_id)
    sock.close()
    if wait and pid is not None and pid != os.getpid():
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)


@dataclass
class FramesConnection:
    """A verified FRAMES connection (handshake purpose 3): one lane whose frames travel as messages on `sock`
    (docs/PROTOCOL.md section 10; wire/message.py). `sock` blocks, with no timeout."""

    sock: socket.socket
    mode: Mode              # where the server runs calls (headless, notebook, notebook threaded)
    session: int            # the server run's session id: every message header carries it
    lane: int               # the lane's id
    pid: int                # the server's process (0: unknown)
    folder: Path

    def close(self) -> None:
        self.sock.close()


def open_frames(folder: PathLike, client_id: int = 0, timeout: float = 5.0,
                purpose: Purpose = Purpose.FRAMES) -> FramesConnection:
    """Open a lane whose frames travel as messages on the connection (the Jupyter Server relay's way into a
    session), after the same checks as every connection here (`_connect`: the folder and its files are the
    user's and private, the server behind a Unix socket is the user). `client_id`: lanes with one id count as one
    client of the server (its limits: clients, lanes per client); 0 gives this lane an id of its own. `timeout`:
    for the connection and the handshake. `purpose` WEBSOCKET: the caller then hands over a websocket's TCP
    connection (stream_lane.handoff_bytes with its descriptor). Raises what a refused or missing server raises: FileNotFoundError
    (no such folder, or no server published there), ConnectionRefusedError (its server is gone),
    PermissionError (a folder or file that fails the trust checks, with the check's text), TimeoutError (a
    server that does not answer), handshake.HandshakeError (refused: its message is the server's)."""
    from .workfolder import PID_FILE

    folder = Path(folder).absolute()
    dirfd = open_folder(folder)
    try:
        sock, mode, session, message = _connect(folder, purpose, client_id=client_id or secrets.randbits(63),
                                                timeout=timeout, dirfd=dirfd)
        try:
            pid = int(read_private(folder_base(folder, dirfd) / PID_FILE, folder / PID_FILE).decode("ascii").strip())
        except (OSError, ValueError):
            pid = 0
    finally:
        if dirfd is not None:
            os.close(dirfd)
    return FramesConnection(sock, mode, session, LANE_ID.unpack(message)[0], pid, folder)


class ClientLane:
    """A client's lane: a verified connection and the two mappings the server gave it."""

    def __init__(self, folder: PathLike, key: Optional[bytes] = None, client_id: Optional[int] = None,
                 timeout: float = 30.0) -> None:
        self.folder = Path(folder).absolute()
        self.client_id = client_id if client_id is not None else secrets.randbits(63)
        # the folder stays open while the lane is: its files are reached through it (workfolder.folder_base)
        self._dirfd = open_folder(self.folder)
        try:
            self.sock, self.mode, self.session, message = _connect(self.folder, Purpose.LANE, key,
                                                                   self.client_id, min(timeout, handshake.TIMEOUT),
                                                                   dirfd=self._dirfd)
            self.sock.settimeout(timeout)
            self.id = LANE_ID.unpack(message)[0]
            base = folder_base(self.folder, self._dirfd)
            self.req = Mapping(base / f"lane-{self.id}.req.mmf", create=False)
            self.resp = Mapping(base / f"lane-{self.id}.resp.mmf", create=False)
        except BaseException:
            if getattr(self, "sock", None) is not None:
                self.sock.close()
            if self._dirfd is not None:
                os.close(self._dirfd)
            raise
        for m in (self.req, self.resp):
            if m.session != self.session:
                raise ConnectionError(f"{m.path.name} belongs to another server run")
        self.seq = 0
        self._sent = 0                        # payload length of the last request
        self._stream: object = None

    def send_raw(self, payload: bytes, status: int = REQUEST_CALL, flags: int = 0) -> int:
        """Write a request frame and hand it over (grow the request file first when it does not fit).
        `flags`: the request's flags word (FLAG_REPLY_IN_REQUEST)."""
        self.req.grow(len(payload))
        self.req.payload(len(payload))[:] = payload
        self.req.flags = flags
        self._sent = len(payload)
        return self.hand_over(len(payload), status)

    def hand_over(self, length: int, status: int = REQUEST_CALL) -> int:
        """Publish the frame already in the request file under the next sequence (PROTOCOL.md section 2): the
        sequence last, a fence, and a CALL byte if the server said it would block."""
        self.seq += 1
        self.req.publish(self.seq, length, status)
        full_fence()
        if self.req.waiting:
            self.sock.sendall(CALL)
        return self.seq

    def wait(self, seq: Optional[int] = None, spin: float = 5e-6, yield_for: float = 250e-6) -> None:
        """Wait until the reply to `seq` (default: the last call) is in the response file: spin, then yield the
        CPU between looks, then block on the socket, for as long as the C# client does (tests/test_parity.py)."""
        seq = self.seq if seq is None else seq
        now = time.perf_counter()
        spin_end, yield_end = now + spin, now + spin + yield_for
        while self.resp.sequence < seq:
            now = time.perf_counter()
            if now > spin_end:
                if now > yield_end:
                    break
                os.sched_yield()
        while self.resp.sequence < seq:
            self.resp.waiting = 1
            full_fence()
            if self.resp.sequence >= seq:
                self.resp.waiting = 0
                break
            b = self.sock.recv(1)
            self.resp.waiting = 0
            if not b:
                if self.resp.sequence >= seq:    # its last reply came just before it closed the lane (an error)
                    break
                raise ConnectionError("the server closed the lane")
        if self.resp.sequence != seq:
            raise ConnectionError(f"the reply carries sequence {self.resp.sequence}, the call was {seq}")

    def receive(self) -> Any:
        self.wait()
        self.resp.refresh()
        _, length, status = read_header(self.resp.view)
        payload = bytes(self.resp.payload(length))
        if status == STATUS_ERROR:
            raise RemoteError(decode_error(payload))
        if status == STATUS_END:
            return END
        if payload[:1] == _IN_REQUEST and self.req.flags & FLAG_REPLY_IN_REQUEST:
            return decode_reply(payload, bytes(self.req.payload(self._sent)))    # a copy, as every result here
        return decode_value(payload)

    def call(self, name: str, returns: Any, args: Any = (), arg_descs: Any = None,
             reply_in_request: bool = False) -> Any:
        """Call `name`; with `reply_in_request` an NdArray result that is part of an argument may come back
        as a pointer into the request (PROTOCOL.md section 7); it is copied out here either way."""
        self.send_raw(encode_call(name, returns, list(args), arg_descs),
                      flags=FLAG_REPLY_IN_REQUEST if reply_in_request else 0)
        return self.receive()

    def stream(self, name: str, item: Any, args: Any = (), arg_descs: Any = None) -> Iterator[Any]:
        """Call a function whose result is streamed (C# IEnumerable<T>): one round trip per item. Closing
        the iterator early closes the Python generator."""
        token = object()
        self._stream = token                  # a lane has one open stream: a newer call replaces this one
        self.send_raw(encode_call(name, item, list(args), arg_descs), REQUEST_STREAM)
        done = False
        try:
            while True:
                value = self.receive()
                if value is END:
                    done = True
                    return
                yield value
                self.send_raw(b"", REQUEST_NEXT)
        except RemoteError:
            done = True
            raise
        finally:
            if not done and self._stream is token:
                self.send_raw(b"", REQUEST_CLOSE)
                self.receive()

    def cancel(self, seq: Optional[int] = None) -> None:
        """Abandon a call: the server does not start it, or interrupts it."""
        self.req.cancel = self.seq if seq is None else seq

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            self.req.close()
            self.resp.close()
            if self._dirfd is not None:
                os.close(self._dirfd)
                self._dirfd = None

    def __enter__(self) -> "ClientLane":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
