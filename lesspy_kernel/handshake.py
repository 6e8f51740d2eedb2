"""The notify socket's handshake: a client proves it holds session.key before anything runs.

Like Jupyter's signed messages: HMAC-SHA256 with the key from a 0600 file, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct
from enum import IntEnum

from .protocol import PROTOCOL_VERSION

MAGIC = b"LSPY"
HELLO = struct.Struct("<4sHH32s")          # magic, version, mode, nonce
ANSWER = struct.Struct("<4sHHI32s")        # magic, version, reserved, client pid, mac
RESULT = struct.Struct("<BH")              # result, message length
TIMEOUT = 5.0

CALL = b"\x01"
SHUTDOWN = b"\x02"
REPLY = b"\x01"


class Mode(IntEnum):
    """Where the server runs calls; told to the client so its timeout message can say why."""

    HEADLESS = 0
    NOTEBOOK = 1
    NOTEBOOK_THREADED = 2


class Result(IntEnum):
    ACCEPTED = 0
    WRONG_KEY = 1
    BAD_VERSION = 2
    BUSY = 3


class HandshakeError(Exception):
    pass


def mac(key: bytes, nonce: bytes) -> bytes:
    return hmac.new(key, nonce, hashlib.sha256).digest()


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise HandshakeError(f"connection closed after {len(data)} of {n} handshake bytes")
        data += chunk
    return data


def refuse(sock: socket.socket, result: Result, message: str) -> None:
    """Tell the client why it is refused (best effort); the caller closes the socket."""
    raw = message.encode("utf-8")
    try:
        sock.sendall(RESULT.pack(result, len(raw)) + raw)
    except OSError:
        pass


def admit(sock: socket.socket) -> None:
    sock.sendall(RESULT.pack(Result.ACCEPTED, 0))


def verify(sock: socket.socket, key: bytes, mode: Mode) -> int:
    """Server side: send the challenge, check the answer. Returns the client's pid; the caller then admits it
    (or refuses it as busy). Raises HandshakeError after telling a wrong client why."""
    sock.settimeout(TIMEOUT)
    nonce = os.urandom(32)
    sock.sendall(HELLO.pack(MAGIC, PROTOCOL_VERSION, mode, nonce))
    try:
        magic, version, _, pid, answer = ANSWER.unpack(recv_exact(sock, ANSWER.size))
    except (OSError, socket.timeout) as e:
        raise HandshakeError(f"no handshake answer: {e}") from None
    problem = None
    if magic != MAGIC:
        problem = (Result.BAD_VERSION, "not a lesspy client")
    elif version != PROTOCOL_VERSION:
        problem = (Result.BAD_VERSION, f"client speaks protocol {version}, this server speaks {PROTOCOL_VERSION}: "
                                       "use matching versions of LessPy and lesspy-kernel")
    elif not hmac.compare_digest(answer, mac(key, nonce)):
        problem = (Result.WRONG_KEY, "wrong session key: read session.key from the server's work folder")
    if problem:
        refuse(sock, *problem)
        raise HandshakeError(problem[1])
    sock.settimeout(None)
    return pid


def connect(sock: socket.socket, key: bytes) -> Mode:
    """Client side (the C# client does the same; Python uses it in tests and tools)."""
    sock.settimeout(TIMEOUT)
    magic, version, mode, nonce = HELLO.unpack(recv_exact(sock, HELLO.size))
    if magic != MAGIC or version != PROTOCOL_VERSION:
        raise HandshakeError(f"not a lesspy v{PROTOCOL_VERSION} server")
    sock.sendall(ANSWER.pack(MAGIC, PROTOCOL_VERSION, 0, os.getpid(), mac(key, nonce)))
    result, n = RESULT.unpack(recv_exact(sock, RESULT.size))
    message = recv_exact(sock, n).decode("utf-8", errors="replace") if n else ""
    if result != Result.ACCEPTED:
        raise HandshakeError(message)
    sock.settimeout(None)
    return Mode(mode)
