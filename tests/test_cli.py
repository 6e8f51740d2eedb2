"""The `lesspy` command: exit codes, serve (by hand: until stopped), stub, status, stop, csharp --out.

Every server here is a real `lesspy serve` process; clients are lesspy_kernel.client lanes (the protocol's
Python client) or, for the C# sources `lesspy csharp` writes, a real Mono program."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import lesspy_kernel
from conftest import ROOT, compile_csharp, run_mono
from lesspy_kernel.client import ClientLane
from lesspy_kernel.wire import Tag
from servers import TYPES_MODULE, wait_for

LESSPY = Path(sys.executable).parent / "lesspy"

CLIENT = r"""
using System;
using LessPy;

public interface IAdd { [PythonImport] int add_ints(int a, int b); }

public static class CliClient
{
    public static int Main(string[] args)
    {
        var api = LessPythonInvoke.Connect<IAdd>(args[0]);
        using ((IDisposable)api)
            Console.WriteLine("add_ints = " + api.add_ints(40, 2) + " pid " + ((ILessPyConnection)api).ServerPid);
        return 0;
    }
}
"""


def lesspy(*args, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(LESSPY), *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw)


class Served:
    """`lesspy serve` started by hand (no lifecycle flags unless given); always stopped at the end."""

    def __init__(self, folder: Path, *flags: str, module: Path = TYPES_MODULE) -> None:
        self.folder = folder
        self.log = open(folder.parent / f"{folder.name}.log", "w+")
        self.proc = subprocess.Popen([str(LESSPY), "serve", "--module", str(module), "--work-folder", str(folder),
                                      *flags], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: (folder / "notify.port").exists() or self.proc.poll() is not None, what="notify.port")
        assert self.proc.poll() is None, self.output()

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def __enter__(self) -> "Served":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.log.close()


def call_and_leave(folder: Path) -> None:
    """One client: a lane, one call, then it leaves."""
    with ClientLane(folder) as lane:
        assert lane.call("add_ints", Tag.INT32, [40, 2], [Tag.INT32, Tag.INT32]) == 42


def call_from_mono(exe: Path, folder: Path) -> str:
    run = run_mono(exe, folder, timeout=60)
    assert run.returncode == 0 and "add_ints = 42" in run.stdout, run.stdout + run.stderr
    return run.stdout


# ------------------------------------------------------------------------------------------------ usage


def test_version_from_the_console_script_and_python_m():
    for cmd in ([str(LESSPY)], [sys.executable, "-m", "lesspy_kernel"]):
        p = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and p.stdout.strip() == f"lesspy {lesspy_kernel.__version__}", p


@pytest.mark.parametrize("args", [
    [], ["frobnicate"], ["serve"], ["serve", "--module", "m.py", "--capacity", "lots"],
    ["serve", "--module", "m.py", "--keep-alive", "--exit-when-idle"], ["stub"], ["status"], ["csharp"],
])
def test_usage_errors_exit_2(args):
    p = lesspy(*args)
    assert p.returncode == 2 and "usage:" in p.stderr, p


def test_a_module_that_is_missing_or_does_not_import_exits_2_and_says_why(tmp_path):
    p = lesspy("serve", "--module", tmp_path / "nope.py", "--work-folder", tmp_path / "w")
    assert p.returncode == 2 and "no Python module at" in p.stderr and "nope.py" in p.stderr, p
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('broken on purpose')\n")
    p = lesspy("stub", bad)
    assert p.returncode == 2 and "RuntimeError: broken on purpose" in p.stderr, p
    assert not (tmp_path / "w").exists()


def test_help_lists_every_command():
    p = lesspy("--help")
    assert p.returncode == 0
    for command in ("serve", "stub", "status", "stop", "csharp"):
        assert command in p.stdout


# ------------------------------------------------------------------------------------------------ serve


def test_a_hand_started_server_serves_client_after_client_until_interrupted(tmp_path):
    with Served(tmp_path / "w") as s:
        for _ in range(3):      # before the change, the server exited when its first client left
            call_and_leave(s.folder)
            with pytest.raises(subprocess.TimeoutExpired):
                s.proc.wait(0.5)    # a server started by hand keeps serving after its client leaves
        assert "until stopped" in s.output()
        assert os.getsid(s.proc.pid) != s.proc.pid, "stays in the terminal's session, so Ctrl-C reaches it"
        s.proc.send_signal(signal.SIGINT)
        assert s.proc.wait(15) == 0, s.output()
    assert not (tmp_path / "w" / "notify.port").exists()


def test_exit_when_idle_stops_with_the_last_client(tmp_path):
    with Served(tmp_path / "w", "--exit-when-idle") as s:
        first, second = ClientLane(s.folder), ClientLane(s.folder)
        first.close()
        with pytest.raises(subprocess.TimeoutExpired):
            s.proc.wait(0.5)        # one client is still connected
        second.close()
        assert s.proc.wait(15) == 0, s.output()


def test_keep_alive_detaches_into_its_own_session(tmp_path):
    with Served(tmp_path / "w", "--keep-alive") as s:
        call_and_leave(s.folder)
        assert s.proc.poll() is None
        assert os.getsid(s.proc.pid) == s.proc.pid
        s.proc.terminate()
        assert s.proc.wait(15) == 0


def test_a_folder_another_live_server_serves_exits_2(tmp_path):
    with Served(tmp_path / "w") as s:
        p = lesspy("serve", "--module", TYPES_MODULE, "--work-folder", s.folder, timeout=30)
        assert p.returncode == 2 and str(s.proc.pid) in p.stderr, p


# ------------------------------------------------------------------------------------------------ stub


def test_stub_writes_the_interface_named_by_the_output_file(csharp_bin, tmp_path):
    module = tmp_path / "api_module.py"
    module.write_text("import numpy as np\nfrom os import remove\n\n"
                      "def add_ints(a: int, b: int) -> int:\n    return a + b\n\n"
                      "def scale(a: np.ndarray, k: float) -> np.ndarray:\n    return a * k\n")
    out = tmp_path / "IApi.cs"
    p = lesspy("stub", module, "-o", out, "--namespace", "Demo.Api")
    assert p.returncode == 0, p
    code = out.read_text()
    assert "public interface IApi" in code and "namespace Demo.Api" in code
    assert "add_ints" in code and "scale" in code and "remove" not in code, code
    compile_csharp(csharp_bin, [out], "StubbedApi.dll", extra=["-target:library"])
    p = lesspy("stub", module, "--interface", "ICalc")
    assert p.returncode == 0 and "public interface ICalc" in p.stdout, p
    p = lesspy("stub", module, "--interface", "not valid")
    assert p.returncode == 2 and "not a valid C# identifier" in p.stderr, p
    (tmp_path / "a-file").write_text("")
    p = lesspy("stub", module, "-o", tmp_path / "a-file" / "IApi.cs")     # a folder is created, a file is not one
    assert p.returncode == 1 and "cannot write" in p.stderr, p


# ------------------------------------------------------------------------------------------------ csharp


def test_csharp_out_writes_the_library_sources_that_build_and_call_a_server(tmp_path):
    out = tmp_path / "LessPy"
    p = lesspy("csharp", "--out", out, "--build")
    assert p.returncode == 0, p
    shipped = sorted(f.name for f in (ROOT / "csharp" / "LessPy").glob("*.cs"))
    assert sorted(f.name for f in out.glob("*.cs")) == shipped
    for name in shipped:
        assert (out / name).read_bytes() == (ROOT / "csharp" / "LessPy" / name).read_bytes()
    assert (out / "LessPy.csproj").is_file()
    assert (out / "VERSION").read_text() == lesspy_kernel.__version__
    assert (out / "LessPy.dll").is_file()
    assert (out / "LessPy.dll.so").is_file() or not shutil.which("as"), p.stdout    # Mono's AOT image
    (out / "CliClient.cs").write_text(CLIENT)
    exe = compile_csharp(out, [out / "CliClient.cs"], "CliClient.exe")
    with Served(tmp_path / "w") as s:
        call_from_mono(exe, s.folder)


def test_csharp_out_into_an_unwritable_place_exits_1(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    p = lesspy("csharp", "--out", blocker / "sub")
    assert p.returncode == 1 and "cannot write" in p.stderr, p


# ------------------------------------------------------------------------------------------------ status, stop


def test_status_and_stop_of_a_folder_without_a_server_exit_1(tmp_path):
    for command in ("status", "stop"):
        p = lesspy(command, tmp_path / "empty", timeout=30)
        assert p.returncode == 1 and str(tmp_path / "empty") in p.stderr, p


def test_status_then_stop_a_live_server(tmp_path):
    with Served(tmp_path / "w") as s:
        call_and_leave(s.folder)
        p = lesspy("status", s.folder, "--json", timeout=30)
        assert p.returncode == 0, p
        info = json.loads(p.stdout)
        assert info["pid"] == s.proc.pid and info["version"] == lesspy_kernel.__version__, info
        assert info["calls"] >= 1 and info["clients"] == 0, info
        p = lesspy("status", s.folder, timeout=30)
        assert p.returncode == 0 and "alive" in p.stdout and str(s.proc.pid) in p.stdout, p
        p = lesspy("stop", s.folder, timeout=30)
        assert p.returncode == 0, p
        assert s.proc.wait(15) == 0, s.output()
        p = lesspy("status", s.folder, timeout=30)
        assert p.returncode == 1, p


def test_status_of_a_notebook_session_by_name(tmp_path):
    from kernels import kernel

    short = Path(tempfile.mkdtemp(prefix="lpc"))      # keeps the socket path short
    try:
        with kernel(short) as k:
            k.run("%load_ext lesspy_kernel\n%lesspy serve --name clitest")
            env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(k.runtime_dir))
            p = lesspy("status", "clitest", "--json", env=env, timeout=30)
            assert p.returncode == 0, p
            info = json.loads(p.stdout)
            assert info["mode"] in (1, "notebook", "NOTEBOOK") or "notebook" in str(info["mode"]).lower(), info
            assert Path(info["folder"]) == k.folder("clitest"), info
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_serve_by_session_name_is_reached_by_that_name(tmp_path):
    """`lesspy serve --name NAME` serves <jupyter runtime dir>/lesspy/NAME: `lesspy status NAME` and a client
    given the name reach it (as Jupyter Server's relay does); a name that is a path is a usage error."""
    runtime = tmp_path / "runtime"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(runtime))
    folder = runtime / "lesspy" / "byname"
    log = open(tmp_path / "byname.log", "w+")
    proc = subprocess.Popen([str(LESSPY), "serve", "--module", str(TYPES_MODULE), "--name", "byname"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (folder / "notify.port").exists() or proc.poll() is not None, what="notify.port")
        assert proc.poll() is None, (tmp_path / "byname.log").read_text()
        assert (folder / "session.name").read_text().strip() == "byname"
        assert oct(os.stat(runtime / "lesspy").st_mode & 0o777) == "0o700"
        call_and_leave(folder)
        p = lesspy("status", "byname", "--json", env=env, timeout=30)
        assert p.returncode == 0 and json.loads(p.stdout)["pid"] == proc.pid, p
    finally:
        proc.kill()
        proc.wait(10)
        log.close()
    for bad in ("../elsewhere", "a/b", ".."):
        p = lesspy("serve", "--module", TYPES_MODULE, "--name", bad, env=env, timeout=30)
        assert p.returncode == 2 and "session name" in p.stderr, p
    p = lesspy("serve", "--module", TYPES_MODULE, "--name", "x", "--work-folder", tmp_path / "w", env=env, timeout=30)
    assert p.returncode == 2 and "not allowed with" in p.stderr, p
