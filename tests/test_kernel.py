"""The notebook side in a real kernel (ipykernel 7 and 6): serve, live redefinition, scheduling, stop,
shutdown and stale folders. A small Python client stands in for C# here; test_notebook_csharp.py
runs the same story with the real Mono client.
"""

from __future__ import annotations

import os
import queue
import signal
import stat
import time

import numpy as np
import pytest

from kernels import FLAVOURS, kernel
from lesspy_kernel.wire import handshake
from lesspy_kernel.wire import ErrorKind, Tag
from lesspy_kernel.client import ClientLane, RemoteError
from servers import wait_for

I, D = Tag.INT32, Tag.FLOAT64


THREADS = ("import sys, traceback, threading\nnames = {t.ident: t.name for t in threading.enumerate()}\n"
           "for tid, frame in sys._current_frames().items():\n"
           "    print('--', names.get(tid, tid))\n    print(''.join(traceback.format_stack(frame)[-6:]))")


@pytest.fixture(params=FLAVOURS)
def k(request, tmp_path):
    with kernel(tmp_path, request.param) as k:
        k.flavour = request.param
        yield k


def test_serve_redefine_inspect_stop_and_serve_again(k):
    out = k.run("%load_ext lesspy_kernel\n%lesspy serve --name t1")
    assert 'LessPythonInvoke.Connect<IMyApi>("t1")' in out
    folder = k.folder("t1")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    c = ClientLane(folder)
    assert c.mode == handshake.Mode.NOTEBOOK
    with pytest.raises(RemoteError) as e:
        c.call("scale", D, [2.0])
    assert e.value.reply.kind == ErrorKind.FUNCTION_NOT_FOUND and "not defined in the notebook" in e.value.reply.message
    k.run("def scale(x):\n    return x * 2")
    assert c.call("scale", D, [2.0], [D]) == 4.0
    k.run("def scale(x):\n    print('scaling', x)\n    return x * 10")
    assert c.call("scale", D, [2.0], [D]) == 20.0
    # the recorded array is a copy: later calls overwrite the mapping, the record keeps what was sent
    k.run("import numpy as np\ndef total(a):\n    return float(a.sum())")
    first = np.arange(100, dtype=np.float32).reshape(10, 10)
    assert c.call("total", D, [first]) == float(first.sum())
    assert c.call("total", D, [np.zeros((10, 10), np.float32)]) == 0.0
    out = k.run("import lesspy_kernel\nrec = lesspy_kernel.calls()[-2]\n"
                "print(rec.function, rec.args[0].dtype, rec.args[0].shape, float(rec.args[0].sum()), rec.result)")
    assert f"total float32 (10, 10) {float(first.sum())} {float(first.sum())}" in out
    out = k.run("%lesspy calls -n 3")
    assert "total" in out and "float32 (10, 10)" in out
    out = k.run("%lesspy status")
    assert "connected" in out and "calls" in out and "main thread" in out
    assert "1 so far, 0 refused" in out
    # a Python error reaches the caller with its traceback, and is shown in the notebook
    k.run("def fails(x):\n    raise KeyError('missing ' + str(x))")
    with pytest.raises(RemoteError) as e:
        c.call("fails", I, [3])
    assert e.value.reply.python_type == "KeyError" and "in fails" in e.value.reply.traceback
    assert c.call("scale", D, [1.0], [D]) == 10.0
    k.run("%lesspy stop")
    assert not folder.exists()
    with pytest.raises((ConnectionError, OSError)):
        c.call("scale", D, [1.0], [D])
    c.close()
    k.run("%lesspy serve --name t1")
    c = ClientLane(folder)
    assert c.call("scale", D, [3.0], [D]) == 30.0
    c.close()


def test_calls_wait_for_a_running_cell_unless_threaded(k):
    k.run("%load_ext lesspy_kernel\n%lesspy serve --name t2\nimport time\ndef ping():\n    return 1")
    c = ClientLane(k.folder("t2"))
    msg = k.start("time.sleep(2.0)")
    time.sleep(0.5)                          # the cell is sleeping now
    t0 = time.monotonic()
    assert c.call("ping", I) == 1
    waited = time.monotonic() - t0
    k.wait_idle(msg)
    assert waited > 0.8, f"the call ran in the middle of the sleeping cell ({waited:.2f}s)"
    c.close()
    k.run("%lesspy stop\n%lesspy serve --name t2 --threaded")
    c = ClientLane(k.folder("t2"))
    assert c.mode == handshake.Mode.NOTEBOOK_THREADED
    msg = k.start("time.sleep(3.0)")
    time.sleep(0.5)
    t0 = time.monotonic()
    c.sock.settimeout(15)
    try:
        assert c.call("ping", I) == 1
    except TimeoutError:         # say where the kernel's threads are (a cell can run: the server is threaded)
        k.wait_idle(msg)
        raise AssertionError("no reply; the kernel's threads:\n" + k.run(THREADS)) from None
    assert time.monotonic() - t0 < 1.5, "threaded mode should answer during a sleeping cell"
    k.wait_idle(msg)
    c.close()


def test_only_restricts_and_folder_option(k, tmp_path):
    folder = tmp_path / "explicit"
    out = k.run(f"%load_ext lesspy_kernel\ndef a():\n    return 1\ndef b():\n    return 2\n"
                f"%lesspy serve --folder {folder} --only a --capacity 1M")
    assert str(folder) in out
    c = ClientLane(folder)
    assert c.call("a", I) == 1
    with pytest.raises(RemoteError) as e:
        c.call("b", I)
    assert "not exported" in e.value.reply.message
    assert c.req.capacity == 1024 * 1024
    c.close()
    out = k.run("%lesspy serve --name x", allow_error=True)
    assert "already serving" in out
    out = k.run("%lesspy frobnicate", allow_error=True)
    assert "expected one of" in out


def test_config_traitlets(k):
    k.run("%load_ext lesspy_kernel\n%config LessPyMagics.capacity = 2 * 1024 * 1024\n%lesspy serve --name cfg")
    with ClientLane(k.folder("cfg")) as c:
        assert c.resp.capacity == 2 * 1024 * 1024


def test_kernel_shutdown_removes_folder(tmp_path):
    with kernel(tmp_path) as k:
        k.run("%load_ext lesspy_kernel\n%lesspy serve --name bye")
        folder = k.folder("bye")
        assert (folder / "notify.port").exists()
    wait_for(lambda: not folder.exists(), timeout=15, what="the folder to go at shutdown")


def test_unload_stops_server(tmp_path):
    with kernel(tmp_path) as k:
        k.run("%load_ext lesspy_kernel\n%lesspy serve --name un")
        k.run("%unload_ext lesspy_kernel")
        assert not k.folder("un").exists()
        assert "not found" in k.run("%lesspy status", allow_error=True)


def test_killed_kernel_leaves_stale_folder_that_next_serve_replaces(tmp_path):
    with kernel(tmp_path) as k:
        k.run("%load_ext lesspy_kernel\n%lesspy serve --name stale")
        folder = k.folder("stale")
        old_pid = int((folder / "python.pid").read_text())
        os.kill(k.km.provisioner.process.pid, signal.SIGKILL)
        k.km.provisioner.process.wait()
    assert (folder / "notify.port").exists(), "SIGKILL skips atexit: the stale files stay"
    with kernel(tmp_path / "second") as k2:
        k2.km  # same runtime dir is needed: point the second kernel's serve at the same folder
        out = k2.run(f"%load_ext lesspy_kernel\n%lesspy serve --folder {folder}")
        assert str(folder) in out
        new_pid = int((folder / "python.pid").read_text())
        assert new_pid != old_pid
        c = ClientLane(folder)
        k2.run("def ok():\n    return 5")
        assert c.call("ok", I) == 5
        c.close()


@pytest.mark.parametrize("threaded", ["", "--threaded"])
def test_output_and_errors_go_to_the_serving_cell(k, threaded):
    serve_id = k.start(f"%load_ext lesspy_kernel\n%lesspy serve --name out {threaded}")
    k.wait_idle(serve_id)
    k.run("def f():\n    print('hello from f')\n    return 1\ndef g():\n    raise ValueError('gg')")
    k.drain()
    c = ClientLane(k.folder("out"))
    assert c.call("f", I) == 1
    with pytest.raises(RemoteError):
        c.call("g", I)
    c.close()
    streams = []
    try:
        while True:
            m = k.kc.get_iopub_msg(timeout=1)
            if m["msg_type"] == "stream":
                streams.append((m["parent_header"].get("msg_id"), m["content"]["text"]))
    except queue.Empty:
        pass
    assert any(pid == serve_id and "hello from f" in t for pid, t in streams), streams
    assert any(pid == serve_id and "ValueError: gg" in t for pid, t in streams), streams


def test_stub_magic_writes_a_file(tmp_path):
    with kernel(tmp_path) as k:
        target = tmp_path / "INb.cs"
        out = k.run("%load_ext lesspy_kernel\nimport numpy as np\n"
                    "def mean(a: np.ndarray) -> float:\n    '''Mean of a.'''\n    return float(a.mean())\n"
                    "def untyped(x):\n    return x\n"
                    f"%lesspy stub --interface INb --namespace Demo.Api -o {target}")
        assert "wrote" in out
        code = target.read_text()
        assert "namespace Demo.Api" in code and "public interface INb" in code
        assert '[PythonImport("mean")]' in code and "double Mean(NdArray a);" in code
        assert "Mean of a." in code
        assert "untyped(x): annotate" in code
        assert "not a valid C# identifier" in k.run("%lesspy stub --interface 9bad", allow_error=True)
