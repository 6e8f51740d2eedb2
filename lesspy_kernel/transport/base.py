"""The transport seam: what the call loop (callloop.py) needs from the connection that carries one lane's frames.

A lane carries one call at a time: a request frame in, a reply frame out, both made by the codec. How they travel
is the transport's business; the call loop only ever sees a request's kind and payload, and writes a reply's
payload where the transport says. `MappedLane` (mapped_lane.py) is today's transport: two memory-mapped files
whose header words hand a frame over, and a notify socket that wakes whoever blocks.

How another transport implements it, a websocket relayed by Jupyter Server for example (frames as bytes, no
mapping): `wait_for_request` blocks on the socket until a message comes; `take_request` returns the sequence the
message carries; `read_request` its kind and payload (a memoryview of the received bytes); `frame` and
`reply_space` are views of one message buffer (header room, then the payload), and `publish` sends the reply
header and that payload as one message; `cancelled` is the sequence of the last cancel message;
`connection_lost` and `close` are the socket's own. Its `cut_since_last_look` is always False (no file can be
cut), and it offers none of the speed paths below. tests/test_callloop.py runs the call loop over such a
transport.

Nothing here knows who opened the connection or which side serves: for calls in the other direction (the app
serves, the notebook calls) the same frames travel with the roles swapped, so the app's side implements this
role and the notebook's the client's (client.py's ClientLane today).

Speed paths a transport may offer, asked for by the call loop: a result computed where the reply carries it, a
result that already lies in the request (NDARRAY_IN_REQUEST), argument views kept after their call given their
own pages. A transport without them says no: `result_place` and `place_reply` return None, `result_array` is
np.empty, `keep_arguments` does nothing.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, Tuple

from ..wire import ErrorKind


class TransportError(Exception):
    """A frame could not be read or written, for a reason its message says in full (a full file system, a file
    another process cut): the call gets that message as its error, and no log line is needed."""


class Transport(Protocol):
    """One lane's connection, seen from the side that serves its calls."""

    id: int
    client: Any             # the connected client this lane belongs to (server.Client)
    closed: bool            # the lane is closing: no request is taken from now on
    broken: bool            # the frames in flight could not be trusted (`cut`): the lane must close

    # ---------------------------------------------------------------- requests

    def start(self) -> None:
        """After the handshake's reply, before the lane's thread starts."""

    def wait_for_request(self) -> bool:
        """Block until a request may have come (True) or the connection is gone (False). The lane's own thread."""

    def take_request(self) -> int:
        """The sequence of a request not taken yet, marked taken; 0 when there is none (or the lane closed because
        what came cannot be a request: see `closed`)."""

    def read_request(self) -> Tuple[int, memoryview]:
        """(kind, payload) of the request just taken: kind is REQUEST_CALL, _STREAM, _NEXT or _CLOSE; the payload
        is read-only and valid until the reply is published. Raises TransportError (or the codec's FrameError)
        when it cannot be read."""

    @property
    def cancelled(self) -> int:
        """The sequence of the last request its caller abandoned (0: none)."""

    # ---------------------------------------------------------------- replies

    @property
    def frame(self) -> memoryview:
        """The reply frame (header, then a payload of at least 64 bytes), where the codec writes a scalar reply in
        one pack (write_scalar_reply)."""

    def reply_space(self, size: int) -> memoryview:
        """Room for a reply payload of `size` bytes (grown when needed). OverflowError when no reply can be that
        large; TransportError when there is no room for it."""

    def publish(self, seq: int, length: int, status: int) -> None:
        """Hand the reply (`length` payload bytes, `status`) to request `seq` over to the client. Nothing the
        call left may see a later reply."""

    # ---------------------------------------------------------------- trouble and the end

    def cut_since_last_look(self) -> bool:
        """Cheap: something may have broken the frames in flight since the last `cut` (look then)."""

    def cut(self, mend: bool) -> Optional[Tuple[ErrorKind, str]]:
        """When the frames in flight cannot be trusted (a lane file another process cut): the error kind and the
        message for the caller, and `broken` is set. `mend`: make the reply side writable again first (only while
        serving a request). None: nothing is wrong."""

    def connection_lost(self) -> bool:
        """True when the client closed the connection (the watchdog asks while a call runs)."""

    def close(self) -> None:
        """Wake the lane's thread and end the connection (the lane is then disposed of)."""

    def ended(self) -> None:
        """The lane's thread ends (before the server closes the lane): note how the client left."""

    def dispose(self, stopping: bool) -> None:
        """After the lane's thread ended: free what the lane holds. `stopping`: the server is stopping."""

    def forget_in_child(self) -> None:
        """In a child forked from the serving process: let go of this copy of the connection without ending the
        parent's."""

    # ---------------------------------------------------------------- speed paths (see the module's docstring)

    def result_place(self) -> Any:
        """For a call whose result is an NdArray (not a stream): a place (allocator.ResultSlot) where that result
        is computed so that the reply carries it without a copy, made ready for this call; None: the heap.
        TransportError: the call must not run."""

    def result_array(self, shape: tuple, dtype: Any) -> Any:
        """lesspy_kernel.result_array() in a call on this lane: a NumPy array, placed where the reply carries it
        when it can be."""

    def place_reply(self, outcome: Any) -> Optional[int]:
        """The length of the reply, written, when its result already lies where the transport sends it without
        encoding it; None: encode it. Asked for every reply, so a result placed for it never outlives it."""

    def keep_arguments(self, payload: Optional[memoryview], spans: Any) -> None:
        """After every call (`payload`: its decoded request, None when it was not decoded): argument views that
        outlive the call keep their values while the client writes its next requests."""
