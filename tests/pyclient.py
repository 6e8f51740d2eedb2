"""A minimal Python client speaking docs/PROTOCOL.md, for server tests that do not need Mono.

The real client is C# (csharp/LessPy); this one exists so the server's own behaviour can be tested fast.
"""

from __future__ import annotations

import mmap
import os
import socket
from pathlib import Path

from lesspy_kernel import handshake
from lesspy_kernel.protocol import (HEADER_SIZE, STATUS_ERROR, decode_error, decode_value, encode_call, publish,
                                    read_header)


class RemoteError(Exception):
    def __init__(self, reply):
        super().__init__(f"{reply.kind.name}: {reply.message}")
        self.reply = reply


class PyClient:
    def __init__(self, folder, key: bytes = None) -> None:
        folder = Path(folder)
        self.folder = folder
        port = int((folder / "notify.port").read_text())
        self.key = key if key is not None else (folder / "session.key").read_text().strip().encode()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.mode = handshake.connect(self.sock, self.key)
        self.sock.settimeout(30)
        self._maps = []
        for name in ("req.mmf", "resp.mmf"):
            fd = os.open(folder / name, os.O_RDWR)
            self._maps.append(mmap.mmap(fd, 0))
            os.close(fd)
        self.req, self.resp = (memoryview(m) for m in self._maps)
        self.seq = 0

    def send_raw(self, payload: bytes) -> None:
        self.seq += 1
        self.req[HEADER_SIZE:HEADER_SIZE + len(payload)] = payload
        publish(self.req, self.seq, len(payload), 0)
        self.sock.sendall(handshake.CALL)

    def receive(self):
        b = self.sock.recv(1)
        if b != handshake.REPLY:
            raise ConnectionError(f"expected a reply byte, got {b!r}")
        seq, length, status = read_header(self.resp)
        assert seq == self.seq, (seq, self.seq)
        payload = bytes(self.resp[HEADER_SIZE:HEADER_SIZE + length])
        if status == STATUS_ERROR:
            raise RemoteError(decode_error(payload))
        return decode_value(payload)

    def call(self, name, returns, args=(), arg_descs=None):
        self.send_raw(encode_call(name, returns, list(args), arg_descs))
        return self.receive()

    def close(self) -> None:
        self.sock.close()
        self.req.release()
        self.resp.release()
        for m in self._maps:
            m.close()
