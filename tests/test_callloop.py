"""The call loop over a transport that is not a mapping: the seam a websocket transport would plug into.

`BytesTransport` keeps frames as bytes, with none of the mapped lane's speed paths, as a relayed websocket would:
calls, errors, arrays, streams and cancels must come back exactly as the codec encodes them.
"""

from __future__ import annotations

import threading
from typing import Any, List, Optional, Tuple

import numpy as np

from lesspy_kernel.callloop import CallLoop, LaneHost
from lesspy_kernel.coerce import encode_call
from lesspy_kernel.executors import DirectExecutor
from lesspy_kernel.loglimit import LogLimiter
from lesspy_kernel.namespaces import DictNamespace
from lesspy_kernel.transport.base import Transport
from lesspy_kernel.wire import (HEADER_SIZE, REQUEST_CALL, REQUEST_NEXT, REQUEST_STREAM, STATUS_END, STATUS_ERROR,
                                STATUS_OK, ErrorKind, ListOf, Tag, decode_error, decode_value)


class BytesTransport:
    """Frames as bytes: requests queued in `inbox`, replies appended to `sent` (sequence, status, payload)."""

    def __init__(self) -> None:
        self.id = 1
        self.client = None
        self.closed = False
        self.broken = False
        self.cancelled = 0
        self.inbox: List[Tuple[int, int, bytes]] = []
        self.sent: List[Tuple[int, int, bytes]] = []
        self._taken: Optional[Tuple[int, int, bytes]] = None
        self._buffer = bytearray(HEADER_SIZE + 64)        # one message: header room, then the payload

    def start(self) -> None:
        pass

    def wait_for_request(self) -> bool:
        return bool(self.inbox)

    def take_request(self) -> int:
        if not self.inbox:
            return 0
        self._taken = self.inbox.pop(0)
        return self._taken[0]

    def read_request(self) -> Tuple[int, memoryview]:
        assert self._taken is not None
        _, kind, payload = self._taken
        return kind, memoryview(payload).toreadonly()

    @property
    def frame(self) -> memoryview:
        return memoryview(self._buffer)

    def reply_space(self, size: int) -> memoryview:
        if len(self._buffer) < HEADER_SIZE + size:
            self._buffer = bytearray(HEADER_SIZE + size)
        return memoryview(self._buffer)[HEADER_SIZE:HEADER_SIZE + size]

    def publish(self, seq: int, length: int, status: int) -> None:
        self.sent.append((seq, status, bytes(self._buffer[HEADER_SIZE:HEADER_SIZE + length])))

    def cut_since_last_look(self) -> bool:
        return False

    def cut(self, mend: bool) -> Optional[Tuple[ErrorKind, str]]:
        return None

    def connection_lost(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def ended(self) -> None:
        pass

    def dispose(self, stopping: bool) -> None:
        self.closed = True

    def forget_in_child(self) -> None:
        pass

    def result_place(self) -> Any:
        return None

    def result_array(self, shape: tuple, dtype: Any) -> Any:
        return np.empty(shape, dtype)

    def place_reply(self, outcome: Any) -> Optional[int]:
        return None

    def keep_arguments(self, payload: Optional[memoryview], spans: Any) -> None:
        pass


def add_ints(a, b):
    return a + b


def twice(a):
    return a * 2


def count(n):
    yield from range(n)


def _loop() -> Tuple[CallLoop, BytesTransport, list]:
    recorded: list = []
    ns = DictNamespace({"add_ints": add_ints, "twice": twice, "count": count}, home=__name__)
    host = LaneHost(ns, DirectExecutor(), threading.Event(), LogLimiter(), recorded.append, lambda lane: None)
    transport = BytesTransport()
    t: Transport = transport                  # `mypy tests/test_callloop.py` checks it against the protocol
    return CallLoop(host, t), transport, recorded


def _serve(loop: CallLoop, transport: BytesTransport, seq: int, kind: int, payload: bytes) -> Tuple[int, int, bytes]:
    transport.inbox.append((seq, kind, payload))
    assert loop.serve_if_pending()
    return transport.sent[-1]


def test_a_call_and_its_reply_travel_as_bytes():
    loop, transport, recorded = _loop()
    seq, status, reply = _serve(loop, transport, 1, REQUEST_CALL,
                                encode_call("add_ints", Tag.INT32, [2, 3], [Tag.INT32, Tag.INT32]))
    assert (seq, status, decode_value(reply)) == (1, STATUS_OK, 5)
    assert [o.name for o in recorded] == ["add_ints"] and loop.calls == 1
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    seq, status, reply = _serve(loop, transport, 2, REQUEST_CALL, encode_call("twice", Tag.NDARRAY, [a]))
    assert status == STATUS_OK and np.array_equal(decode_value(reply), a * 2)


def test_errors_and_cancels_are_replies_too():
    loop, transport, _ = _loop()
    _, status, reply = _serve(loop, transport, 1, REQUEST_CALL, encode_call("nope", Tag.INT32, []))
    assert status == STATUS_ERROR and decode_error(reply).kind == ErrorKind.FUNCTION_NOT_FOUND
    _, status, reply = _serve(loop, transport, 2, REQUEST_CALL, b"\xff\x00garbage")
    assert status == STATUS_ERROR and decode_error(reply).kind == ErrorKind.MALFORMED_REQUEST
    transport.cancelled = 3                   # abandoned before it was taken: never run
    _, status, reply = _serve(loop, transport, 3, REQUEST_CALL,
                              encode_call("add_ints", Tag.INT32, [1, 1], [Tag.INT32, Tag.INT32]))
    assert status == STATUS_ERROR and decode_error(reply).kind == ErrorKind.CANCELLED


def test_a_stream_keeps_its_generator_between_requests():
    loop, transport, _ = _loop()
    items = []
    seq, status, reply = _serve(loop, transport, 1, REQUEST_STREAM, encode_call("count", Tag.INT64, [3], [Tag.INT64]))
    while status == STATUS_OK:
        items.append(decode_value(reply))
        seq, status, reply = _serve(loop, transport, seq + 1, REQUEST_NEXT, b"")
    assert status == STATUS_END and reply == b"" and items == [0, 1, 2]
    assert loop.stream is None
    _, status, reply = _serve(loop, transport, 9, REQUEST_CALL,
                              encode_call("twice", ListOf(Tag.INT64), [[1, 2]], [ListOf(Tag.INT64)]))
    assert status == STATUS_OK and decode_value(reply) == [1, 2, 1, 2]


def test_stop_reasons_pick_the_error_kind_and_end_the_message():
    from lesspy_kernel.dispatch import stopped_error
    from lesspy_kernel.interrupts import CallCancelled, StopReason

    assert StopReason.of(None) is StopReason.ABANDONED
    for reason, kind in ((None, ErrorKind.CANCELLED), (StopReason.CANCELLED, ErrorKind.CANCELLED),
                         (StopReason.DISCONNECTED, ErrorKind.CANCELLED),
                         (StopReason.SERVER_STOPPING, ErrorKind.INTERRUPTED)):
        error = stopped_error("f", CallCancelled(), reason)
        assert error.kind == kind and error.message == f"f was interrupted: {StopReason.of(reason).value}"
    assert stopped_error("f", CallCancelled(), None).message == "f was interrupted: its caller abandoned it"


def test_a_system_exit_carries_its_status_in_the_outcome():
    from lesspy_kernel.dispatch import invoke
    from lesspy_kernel.wire import Call

    def leave(code: Any) -> None:
        raise SystemExit(code)

    namespace = DictNamespace({"__name__": leave.__module__, "leave": leave})
    for code, status in ((None, 0), (4, 4), (-1, -1), ("bye", 1)):
        out = invoke(Call("leave", Tag.NONE, [code]), namespace)
        assert out.error is not None and out.error.python_type == "SystemExit" and out.exit_status == status
    assert invoke(Call("leave", Tag.NONE, []), namespace).exit_status is None     # a TypeError, not an exit
