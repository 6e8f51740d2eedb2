"""Lanes whose frames travel as messages (handshake purpose FRAMES, PROTOCOL.md section 10): the Jupyter Server
relay's way into a session, driven here straight over the session's socket, against a real headless server and
a real kernel. The call frames are the Python client's (coerce.encode_call); the message headers wire/message.py's.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any, Tuple

import numpy as np
import pytest

from kernels import FLAVOURS, LANE_DEFS, kernel
from lesspy_kernel.client import ClientLane, FramesConnection, RemoteError, open_frames, status
from lesspy_kernel.coerce import encode_call
from lesspy_kernel.transport.handshake import HandshakeError
from lesspy_kernel.wire import (HEADER_SIZE, MAPPING_MAGIC, REQUEST_CALL, REQUEST_CLOSE, REQUEST_NEXT,
                                REQUEST_STREAM, STATUS_END, STATUS_ERROR, STATUS_OK, ErrorKind, FrameError,
                                MessageHeader, Tag, cancel_message, check_client_message, check_server_message,
                                decode_error, decode_value, keepalive_message, message_header, pack_message_header,
                                read_message_header)
from lesspy_kernel.wire.handshake import Mode, Result
from servers import Headless, wait_for

I, D, N = Tag.INT32, Tag.FLOAT64, Tag.NDARRAY
END = object()

MODULE = '''
import time
import numpy as np

kept_array = None
ended = []


def add(a, b):
    return a + b


def plus_one(a):
    return a + 1


def fail(message):
    raise ValueError(message)


def spin(tag):
    """Pure Python until interrupted; notes that it ended (an interrupt runs its finally)."""
    try:
        while True:
            pass
    finally:
        ended.append(tag)


def ended_count():
    return len(ended)


def count(n):
    yield from range(n)


def keep(a):
    """Keeps its argument (a view of the request) after the call."""
    global kept_array
    kept_array = a
    return float(a.sum())


def kept():
    return kept_array


def slow(seconds, value):
    time.sleep(seconds)
    return value


def fork_child(how):
    """Fork; the child ends by sys.exit(3), os._exit(4) or by returning into lesspy; the parent returns the
    child's exit code."""
    import os
    import sys
    pid = os.fork()
    if pid == 0:
        if how == "exit":
            sys.exit(3)
        if how == "_exit":
            os._exit(4)
        return -1
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
'''


class Frames:
    """A FRAMES lane driven as the relay drives it: one message per request, replies read back to back."""

    def __init__(self, folder: Path, client_id: int = 0) -> None:
        self.conn: FramesConnection = open_frames(folder, client_id=client_id)
        self.sock = self.conn.sock
        self.sock.settimeout(20)
        self.seq = 0

    def send(self, payload: bytes, status: int = REQUEST_CALL) -> int:
        self.seq += 1
        self.sock.sendall(message_header(self.seq, len(payload), status, self.conn.session) + payload)
        return self.seq

    def cancel(self) -> None:
        self.sock.sendall(cancel_message(self.seq, self.conn.session))

    def _exact(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError(f"the lane closed after {len(data)} of {n} bytes")
            data += chunk
        return bytes(data)

    def message(self) -> Tuple[MessageHeader, bytes]:
        h = read_message_header(memoryview(self._exact(HEADER_SIZE)))
        check_server_message(h)
        return h, self._exact(h.length)

    def receive(self) -> Any:
        h, payload = self.message()
        assert h.sequence == self.seq and h.session == self.conn.session and not h.cancel and not h.flags
        if h.status == STATUS_ERROR:
            raise RemoteError(decode_error(payload))
        if h.status == STATUS_END:
            assert payload == b""
            return END
        assert h.status == STATUS_OK
        return decode_value(payload)

    def call(self, name: str, returns: Any, args: Any = (), descs: Any = None) -> Any:
        self.send(encode_call(name, returns, list(args), descs))
        return self.receive()

    def closed_by_server(self, timeout: float = 10) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def server(tmp_path):
    module = tmp_path / "frames_module.py"
    module.write_text(MODULE)
    with Headless(tmp_path / "work", module, "--keep-alive") as s:
        yield s


def test_message_headers_pack_and_check():
    buf = bytearray(HEADER_SIZE)
    pack_message_header(memoryview(buf), 7, 0, REQUEST_STREAM, 99)
    h = read_message_header(memoryview(buf), size=HEADER_SIZE)
    assert h == MessageHeader(7, 0, REQUEST_STREAM, 99, 0, 0) and not h.is_cancel
    check_client_message(h)
    assert buf[:4] == MAPPING_MAGIC and buf[8:16] == bytes(8) and buf[36:40] == bytes(4)   # capacity, waiting 0
    c = read_message_header(memoryview(cancel_message(7, 99)))
    assert c.is_cancel and c.cancel == 7
    check_client_message(c)
    k = read_message_header(memoryview(keepalive_message(99)))
    assert k.is_keepalive
    check_server_message(k)
    bad = [
        (b"XPYM" + message_header(1, 0, 0, 1)[4:], None, "magic"),
        (message_header(1, 0, 0, 1)[:4] + b"\x03\x00" + message_header(1, 0, 0, 1)[6:], None, "version"),
        (message_header(1, 5, 0, 1), HEADER_SIZE + 4, "5 payload bytes but 4"),
        (message_header(1, 2**31, 0, 1), None, "exceeds"),
    ]
    for raw, size, text in bad:
        with pytest.raises(FrameError, match=text):
            read_message_header(memoryview(raw), size=size)
    for h, text in ((MessageHeader(1, 0, 4, 1, 0, 0), "status 4"), (MessageHeader(1, 0, 0, 1, 0, 1), "bit 0"),
                    (MessageHeader(2, 0, 0, 1, 1, 0), "cancel 0"), (MessageHeader(0, 3, 0, 1, 1, 0), "header only"),
                    (MessageHeader(0, 0, 0, 1, 0, 0), "names none"), (MessageHeader(0, 0, 1, 1, 2, 0), "status 0")):
        with pytest.raises(FrameError, match=text):
            check_client_message(h)
    with pytest.raises(FrameError, match="reply status 3"):
        check_server_message(MessageHeader(1, 0, 3, 1, 0, 0))
    with pytest.raises(ValueError):
        cancel_message(0, 1)


def test_calls_arrays_errors_and_streams(server):
    lane = Frames(server.folder)
    assert lane.conn.mode == Mode.HEADLESS and lane.conn.pid == server.pid and lane.conn.lane >= 1
    assert lane.call("add", I, [2, 40], [I, I]) == 42
    a = np.arange(100_000, dtype=np.float32).reshape(250, 400)
    out = lane.call("plus_one", N, [a], [N])
    assert out.dtype == np.float32 and out.tobytes() == (a + 1).tobytes()
    big = np.random.default_rng(1).random(3_000_000)       # 24 MB: both buffers grow
    assert lane.call("plus_one", N, [big], [N]).tobytes() == (big + 1).tobytes()
    with pytest.raises(RemoteError) as e:
        lane.call("fail", I, ["no luck"], [Tag.STRING])
    assert e.value.reply.kind == ErrorKind.PYTHON_ERROR and e.value.reply.python_type == "ValueError"
    assert "no luck" in e.value.reply.message
    with pytest.raises(RemoteError) as e:
        lane.call("no_such_function", I)
    assert e.value.reply.kind == ErrorKind.FUNCTION_NOT_FOUND
    lane.send(b"\xff\xff\x00")                               # not a call frame: an error reply, the lane goes on
    with pytest.raises(RemoteError) as e:
        lane.receive()
    assert e.value.reply.kind == ErrorKind.MALFORMED_REQUEST
    assert lane.call("add", I, [1, 2], [I, I]) == 3
    # a stream: status 3, then NEXT (1) for each item, END when it runs out; CLOSE (2) ends one early
    lane.send(encode_call("count", I, [2], [I]), REQUEST_STREAM)
    assert lane.receive() == 0
    lane.send(b"", REQUEST_NEXT)
    assert lane.receive() == 1
    lane.send(b"", REQUEST_NEXT)
    assert lane.receive() is END
    lane.send(encode_call("count", I, [5], [I]), REQUEST_STREAM)
    assert lane.receive() == 0
    lane.send(b"", REQUEST_CLOSE)
    assert lane.receive() is END
    lane.send(b"", REQUEST_NEXT)
    with pytest.raises(RemoteError, match="no stream is open"):
        lane.receive()
    info = status(server.folder)
    assert info["lanes"] == 1 and info["clients"] == 1
    assert not list(server.folder.glob("lane-*")), "a FRAMES lane has no lane files"
    lane.close()
    wait_for(lambda: status(server.folder)["lanes"] == 0, 10, "the closed lane to be forgotten")


def test_a_kept_argument_view_keeps_its_values(server):
    """An argument is a view of the request buffer; one the function keeps must not see the next request's bytes
    (nor a stream's kept generator its argument's)."""
    lane = Frames(server.folder)
    first = np.arange(50_000, dtype=np.float64)
    assert lane.call("keep", D, [first], [N]) == first.sum()
    for i in range(3):
        other = np.full(50_000, 7.0 + i)
        assert lane.call("plus_one", N, [other], [N]).tobytes() == (other + 1).tobytes()
    assert lane.call("kept", N).tobytes() == first.tobytes()
    second = np.arange(10, dtype=np.float64) * 3
    assert lane.call("keep", D, [second], [N]) == second.sum()
    lane.call("add", I, [1, 2], [I, I])
    assert lane.call("kept", N).tobytes() == second.tobytes()
    lane.close()


def test_cancel_interrupts_a_running_call(server):
    lane = Frames(server.folder)
    lane.send(encode_call("spin", I, [1], [I]))
    time.sleep(0.3)
    t0 = time.monotonic()
    lane.cancel()
    with pytest.raises(RemoteError) as e:
        lane.receive()
    assert e.value.reply.kind == ErrorKind.CANCELLED
    assert time.monotonic() - t0 < 1.0
    assert lane.call("add", I, [5, 6], [I, I]) == 11
    # a call cancelled before it starts never runs (its CANCEL right behind it)
    lane.send(encode_call("spin", I, [2], [I]))
    lane.cancel()
    with pytest.raises(RemoteError) as e:
        lane.receive()
    assert e.value.reply.kind == ErrorKind.CANCELLED
    assert lane.call("ended_count", I) == 1
    lane.close()


def test_a_connection_closed_mid_call_interrupts_it(server):
    lane, other = Frames(server.folder), Frames(server.folder)
    lane.send(encode_call("spin", I, [1], [I]))
    time.sleep(0.3)
    lane.close()
    wait_for(lambda: other.call("ended_count", I) == 1, 5, "the abandoned call to be interrupted")
    assert other.call("add", I, [2, 2], [I, I]) == 4
    other.close()


def test_a_malformed_header_closes_only_its_lane(server):
    good = Frames(server.folder)
    for raw in (b"NOPE" + bytes(60),                                        # not a message
                message_header(1, 0, 9, 0),                                 # unknown status
                message_header(0, 0, 0, 0),                                 # a CANCEL naming nothing
                message_header(1, 2**31, 0, 0)):                            # a payload over the limit
        bad = Frames(server.folder)
        bad.sock.sendall(raw)
        assert bad.closed_by_server()
        bad.close()
        assert good.call("add", I, [3, 4], [I, I]) == 7
    # a second request before the first one's reply
    bad = Frames(server.folder)
    bad.send(encode_call("slow", I, [0.5, 1], [D, I]))
    bad.send(encode_call("add", I, [1, 1], [I, I]))
    assert bad.closed_by_server()                           # no reply: the lane closed, its call interrupted
    # a sequence that does not grow
    bad = Frames(server.folder)
    assert bad.call("add", I, [1, 1], [I, I]) == 2
    bad.seq = 0
    bad.send(encode_call("add", I, [1, 1], [I, I]))
    assert bad.closed_by_server()
    assert good.call("add", I, [3, 4], [I, I]) == 7
    assert server.proc.poll() is None
    good.close()


def test_messages_may_arrive_in_pieces(server):
    """A stream carries no message boundaries: a request and a CANCEL cut into small pieces (the watchdog reads
    the CANCEL's while the call runs) are put together again."""
    lane = Frames(server.folder)
    for _ in range(2):
        lane.seq += 1
        payload = encode_call("add", I, [20, 22], [I, I])
        raw = message_header(lane.seq, len(payload), REQUEST_CALL, lane.conn.session) + payload
        for i in range(0, len(raw), 7):
            lane.sock.sendall(raw[i:i + 7])
            time.sleep(0.002)
        assert lane.receive() == 42
    lane.send(encode_call("spin", I, [3], [I]))
    time.sleep(0.2)
    raw = cancel_message(lane.seq, lane.conn.session)
    for i in range(0, len(raw), 10):
        lane.sock.sendall(raw[i:i + 10])
        time.sleep(0.06)                          # longer than the watchdog's look: it sees each piece
    with pytest.raises(RemoteError) as e:
        lane.receive()
    assert e.value.reply.kind == ErrorKind.CANCELLED
    assert lane.call("add", I, [1, 1], [I, I]) == 2
    lane.close()


def test_a_client_that_stops_reading_holds_only_its_lane(server):
    """A reply the client does not read waits in the socket (nothing is buffered beyond it); the other lanes go
    on, and closing the stuck connection frees its lane."""
    stuck, other = Frames(server.folder), Frames(server.folder)
    big = np.zeros(8_000_000)                                  # a 64 MB reply: far more than a socket buffer
    stuck.send(encode_call("plus_one", N, [big], [N]))
    time.sleep(0.5)
    assert other.call("add", I, [1, 2], [I, I]) == 3
    assert status(server.folder)["lanes"] == 2
    stuck.close()
    wait_for(lambda: status(server.folder)["lanes"] == 1, 10, "the stuck lane to close")
    assert other.call("add", I, [1, 2], [I, I]) == 3
    other.close()


def test_a_child_forked_by_a_call_leaves_the_lane_alone(server):
    """The child's copy of the lane closes its socket without ending the parent's connection; a child that
    returns into lesspy ends there and never answers."""
    lane = Frames(server.folder)
    for how, code in (("exit", 3), ("_exit", 4), ("return", 0)):
        assert lane.call("fork_child", I, [how], [Tag.STRING]) == code
        assert lane.call("add", I, [code, 1], [I, I]) == code + 1
    lane.close()
    assert server.proc.poll() is None


def test_two_frames_lanes_of_one_client_run_at_once(server):
    a, b = Frames(server.folder, client_id=77), Frames(server.folder, client_id=77)
    assert status(server.folder)["clients"] == 1
    a.send(encode_call("slow", I, [1.0, 5], [D, I]))
    t0 = time.monotonic()
    for i in range(20):
        assert b.call("add", I, [i, 1], [I, I]) == i + 1
    assert time.monotonic() - t0 < 0.8, "a call on one lane must not wait for the other's"
    assert a.receive() == 5
    mapped = ClientLane(server.folder, client_id=77)      # a mapped lane of the same client, beside them
    assert mapped.call("add", I, [1, 1], [I, I]) == 2
    assert status(server.folder)["lanes"] == 3
    for lane in (a, b):
        lane.close()
    mapped.close()


def test_threads_each_on_their_own_lane(server):
    errors: list = []

    def worker(tag: int) -> None:
        try:
            lane = Frames(server.folder, client_id=5)
            for n in range(30):
                arr = np.full(1000 + n, tag, np.int64)
                if lane.call("plus_one", N, [arr], [N]).tolist() != (arr + 1).tolist():
                    errors.append((tag, n))
            lane.close()
        except BaseException as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def test_open_frames_refusals(tmp_path, server):
    with pytest.raises(FileNotFoundError):
        open_frames(tmp_path / "nothing here")
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    with pytest.raises(PermissionError):
        open_frames(loose)
    key = server.folder / "session.key"
    right = key.read_bytes()
    key.write_bytes(b"0" * len(right))
    try:
        with pytest.raises(HandshakeError) as e:
            open_frames(server.folder)
        assert e.value.result == Result.WRONG_KEY and "session key" in str(e.value)
    finally:
        key.write_bytes(right)
    lanes = [Frames(server.folder, client_id=9) for _ in range(3)]
    assert lanes[0].call("add", I, [1, 1], [I, I]) == 2
    for lane in lanes:
        lane.close()


def test_stopping_the_server_closes_frames_lanes(tmp_path):
    module = tmp_path / "frames_module.py"
    module.write_text(MODULE)
    s = Headless(tmp_path / "work", module)
    try:
        lane, stuck = Frames(s.folder), Frames(s.folder)
        lane.send(encode_call("spin", I, [1], [I]))
        stuck.send(encode_call("plus_one", N, [np.zeros(8_000_000)], [N]))   # a reply it never reads
        time.sleep(0.5)
        t0 = time.monotonic()
        assert s.stop(timeout=15) == 0
        assert time.monotonic() - t0 < 5
        stuck.close()
        with pytest.raises((RemoteError, ConnectionError)) as e:
            lane.receive()
        if isinstance(e.value, RemoteError):
            assert e.value.reply.kind == ErrorKind.INTERRUPTED
        lane.close()
    finally:
        s.stop()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_frames_lane_into_a_kernel(tmp_path, flavour):
    with kernel(tmp_path, flavour) as k:
        k.run(LANE_DEFS + "%lesspy serve --name frames")
        lane = Frames(k.folder("frames"))
        assert lane.conn.mode == Mode.NOTEBOOK
        assert lane.call("add", I, [2, 40], [I, I]) == 42
        lane.send(encode_call("spin", I, []))
        time.sleep(0.3)
        lane.cancel()
        with pytest.raises(RemoteError) as e:
            lane.receive()
        assert e.value.reply.kind == ErrorKind.CANCELLED
        assert lane.call("add", I, [1, 2], [I, I]) == 3
        lane.close()
        k.run("%lesspy stop")
