"""The Python half of the transport floors that benchmarks/Bench.cs measures from Mono.

    python floor_servers.py tcp               one-byte echo on 127.0.0.1 (TCP_NODELAY); prints the port
    python floor_servers.py unix PATH         one-byte echo on a Unix domain socket at PATH; prints "ready"
    python floor_servers.py spin MMF SOCK     answers a sequence word in the mapped file MMF by spinning on it
                                              (up to SPIN_S), then blocking on the Unix socket SOCK; prints "ready"

The spin floor's shared file (4096 bytes, created here):
    offset 0  u64  request sequence, written by C#
    offset 8  u32  1 while this server is about to block on the socket (C# then sends a byte)
    offset 16 u64  reply sequence, written here (= the request sequence it answers)
    offset 24 u32  1 while the C# side is about to block (this server then sends a byte)
Stray bytes are hints, never errors; blocking waits also time out after 1 ms and look at the word again,
so a wake-up lost to store/load reordering costs a millisecond, never a hang.
"""

from __future__ import annotations

import mmap
import os
import socket
import sys
import time

SPIN_S = 200e-6


def echo(conn: socket.socket) -> None:
    while True:
        b = conn.recv(1)
        if not b:
            return
        conn.sendall(b)


def tcp() -> None:
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    print(ls.getsockname()[1], flush=True)
    while True:
        c, _ = ls.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        echo(c)
        c.close()


def unix(path: str) -> None:
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    ls.listen(1)
    print("ready", flush=True)
    while True:
        c, _ = ls.accept()
        echo(c)
        c.close()


def spin(mmf: str, sock_path: str) -> None:
    with open(mmf, "w+b") as f:
        f.truncate(4096)
        mm = mmap.mmap(f.fileno(), 4096, access=mmap.ACCESS_WRITE)
    q = memoryview(mm).cast("Q")       # q[0] request, q[2] reply
    w = memoryview(mm).cast("I")       # w[2] server waiting, w[6] client waiting
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(sock_path)
    ls.listen(1)
    print("ready", flush=True)
    c, _ = ls.accept()
    c.settimeout(0.001)
    clock = time.perf_counter
    last = 0
    while True:
        # wait for q[0] > last: spin, then block on the socket
        if q[0] <= last:
            deadline = clock() + SPIN_S
            while q[0] <= last and clock() < deadline:
                pass
            while q[0] <= last:
                w[2] = 1
                if q[0] > last:
                    w[2] = 0
                    break
                try:
                    if not c.recv(64):
                        return              # the C# side has gone
                except socket.timeout:
                    pass
                w[2] = 0
        last = q[0]
        q[2] = last
        if w[6]:
            try:
                c.send(b"\x01")
            except OSError:
                return


def main(argv) -> None:
    mode = argv[0]
    if mode == "tcp":
        tcp()
    elif mode == "unix":
        unix(argv[1])
    elif mode == "spin":
        spin(argv[1], argv[2])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (KeyboardInterrupt, BrokenPipeError, ConnectionResetError):
        pass
    finally:
        os._exit(0)
