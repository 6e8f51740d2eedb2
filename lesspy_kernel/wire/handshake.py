"""The handshake's and the notify socket's bytes (docs/PROTOCOL.md section 3): magic, message layouts, modes,
purposes, results and the notify bytes. The socket code that sends and checks them is
lesspy_kernel/transport/handshake.py."""

from __future__ import annotations

import struct
from enum import IntEnum

MAGIC = b"LSPY"
HELLO = struct.Struct("<4sHHQ32s")         # magic, version, mode, session id, nonce
ANSWER = struct.Struct("<4sHHIQ32s")       # magic, version, purpose, client pid, client id, mac
ANSWER_HEAD = struct.Struct("<4sHH")       # the part checked first: magic, version, purpose
RESULT = struct.Struct("<BH")              # result, message length
LANE_ID = struct.Struct("<I")

# notify bytes: client -> server (CALL, SHUTDOWN), server -> client (REPLY)
CALL = b"\x01"
SHUTDOWN = b"\x02"
REPLY = b"\x01"


class Mode(IntEnum):
    """Where the server runs calls; told to the client so its timeout message can say why."""

    HEADLESS = 0
    NOTEBOOK = 1
    NOTEBOOK_THREADED = 2


class Purpose(IntEnum):
    """What a connection is for."""

    LANE = 0
    STATUS = 1
    STOP = 2
    FRAMES = 3      # a lane whose frames travel as messages on this connection (the Jupyter Server relay)
    WEBSOCKET = 4   # as FRAMES, then the relay hands over the websocket's TCP connection (SCM_RIGHTS) to speak on


class Result(IntEnum):
    ACCEPTED = 0
    WRONG_KEY = 1
    BAD_VERSION = 2
    BUSY = 3
    IN_USE = 4      # a stop request while other clients have lanes open: refused, the server goes on


def result_frame(result: Result, message: bytes = b"") -> bytes:
    """The server's result: its code, then the message's length and bytes."""
    return RESULT.pack(result, len(message)) + message
