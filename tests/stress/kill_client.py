"""A client process for the kill runs: opens a lane, starts calls, says "ready", and waits to be SIGKILLed.

    python kill_client.py FOLDER MODE TAG
MODE spin: one call of spin_forever (pure Python; the server must interrupt it when this process dies).
     sleep: calls of sleep_then(0.3, ...) back to back (blocked in C; the server finishes the one running when
            this process dies, then drops the lane).
     stream: small calls back to back, every result checked (killed between or inside calls).
     mega: 1 MiB calls back to back (killed while writing or reading a mapping).
"""

from __future__ import annotations

import sys

import numpy as np

from lesspy_kernel.client import ClientLane
from lesspy_kernel.coerce import encode_call
from lesspy_kernel.wire import Tag

I, D, N = Tag.INT32, Tag.FLOAT64, Tag.NDARRAY


def main() -> None:
    folder, mode, tag = sys.argv[1], sys.argv[2], int(sys.argv[3])
    lane = ClientLane(folder, timeout=120)
    if mode == "spin":
        lane.send_raw(encode_call("spin_forever", I, []))
    elif mode == "sleep":
        lane.send_raw(encode_call("sleep_then", I, [0.3, tag], [D, I]))
    print("ready", flush=True)
    if mode == "spin":
        lane.receive()
        return
    if mode == "sleep":
        while True:
            if lane.receive() != tag:
                sys.exit("wrong result for sleep_then")
            lane.send_raw(encode_call("sleep_then", I, [0.3, tag], [D, I]))
    a = np.full(262144, tag, dtype=np.int32)
    i = 0
    while True:
        if mode == "stream":
            if lane.call("stamp", (I, I), [tag, i], [I, I]) != (tag, i):
                sys.exit(f"wrong result for call {i}")
        else:
            out = lane.call("stamp_array", N, [tag, i, a], [I, I, N])
            if out.shape != a.shape or out[0] != tag + 1 or out[-1] != tag + 1:
                sys.exit(f"wrong result for call {i}")
        i += 1


if __name__ == "__main__":
    main()
