"""The real C# client (LessPy.dll built with mcs, run with mono) against real headless servers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import compile_csharp, run_mono
from lesspy_kernel.workfolder import pid_alive
from servers import TYPES_MODULE, Headless, wait_for
from vectors.generate import ERROR_CASE, HERE as VECTORS

ROOT = Path(__file__).resolve().parent.parent
CS = ROOT / "tests" / "csharp"


def checks(proc: subprocess.CompletedProcess) -> dict:
    lines = [l for l in proc.stdout.splitlines() if l.startswith("CHECK ")]
    failed = [l for l in lines if not l.endswith(" ok")]
    assert not failed and proc.returncode == 0, "\n".join(failed) + "\n" + proc.stdout[-3000:] + proc.stderr[-3000:]
    return {l.split()[1]: l for l in lines}


def test_golden_vectors_in_csharp(csharp_bin, tmp_path):
    exe = tmp_path / "VectorCheck.exe"
    p = subprocess.run(["mcs", "-unsafe", "-optimize+", "-nologo", f"-out:{exe}",
                        *map(str, sorted((ROOT / "csharp" / "LessPy").glob("*.cs"))), str(CS / "VectorCheck.cs")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    out = run_mono(exe, VECTORS)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    expected = (VECTORS / "expected.txt").read_text("utf-8").splitlines()
    for line in expected:
        assert line in lines, f"C# decodes differently: expected {line!r}"
        assert f"{line.split()[0]} roundtrip ok" in lines, f"C# re-encodes {line.split()[0]} differently"
    kind, ptype, message, tb = ERROR_CASE
    hexes = "|".join(s.encode().hex() for s in (ptype, message, tb))
    assert f"error_python error {int(kind)}|{hexes}" in lines
    assert "call_add_ints encode ok" in lines and "call_scale3 encode ok" in lines
    assert "reply_ndarray_in_request OK" in lines


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the libc paths are Linux only")
def test_libc_paths_match_the_managed_apis(csharp_bin, tmp_path):
    """Small file reads, File/Directory.Exists, GetFullPath's shortcut, the pid and mmap'd lane files (growth) through libc."""
    exe = tmp_path / "PosixCheck.exe"
    p = subprocess.run(["mcs", "-unsafe", "-optimize+", "-nologo", f"-out:{exe}",
                        *map(str, sorted((ROOT / "csharp" / "LessPy").glob("*.cs"))), str(CS / "PosixCheck.cs")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    result = checks(run_mono(exe, tmp_path / "scratch"))
    assert "map_reader_refresh" in result and "read_bom" in result and len(result) >= 30


@pytest.fixture(scope="module")
def types_client(csharp_bin):
    return compile_csharp(csharp_bin, [CS / "TypesClient.cs"], "TypesClient.exe")


def test_every_type_and_every_error(types_client, tmp_path):
    with Headless(tmp_path / "work", TYPES_MODULE, "--keep-alive", "--capacity", "4M") as server:
        result = checks(run_mono(types_client, server.folder, timeout=180))
        assert server.proc.poll() is None, "bad input must never stop the server"
    assert len(result) >= 45
    for name in ("add_ints", "inc_ndarray", "error_python_exception", "error_unknown_function",
                 "error_argument_count", "request_grows", "result_grows", "stale_view",
                 "error_wrong_type", "error_overflow", "error_bad_void", "nested_tuple", "jagged", "ndarray_0d",
                 "timeout_then_late_reply_dropped", "timeout_next_call_at_once", "second_client_connects"):
        assert name in result, f"no CHECK covering {name}: {sorted(result)}"


@pytest.fixture
def app_dir(csharp_bin, tmp_path):
    """A folder holding LessPy.dll and KeepAliveClient.exe: Initialize puts lesspy_work/ beside them."""
    d = tmp_path / "app"
    d.mkdir()
    shutil.copy(csharp_bin / "LessPy.dll", d)
    return compile_csharp(d, [CS / "KeepAliveClient.cs"], "KeepAliveClient.exe").parent


def _pid(proc) -> int:
    return int(next(l.split()[1] for l in proc.stdout.splitlines() if l.startswith("PID ")))


def test_keep_alive_reuses_the_server_across_processes(app_dir):
    exe = app_dir / "KeepAliveClient.exe"
    first = run_mono(exe, TYPES_MODULE, sys.executable, "true")
    checks(first)
    pid = _pid(first)
    assert pid_alive(pid), "with keepAlive the server outlives the C# process"
    assert os.getsid(pid) == pid, "a keep-alive server leads its own session: the app's Ctrl-C must not reach it"
    folder = app_dir / "lesspy_work"
    assert int((folder / "python.pid").read_text()) == pid
    second = run_mono(exe, TYPES_MODULE, sys.executable, "true")
    checks(second)
    assert _pid(second) == pid, "the second run must reuse the same server"
    # a run without keepAlive reuses it too, and leaves it running: a kept-alive server is shared (protocol v2: other
    # apps may be using it), and only a server an app started without keepAlive ends with its last client
    third = run_mono(exe, TYPES_MODULE, sys.executable, "false")
    checks(third)
    assert _pid(third) == pid
    assert pid_alive(pid)
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pid_alive(pid), timeout=15, what="the kept-alive server to stop on SIGTERM")


def test_without_keep_alive_the_server_ends_with_the_app(app_dir):
    exe = app_dir / "KeepAliveClient.exe"
    run = run_mono(exe, TYPES_MODULE, sys.executable, "false")
    checks(run)
    wait_for(lambda: not pid_alive(_pid(run)), timeout=15, what="the server to stop with its app")
    assert not (app_dir / "lesspy_work" / "notify.port").exists()


def test_stale_work_folder_is_replaced(app_dir):
    folder = app_dir / "lesspy_work"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / "python.pid").write_text(str(dead.pid))
    (folder / "notify.port").write_text("9")
    (folder / "req.mmf").write_bytes(b"old")
    run = run_mono(app_dir / "KeepAliveClient.exe", TYPES_MODULE, sys.executable, "false")
    checks(run)
    assert _pid(run) != dead.pid


def test_missing_package_error_says_what_to_run(app_dir, tmp_path):
    bare = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    run = run_mono(app_dir / "KeepAliveClient.exe", TYPES_MODULE, bare, "false")
    assert run.returncode != 0
    assert "-m pip install PATH_TO_LESSPY" in run.stdout and "not on PyPI" in run.stdout and str(bare) in run.stdout, run.stdout
    run = run_mono(app_dir / "KeepAliveClient.exe", TYPES_MODULE, tmp_path / "no-such-venv", "false")
    assert "ServerUnavailableException" in run.stdout and "no-such-venv" in run.stdout, run.stdout


def test_client_reconnects_after_the_connection_drops(csharp_bin, tmp_path):
    exe = compile_csharp(csharp_bin, [CS / "ReconnectClient.cs"], "ReconnectClient.exe")
    folder = tmp_path / "work"
    server = Headless(folder, TYPES_MODULE, "--keep-alive")
    env = dict(os.environ, MONO_PATH=str(csharp_bin))
    app = subprocess.Popen(["mono", str(exe), str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           text=True, env=env)
    try:
        lines = []
        for line in app.stdout:
            lines.append(line.strip())
            if line.strip() == "READY":
                break
        server.stop()                            # the connection drops ...
        server = Headless(folder, TYPES_MODULE, "--keep-alive")   # ... and a server listens again
        out, _ = app.communicate("\n", timeout=60)
        lines += out.splitlines()
        assert app.returncode == 0, "\n".join(lines)
        pids = [l for l in lines if l.startswith("PID ")]
        assert len(pids) == 2 and pids[0] != pids[1] and pids[1] == f"PID {server.pid}", lines
        assert all(l.endswith(" ok") for l in lines if l.startswith("CHECK")), lines
    finally:
        app.kill()
        server.stop()


def test_demo_app_runs_the_original_example(csharp_bin):
    module = csharp_bin / "exporting_module.py"
    run = run_mono(csharp_bin / "LessPyDemo.exe", module, timeout=180,
                   env={"LESSPY_PYTHON_VENV": str(Path(sys.executable).parent.parent)})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "add_ints(2, 40) = 42" in run.stdout
    assert "inc_ndarray(NdArray(float32, [4096, 4096])): elements ok" in run.stdout
    assert "inc_ndarray_timed(...) = (NdArray(float32, [4096, 4096])" in run.stdout


def test_wrong_key_is_refused_with_a_clear_exception(csharp_bin, tmp_path):
    exe = compile_csharp(csharp_bin, [CS / "NotebookRepl.cs"], "NotebookRepl.exe")
    with Headless(tmp_path / "work", TYPES_MODULE, "--keep-alive") as server:
        key = server.folder / "session.key"
        real = key.read_text()
        key.write_text("0" * 64)
        run = run_mono(exe, server.folder, input="quit\n")
        assert "ERR HandshakeException" in run.stdout and "wrong session key" in run.stdout, run.stdout
        key.write_text(real)
        run = run_mono(exe, server.folder, input="ping\nquit\n")
        assert run.stdout.startswith("OK connected"), run.stdout


def test_keep_alive_server_of_another_module_is_replaced(app_dir):
    exe = app_dir / "KeepAliveClient.exe"
    first = run_mono(exe, TYPES_MODULE, sys.executable, "true")
    checks(first)
    old = _pid(first)
    assert (app_dir / "lesspy_work" / "python.module").read_text() == str(TYPES_MODULE)
    other = ROOT / "csharp" / "Demo" / "exporting_module.py"
    second = run_mono(exe, other, sys.executable, "false")
    checks(second)
    assert _pid(second) != old, "a server of another module must not answer for this one"
    assert not pid_alive(old), "the server of the other module must have stopped (an unreaped zombie counts as stopped)"
    wait_for(lambda: not pid_alive(_pid(second)), timeout=15, what="the replacement server to stop with its app")


def test_initialize_with_an_interface_that_cannot_bind_starts_no_server(csharp_bin, tmp_path):
    """Binding runs beside the start-up, but a server is started only for an interface that binds: a method
    without [PythonImport] fails with NotSupportedException and leaves no Python process behind."""
    d = tmp_path / "badapp"
    d.mkdir()
    shutil.copy(csharp_bin / "LessPy.dll", d)
    src = d / "BadInterface.cs"
    src.write_text(textwrap.dedent("""
        using System;
        using LessPy;
        public interface IBad { int add_ints(int a, int b); }
        static class Program
        {
            static int Main(string[] a)
            {
                try { LessPythonInvoke.Initialize<IBad>(a[0], a[1]); return 1; }
                catch (NotSupportedException e) { Console.WriteLine("NOT SUPPORTED " + e.Message); return 0; }
            }
        }
        """))
    exe = compile_csharp(d, [src], "BadInterface.exe")
    p = run_mono(exe, sys.executable, TYPES_MODULE)
    assert p.returncode == 0 and "NOT SUPPORTED" in p.stdout and "PythonImport" in p.stdout, p.stdout + p.stderr
    assert not (d / "lesspy_work" / "python.pid").exists(), "no server may be started for an interface that cannot bind"
