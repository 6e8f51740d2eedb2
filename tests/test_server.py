"""The headless server, driven by a small Python client over the real files and socket (fast, no Mono).

The same behaviour is proven again from C# in test_csharp_client.py.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from lesspy_kernel.transport.handshake import HandshakeError
from lesspy_kernel.wire import handshake
from lesspy_kernel.coerce import encode_call
from lesspy_kernel.wire import ErrorKind, Tag
from lesspy_kernel.workfolder import connect_notify
from lesspy_kernel.client import ClientLane, RemoteError
from servers import TYPES_MODULE, Headless, wait_for

I, L, D, S = Tag.INT32, Tag.INT64, Tag.FLOAT64, Tag.STRING


@pytest.fixture
def server(tmp_path):
    with Headless(tmp_path / "work", TYPES_MODULE, "--keep-alive", "--capacity", "1M") as s:
        yield s


def test_folder_is_private_and_complete(server):
    folder = server.folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "session.key").stat().st_mode) == 0o600
    assert int((folder / "python.pid").read_text()) == server.pid
    assert len((folder / "session.key").read_text()) == 64
    assert (folder / "notify.port").read_text() == "unix"
    assert stat.S_ISSOCK((folder / "notify.sock").stat().st_mode)
    c = ClientLane(folder)
    lane_files = sorted(p.name for p in folder.glob("lane-*"))
    assert lane_files == [f"lane-{c.id}.req.mmf", f"lane-{c.id}.resp.mmf"]
    assert all(stat.S_IMODE((folder / n).stat().st_mode) == 0o600 for n in lane_files)
    assert (folder / lane_files[0]).stat().st_size == 1024 * 1024
    c.close()
    wait_for(lambda: not list(folder.glob("lane-*")), what="the closed lane's files to go")


def test_calls_and_every_error_followed_by_success(server):
    c = ClientLane(server.folder)
    assert c.call("add_ints", I, [2, 40], [I, I]) == 42
    cases = [
        (("nope", I, [1]), ErrorKind.FUNCTION_NOT_FOUND, "not defined"),
        (("_private", I, []), ErrorKind.FUNCTION_NOT_FOUND, "private"),
        (("not_a_function", I, []), ErrorKind.FUNCTION_NOT_FOUND, "int, not a function"),
        (("add_ints", I, [1]), ErrorKind.BAD_ARGUMENTS, "add_ints(a, b)"),
        (("typed_add", I, ["x", 1]), ErrorKind.BAD_ARGUMENTS, "annotated int"),
        (("raises", I, ["boom"]), ErrorKind.PYTHON_ERROR, "boom"),
        (("overflow", I, []), ErrorKind.RESULT_MISMATCH, "outside"),
        (("bad_void", Tag.NONE, []), ErrorKind.RESULT_MISMATCH, "void"),
        (("wrong_type", I, []), ErrorKind.RESULT_MISMATCH, "Python str"),
    ]
    for (name, ret, args), kind, words in cases:
        with pytest.raises(RemoteError) as e:
            c.call(name, ret, args)
        assert e.value.reply.kind == kind and words in e.value.reply.message + e.value.reply.traceback
        assert c.call("add_ints", I, [1, 1], [I, I]) == 2
    with pytest.raises(RemoteError) as e:
        c.call("raises", I, ["with traceback"])
    assert e.value.reply.python_type == "ValueError"
    assert "types_module.py" in e.value.reply.traceback and "in raises" in e.value.reply.traceback
    c.close()


def test_malformed_frame_is_answered_and_server_goes_on(server):
    c = ClientLane(server.folder)
    c.send_raw(b"\x03\x00abc\x02\x01\x63")
    with pytest.raises(RemoteError) as e:
        c.receive()
    assert e.value.reply.kind == ErrorKind.MALFORMED_REQUEST and "type tag" in e.value.reply.message
    # a header claiming more payload than the mapping holds
    c.seq += 1
    c.req.publish(c.seq, 10**9, 0)
    c.sock.sendall(handshake.CALL)
    with pytest.raises(RemoteError) as e:
        c.receive()
    assert e.value.reply.kind == ErrorKind.MALFORMED_REQUEST and "exceeds" in e.value.reply.message
    assert c.call("add_ints", I, [20, 22], [I, I]) == 42
    c.close()


def test_unknown_notify_byte_drops_connection_not_server(server):
    c = ClientLane(server.folder)
    c.sock.sendall(b"\x7f")
    assert c.sock.recv(1) == b""
    c.close()
    c = ClientLane(server.folder)
    assert c.call("add_ints", I, [1, 2], [I, I]) == 3
    c.close()


def test_wrong_key_is_refused_then_right_key_works(server):
    with pytest.raises(HandshakeError, match="wrong session key"):
        ClientLane(server.folder, key=b"0" * 64)
    c = ClientLane(server.folder)
    assert c.call("add_ints", I, [1, 2], [I, I]) == 3
    c.close()


def test_silent_connection_gets_no_access(server):
    with connect_notify(server.folder) as s:
        assert s.recv(4) == b"LSPY"
        s.sendall(b"\x01" * 52)        # garbage where the handshake answer goes
        assert s.recv(100)[0] != 0    # refused with a reason
    c = ClientLane(server.folder)
    assert c.call("add_ints", I, [1, 2], [I, I]) == 3
    c.close()


def test_clients_up_to_the_limit_then_an_immediate_refusal_that_names_it(tmp_path):
    with Headless(tmp_path / "w", TYPES_MODULE, "--keep-alive", "--max-clients", "3") as s:
        clients = [ClientLane(s.folder) for _ in range(3)]
        more_lanes = [ClientLane(s.folder, client_id=clients[0].client_id) for _ in range(2)]
        t0 = time.monotonic()
        with pytest.raises(HandshakeError, match="3 clients, its limit") as e:
            ClientLane(s.folder)
        assert e.value.result == handshake.Result.BUSY and time.monotonic() - t0 < 2
        for i, c in enumerate(clients + more_lanes):
            assert c.call("add_ints", I, [i, 1], [I, I]) == i + 1
        clients[1].close()
        fourth = wait_for(lambda: _try_connect(s.folder), what="a free client slot")
        assert fourth.call("add_ints", I, [1, 2], [I, I]) == 3
        for c in [fourth, clients[0], clients[2]] + more_lanes:
            c.close()


def _try_connect(folder):
    try:
        return ClientLane(folder)
    except HandshakeError:
        return None


def test_client_dying_mid_call_does_not_hurt(server):
    c = ClientLane(server.folder)
    c.send_raw(encode_call("sleep_then", I, [0.3, 5], [D, I]))
    c.sock.close()                 # gone before the reply
    c2 = wait_for(lambda: _try_connect(server.folder), what="the next client")
    assert c2.call("sleep_then", I, [0.0, 7], [D, I]) == 7
    c2.close()


def test_arrays_are_zero_copy_both_ways(server):
    c = ClientLane(server.folder)
    a = np.arange(256 * 256, dtype=np.float32).reshape(256, 256)
    out = c.call("inc_ndarray", Tag.NDARRAY, [a])
    np.testing.assert_array_equal(out, a + 1)
    t = c.call("inc_ndarray_timed", (Tag.NDARRAY, D), [a])
    np.testing.assert_array_equal(t[0], a + 1) and isinstance(t[1], float)
    assert c.call("make_tuple_from_list", (I, D, S), []) == (7, 2.5, "seven")
    assert c.call("list_to_int_array", Tag.INT32_ARRAY, [5]).tolist() == [0, 1, 2, 3, 4]
    assert c.call("sum_array", D, [[1, 2, 3]], [Tag.INT32_ARRAY]) == 6.0
    c.close()


def test_sigterm_and_sigint_remove_the_servers_files(tmp_path):
    s = Headless(tmp_path / "w", TYPES_MODULE, "--keep-alive")
    c = ClientLane(s.folder)
    assert s.stop() == 0
    c.close()
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["lesspy.lock"]
    s = Headless(tmp_path / "w2", TYPES_MODULE)
    assert s.stop(signal.SIGINT) == 0
    assert sorted(p.name for p in (tmp_path / "w2").iterdir()) == ["lesspy.lock"]


def test_without_keep_alive_the_server_exits_when_its_client_leaves(tmp_path):
    s = Headless(tmp_path / "w", TYPES_MODULE, "--exit-when-idle")   # by hand, a server serves until stopped
    c = ClientLane(s.folder)
    assert c.call("add_ints", I, [1, 2], [I, I]) == 3
    c.close()
    assert s.proc.wait(10) == 0
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["lesspy.lock"]


def test_shutdown_byte_stops_a_keep_alive_server(tmp_path):
    s = Headless(tmp_path / "w", TYPES_MODULE, "--keep-alive")
    c = ClientLane(s.folder)
    c.sock.sendall(handshake.SHUTDOWN)
    c.close()
    assert s.proc.wait(10) == 0


def test_parent_pid_gone_stops_the_server(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    s = Headless(tmp_path / "w", TYPES_MODULE, "--parent-pid", str(parent.pid))
    parent.kill()
    parent.wait()
    assert s.proc.wait(10) == 0


def test_stale_folder_is_replaced_and_live_one_is_not(tmp_path):
    folder = tmp_path / "w"
    folder.mkdir(mode=0o755)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / "python.pid").write_text(str(dead.pid))
    (folder / "notify.port").write_text("1")
    (folder / "session.key").write_text("stale")
    (folder / "req.mmf").write_bytes(b"junk")
    with Headless(folder) as s:
        assert int((folder / "python.pid").read_text()) == s.pid
        assert (folder / "session.key").read_text() != "stale"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        second = subprocess.run([sys.executable, "-m", "lesspy_kernel", "serve", "--module", str(TYPES_MODULE),
                                 "--work-folder", str(folder)], capture_output=True, text=True, timeout=30)
        assert second.returncode == 2 and f"pid {s.pid}" in second.stderr
        c = ClientLane(folder)
        assert c.call("add_ints", I, [1, 2], [I, I]) == 3
        c.close()


def test_module_import_error_is_reported(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import not_a_module_xyz\n")
    p = subprocess.run([sys.executable, "-m", "lesspy_kernel", "serve", "--module", str(bad), "--work-folder",
                        str(tmp_path / "w")], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "not_a_module_xyz" in p.stderr


def test_log_file_receives_output(tmp_path):
    log = tmp_path / "server.log"
    with Headless(tmp_path / "w", TYPES_MODULE, "--keep-alive", "--log-file", str(log)) as s:
        c = ClientLane(s.folder)
        with pytest.raises(RemoteError):
            c.call("raises", I, ["logged"])
        c.close()
    assert "raises failed" in log.read_text() or "logged" in log.read_text()


def test_hostile_results_and_frames_never_stop_the_server(server):
    c = ClientLane(server.folder)
    cases = [
        (("ragged", Tag.INT32_ARRAY, []), ErrorKind.RESULT_MISMATCH, "int[]"),
        (("huge_int", D, []), ErrorKind.RESULT_MISMATCH, "double"),
        (("big_float", Tag.FLOAT32, []), ErrorKind.RESULT_MISMATCH, "float range"),
        (("calls_exit", I, []), ErrorKind.PYTHON_ERROR, "3"),
        (("raises_unprintable", I, []), ErrorKind.PYTHON_ERROR, "str() failed"),
    ]
    for (name, ret, args), kind, words in cases:
        with pytest.raises(RemoteError) as e:
            c.call(name, ret, args)
        assert e.value.reply.kind == kind and words in e.value.reply.message, e.value.reply
        assert c.call("add_ints", I, [1, 1], [I, I]) == 2
    assert bytes(c.call("strided_view", Tag.BYTES, [])) == bytes(range(0, 10, 2))
    # an empty array whose other dimension is absurd: malformed, not fatal
    c.send_raw(b"\x01\x00f\x00\x01\x0b\x06\x02" + (0).to_bytes(8, "little") + (2**64 - 1).to_bytes(8, "little")
               + bytes(64))
    with pytest.raises(RemoteError) as e:
        c.receive()
    assert e.value.reply.kind == ErrorKind.MALFORMED_REQUEST
    assert c.call("add_ints", I, [20, 22], [I, I]) == 42
    assert server.proc.poll() is None
    c.close()


def test_silent_connections_do_not_stall_calls(server):
    idle = [connect_notify(server.folder) for _ in range(20)]
    try:
        c = ClientLane(server.folder)
        t0 = time.monotonic()
        assert c.call("add_ints", I, [1, 2], [I, I]) == 3
        assert time.monotonic() - t0 < 2.0, "a connection that never answers the handshake must not block calls"
        c.close()
    finally:
        for s in idle:
            s.close()


def test_a_busy_server_is_not_mistaken_for_stale(server):
    c = ClientLane(server.folder)
    c.send_raw(encode_call("sleep_then", I, [3.0, 1], [D, I]))
    time.sleep(0.3)
    second = subprocess.run([sys.executable, "-m", "lesspy_kernel", "serve", "--module", str(TYPES_MODULE),
                             "--work-folder", str(server.folder)], capture_output=True, text=True, timeout=30)
    assert second.returncode == 2 and "already serving" in second.stderr
    assert c.receive() == 1
    assert int((server.folder / "python.pid").read_text()) == server.pid
    c.close()


def test_only_the_modules_own_functions_are_exported(server):
    c = ClientLane(server.folder)
    with pytest.raises(RemoteError) as e:
        c.call("sleep", Tag.NONE, [0.0], [D])          # `from time import sleep` would be imported, not defined
    assert e.value.reply.kind == ErrorKind.FUNCTION_NOT_FOUND
    c.close()


def test_pid_alive_counts_a_zombie_as_gone():
    """A process that exited but was not reaped yet is gone, as the C# client's check says (the server asks
    this of its --parent-pid)."""
    from lesspy_kernel.workfolder import pid_alive

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    assert pid_alive(child.pid) or child.poll() is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)                 # exited, not reaped: Popen has not waited for it
    assert not pid_alive(child.pid)
    child.wait()
    assert not pid_alive(child.pid)
    assert pid_alive(os.getpid())
