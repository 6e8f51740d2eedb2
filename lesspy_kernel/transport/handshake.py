"""The notify socket's handshake: a connection proves it holds session.key before anything runs.

Like Jupyter's signed messages: HMAC-SHA256 with the key from a 0600 file, compared in constant time. The
server side is a small state machine fed by a selector, so a silent or slow connection never holds up
calls or other connections (docs/PROTOCOL.md section 3). The bytes themselves (layouts, modes, purposes,
results) are the codec's, lesspy_kernel/wire/handshake.py.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Optional, Tuple

from ..wire import PROTOCOL_VERSION
from ..wire.handshake import ANSWER, ANSWER_HEAD, HELLO, MAGIC, RESULT, Mode, Purpose, Result, result_frame

TIMEOUT = 5.0


class HandshakeError(Exception):
    """The handshake failed; `result` is what the server answered (or would answer)."""

    def __init__(self, message: str, result: Result = Result.BAD_VERSION) -> None:
        super().__init__(message)
        self.result = result


class HandshakeClosed(HandshakeError):
    """The server closed the connection before its result: on TCP a flood of unanswered connections from
    another local user may have pushed this one out (section 3); a client tries again."""


def mac(key: bytes, nonce: bytes) -> bytes:
    return hmac.new(key, nonce, hashlib.sha256).digest()


@dataclass
class Answer:
    purpose: Purpose
    pid: int
    client_id: int


@dataclass
class Pending:
    """Server side: one connection between accept and a verified answer."""

    sock: socket.socket
    nonce: bytes
    deadline: float
    received: bytearray = field(default_factory=bytearray)

    @classmethod
    def start(cls, sock: socket.socket, mode: Mode, session: int, timeout: float = TIMEOUT) -> "Pending":
        """Send the hello at once (it fits any socket buffer) and wait `timeout` seconds for the answer."""
        nonce = os.urandom(32)
        sock.setblocking(False)
        sock.send(HELLO.pack(MAGIC, PROTOCOL_VERSION, mode, session, nonce))
        return cls(sock, nonce, time.monotonic() + timeout)

    def feed(self, key: bytes) -> Optional[Answer]:
        """Read what arrived. None: need more. Raises HandshakeError (to refuse) or ConnectionError (closed)."""
        chunk = self.sock.recv(ANSWER.size - len(self.received))
        if not chunk:
            raise ConnectionError(f"closed after {len(self.received)} of {ANSWER.size} handshake bytes")
        self.received += chunk
        if len(self.received) >= ANSWER_HEAD.size:
            magic, version, purpose = ANSWER_HEAD.unpack_from(self.received)
            if magic != MAGIC:
                raise HandshakeError("not a lesspy client (its answer does not start with LSPY)")
            if version != PROTOCOL_VERSION:
                raise HandshakeError(f"the client speaks protocol version {version}, this server speaks version "
                                     f"{PROTOCOL_VERSION}: use matching versions of LessPy and lesspy-kernel")
            if purpose not in Purpose.__members__.values():
                raise HandshakeError(f"unknown connection purpose {purpose}")
        if len(self.received) < ANSWER.size:
            return None
        _, _, purpose, pid, client_id, answer = ANSWER.unpack(bytes(self.received))
        if not hmac.compare_digest(answer, mac(key, self.nonce)):
            raise HandshakeError("wrong session key: read session.key from the server's work folder",
                                 Result.WRONG_KEY)
        return Answer(Purpose(purpose), pid, client_id)

    def reply(self, result: Result, message: bytes = b"") -> None:
        """Send the result (best effort: a client that went away just misses it)."""
        try:
            self.sock.settimeout(1.0)
            self.sock.sendall(result_frame(result, message))
        except OSError:
            pass
        finally:
            try:
                self.sock.settimeout(None)      # a lane's socket blocks from here on
            except OSError:
                pass


# ---------------------------------------------------------------- client side (Python client, tests, CLI)

def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise HandshakeClosed(f"connection closed after {len(data)} of {n} handshake bytes")
        data += chunk
    return data


def connect(sock: socket.socket, key: bytes, purpose: Purpose = Purpose.LANE,
            client_id: int = 0, timeout: float = TIMEOUT) -> Tuple[Mode, int, bytes]:
    """Shake hands; returns (mode, session id, the accept message). Raises HandshakeError when refused, and
    socket.timeout when the server says nothing for `timeout` seconds."""
    sock.settimeout(timeout)
    magic, version, mode, session, nonce = HELLO.unpack(recv_exact(sock, HELLO.size))
    if magic != MAGIC:
        raise HandshakeError("not a lesspy server (its hello does not start with LSPY)")
    if version != PROTOCOL_VERSION:
        raise HandshakeError(f"the server speaks protocol version {version}, this client speaks "
                             f"{PROTOCOL_VERSION}: use matching versions")
    sock.sendall(ANSWER.pack(MAGIC, PROTOCOL_VERSION, purpose, os.getpid(), client_id, mac(key, nonce)))
    result, n = RESULT.unpack(recv_exact(sock, RESULT.size))
    message = recv_exact(sock, n) if n else b""
    if result != Result.ACCEPTED:
        raise HandshakeError(message.decode("utf-8", errors="replace"), Result(result))
    sock.settimeout(None)
    return Mode(mode), session, message
