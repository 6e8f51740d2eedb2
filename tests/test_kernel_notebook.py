"""The notebook side in real kernels: what a notebook exports, the %lesspy magics' parsing, unloading,
output routing in threaded mode, summarised tracebacks. A small Python client stands in for C# here;
the memory test at the end uses the real Mono client.
"""

from __future__ import annotations

import queue
import time
from pathlib import Path

import pytest

from conftest import compile_csharp, run_mono
from kernels import FLAVOURS, kernel
from lesspy_kernel.wire import ErrorKind, Tag
from lesspy_kernel.client import ClientLane, RemoteError

I, S, N = Tag.INT32, Tag.STRING, Tag.NONE


@pytest.fixture(params=FLAVOURS)
def k(request, tmp_path):
    with kernel(tmp_path, request.param) as k:
        k.flavour = request.param
        yield k


@pytest.fixture
def k7(tmp_path):
    with kernel(tmp_path) as k:
        k.flavour = "ipykernel7"
        yield k


def refused(c: ClientLane, name: str, returns=I, args=()) -> str:
    with pytest.raises(RemoteError) as e:
        c.call(name, returns, args)
    assert e.value.reply.kind == ErrorKind.FUNCTION_NOT_FOUND, e.value.reply
    return e.value.reply.message


def test_the_notebook_exports_only_what_it_defines(k7, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    k7.run("%load_ext lesspy_kernel\n%lesspy serve --name ex\n"
           "import os, dataclasses, lesspy_kernel\nfrom os import remove\nfrom os.path import basename\n"
           "def mine():\n    return 1\n"
           "twice = lambda x: x * 2\n"
           "@dataclasses.dataclass\nclass Point:\n    x: float\n")
    c = ClientLane(k7.folder("ex"))
    try:
        assert c.call("mine", I) == 1
        assert c.call("twice", I, [21], [I]) == 42
        msg = refused(c, "remove", N, [str(victim)])
        assert "imported from" in msg and "lesspy_kernel.export(remove)" in msg and "--export remove" in msg
        assert victim.exists(), "a refused call must not run"
        for name in ("open", "exit", "quit", "get_ipython", "print"):
            msg = refused(c, name)
            assert "lesspy_kernel.export(" in msg or "Define a function" in msg, (name, msg)
        assert "is a class, not a function" in refused(c, "Point")
        assert "is a module, not a function" in refused(c, "os")
        out = k7.run("%lesspy status")
        assert "mine, twice" in out and "remove" not in out

        # exported explicitly: by object (also as a decorator) ...
        k7.run("lesspy_kernel.export(remove)\n"
               "@lesspy_kernel.export\ndef decorated():\n    return 7")
        assert c.call("remove", N, [str(victim)]) is None
        assert not victim.exists(), "an explicitly exported function runs"
        assert c.call("decorated", I) == 7
    finally:
        c.close()
    # ... or by name when serving
    k7.run("%lesspy stop\n%lesspy serve --name ex --export basename")
    c = ClientLane(k7.folder("ex"))
    try:
        assert c.call("basename", S, ["/a/b.txt"]) == "b.txt"
        assert "is a module" in refused(c, "os")
    finally:
        c.close()


def test_a_csharp_app_cannot_call_imports_builtins_or_classes(k7, csharp_bin, tmp_path):
    """The issue's case with the real client: a C# call to `remove` (imported from os) must not delete a file."""
    exe = compile_csharp(csharp_bin, [Path(__file__).parent / "csharp" / "ExportCheck.cs"], "ExportCheck.exe")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    k7.run("%load_ext lesspy_kernel\n%lesspy serve --name cs\nfrom os import remove\n"
           "class Point:\n    def __init__(self, x):\n        self.x = x\n"
           "def mine():\n    return 5")
    p = run_mono(exe, k7.folder("cs"), victim)
    lines = p.stdout.splitlines()
    assert p.returncode == 0 and len(lines) == 5, p.stdout + p.stderr
    assert lines[0].startswith("ERR FunctionNotFoundException") and "lesspy_kernel.export(remove)" in lines[0]
    assert victim.read_text() == "keep me"
    assert lines[1].startswith("ERR FunctionNotFoundException") and "'open'" in lines[1]
    assert lines[2].startswith("ERR FunctionNotFoundException") and "'get_ipython'" in lines[2]
    assert lines[3].startswith("ERR FunctionNotFoundException") and "is a class, not a function" in lines[3]
    assert lines[4] == "OK 5"


def test_magic_parsing_quotes_help_and_calls_n(k7):
    out = k7.run("%load_ext lesspy_kernel\n%lesspy serve --name x --max-clients 0", allow_error=True)
    assert "UsageError" in out and "--max-clients must be at least 1" in out
    out = k7.run('%lesspy serve --name "my session"')
    assert 'LessPythonInvoke.Connect<IMyApi>("my session");' in out
    assert k7.folder("my session").is_dir() and not k7.folder('"my session"').exists()
    out = k7.run("%lesspy serve --help")
    assert "--name NAME" in out and "--export" in out and "UsageError" not in out
    assert "-n N" in k7.run("%lesspy calls --help")
    assert "%lesspy serve" in k7.run("%lesspy help")
    assert "no lesspy calls recorded" in k7.run("%lesspy calls -n 0")
    k7.run("def f(x):\n    return x")
    c = ClientLane(k7.folder("my session"))
    for i in range(3):
        c.call("f", I, [i], [I])
    c.close()
    assert "no lesspy calls recorded" in k7.run("%lesspy calls -n 0")
    out = k7.run("%lesspy calls -n 2")
    assert out.count(" f ") == 2 or out.count("f  ") == 2, out
    out = k7.run("%lesspy calls -n -1", allow_error=True)
    assert "UsageError" in out and "-n must be 0 or more" in out
    out = k7.run("%lesspy serve --name 'unbalanced", allow_error=True)
    assert "UsageError" in out


def test_unload_clears_the_call_history(k7):
    k7.run("%load_ext lesspy_kernel\n%lesspy serve --name un\ndef f():\n    return 1")
    c = ClientLane(k7.folder("un"))
    assert c.call("f", I) == 1
    c.close()
    assert "calls 1" in k7.run("import lesspy_kernel\nprint('calls', len(lesspy_kernel.calls()))")
    k7.run("%unload_ext lesspy_kernel")
    assert "calls 0" in k7.run("print('calls', len(lesspy_kernel.calls()))")
    assert not k7.folder("un").exists()


def _streams(k, until_idle: str = "", seconds: float = 1.0):
    """The (cell msg_id, text) of every stream message on iopub: until `until_idle`'s cell is idle, then until
    nothing comes for `seconds`."""
    got = []
    idle = not until_idle
    try:
        while True:
            m = k.kc.get_iopub_msg(timeout=seconds if idle else 60)
            pid = m["parent_header"].get("msg_id")
            if m["msg_type"] == "stream":
                got.append((pid, m["content"]["text"]))
            elif m["msg_type"] == "status" and pid == until_idle and m["content"]["execution_state"] == "idle":
                idle = True
    except queue.Empty:
        pass
    return got


def test_threaded_calls_leave_a_running_cells_output_alone(k):
    """A cell prints from a thread of its own while threaded calls print: each output stays under its cell."""
    serve_id = k.start("%load_ext lesspy_kernel\n%lesspy serve --name thr --threaded")
    k.wait_idle(serve_id)
    k.run("import threading, time\n"
          "def slow():\n    print('in slow')\n    time.sleep(0.05)\n    return 1")
    k.drain()
    c = ClientLane(k.folder("thr"))
    try:
        cell_id = k.start("def tick():\n    for i in range(120):\n        print('tick', i)\n        time.sleep(0.01)\n"
                          "t = threading.Thread(target=tick)\nt.start()\nt.join()\nprint('cell done')")
        time.sleep(0.3)
        for _ in range(12):
            assert c.call("slow", I) == 1
        streams = _streams(k, until_idle=cell_id)
    finally:
        c.close()
    slow = [pid for pid, text in streams if "in slow" in text]
    assert slow and all(pid == serve_id for pid in slow), "a call's output goes to the serving cell"
    ticks = [(pid, text) for pid, text in streams if "tick" in text]
    assert sum(text.count("tick") for _, text in ticks) == 120
    if k.flavour == "ipykernel6":
        # ipykernel 6 has one parent header per stream: it cannot keep both apart (lesspy_kernel/jupyter/celloutput.py)
        return
    stray = [text for pid, text in ticks if pid != cell_id]
    assert not stray, f"the running cell lost output to another cell: {stray[:3]}"


def test_repeated_tracebacks_are_summarised(k):
    serve_id = k.start("%load_ext lesspy_kernel\n%lesspy serve --name err")
    k.wait_idle(serve_id)
    k.run("def bad(i):\n    raise ValueError(f'bad {i}')\ndef other():\n    raise KeyError('k')")
    k.drain()
    c = ClientLane(k.folder("err"))
    try:
        for i in range(250):
            with pytest.raises(RemoteError):
                c.call("bad", I, [i], [I])
        with pytest.raises(RemoteError):
            c.call("other", I)
    finally:
        c.close()
    text = "".join(t for pid, t in _streams(k) if pid == serve_id)
    assert text.count("Traceback") == 4, "three of `bad` in full, then the first of `other`"
    assert "ValueError: bad 0" in text and "ValueError: bad 2" in text and "ValueError: bad 3\n" not in text
    assert "are counted, not printed" in text
    assert "bad raised ValueError 100 times so far (last: bad 99)" in text
    assert "bad raised ValueError 200 times so far" in text and "300 times" not in text
    assert "KeyError" in text
    out = k.run("import lesspy_kernel, collections\nprint(sum(r.function == 'bad' for r in lesspy_kernel.calls()))\n"
                "print(collections.Counter(r.function for r in lesspy_kernel.calls()))\n"
                "print([r.args for r in lesspy_kernel.calls()][:20])")
    assert "250" in out, out


RSS = "import re\nprint('RSS', re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"


def _rss_kib(k) -> int:
    out = k.run(RSS)
    return int(out.split("RSS")[1].split()[0])


def test_history_memory_stays_within_budget_under_real_csharp_calls(k7, csharp_bin):
    """A Mono app sends 1 MiB byte[], strings and arrays, 450 MiB in all; the kernel's history holds at most its
    budget and the kernel grows by at most budget + 64 MiB."""
    exe = compile_csharp(csharp_bin, [Path(__file__).parent / "csharp" / "HistoryFlood.cs"], "HistoryFlood.exe")
    budget = 16 * 1024 * 1024
    k7.run(f"%load_ext lesspy_kernel\n%config LessPyMagics.history_budget = {budget}\n%lesspy serve --name mem\n"
           "def take_bytes(data):\n    return len(data)\n"
           "def take_text(text):\n    return len(text)\n"
           "def echo(a):\n    return a")
    warm = run_mono(exe, k7.folder("mem"), 5)                      # mappings touched, code paths warm
    assert warm.stdout.startswith("OK 15"), warm.stdout + warm.stderr
    before = _rss_kib(k7)
    p = run_mono(exe, k7.folder("mem"), 150, timeout=300)
    assert p.stdout.startswith("OK 450"), p.stdout + p.stderr
    grown = (_rss_kib(k7) - before) * 1024
    out = k7.run("import lesspy_kernel\nfrom lesspy_kernel.jupyter.history import current_history\n"
                 "h = current_history()\nprint('held', h.nbytes, 'calls', len(h))")
    held, calls = int(out.split("held")[1].split()[0]), int(out.split("calls")[1].split()[0])
    assert calls == 465 and held <= budget
    assert grown <= budget + 64 * 1024 * 1024, f"the kernel grew by {grown / 2**20:.0f} MiB"
