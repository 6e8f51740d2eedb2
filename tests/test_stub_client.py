"""Generated clients (`lesspy stub MODULE.py --client`): a sealed class implementing the interface through
LessPy.PythonCalls, which Initialize/Connect construct instead of a DispatchProxy. Proven with real Mono programs
against a real headless server, under the JIT and under Mono's full-AOT mode (no code generated at run time,
as on IL2CPP, iOS and NativeAOT), where a DispatchProxy fails with a LessPyException naming `lesspy stub --client`."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, csharp_checks
from lesspy_kernel.stubgen import client_name, stub_for_module

HERE = Path(__file__).resolve().parent / "csharp"
MODULE = HERE / "stub_client_api.py"
CHECKS = ("generated", "ints", "floats", "strings", "list", "dict", "nullable", "ndarray", "record", "tuple", "task_record", "stream",
          "void", "task", "tasks", "cancel", "error", "in_place", "connection", "disposed")
# the framework assemblies a LessPy program loads (DESIGN.md: Mono's full-AOT mode)
FRAMEWORK = ("mscorlib", "System", "System.Core", "Mono.Security", "System.Configuration", "System.Numerics",
             "System.Security", "System.Xml")
HINT = "lesspy stub MODULE.py --client -o Plain.cs"


def lesspy(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lesspy_kernel", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def program(csharp_bin, tmp_path_factory) -> Path:
    """StubClientProgram.exe built on the client `lesspy stub --client -o StubApi.cs` wrote, in a folder of its own
    (Initialize's lesspy_work/ goes beside it)."""
    out = tmp_path_factory.mktemp("stub_client")
    p = lesspy("stub", MODULE, "--client", "-o", out / "StubApi.cs")
    assert p.returncode == 0, p.stderr
    shutil.copy(csharp_bin / "LessPy.dll", out)
    shutil.copy(MODULE, out)
    exe = out / "StubClientProgram.exe"
    proc = subprocess.run(["mcs", "-unsafe", "-optimize+", "-nologo", f"-out:{exe}", f"-r:{out / 'LessPy.dll'}",
                           "-r:System.Core.dll", str(HERE / "StubClientProgram.cs"), str(out / "StubApi.cs")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"mcs failed:\n{proc.stdout}\n{proc.stderr}"
    return exe


def run(exe: Path, mode: str, *mono_args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MONO_PATH=str(exe.parent))
    return subprocess.run(["mono", *mono_args, str(exe), sys.executable, str(exe.parent / MODULE.name), mode],
                          capture_output=True, text=True, timeout=180, env=env, cwd=exe.parent)


def test_client_option_writes_the_interface_with_the_attribute_and_the_sealed_class(tmp_path):
    plain = stub_for_module(str(MODULE), "IStubApi")
    client = stub_for_module(str(MODULE), "IStubApi", client=True)
    assert "LessPyClient" not in plain and "GeneratedClient" not in plain
    assert "[LessPyClient(typeof(StubApi))]\npublic interface IStubApi\n" in client
    assert "public sealed class StubApi : GeneratedClient, IStubApi" in client
    # the interface itself is what the plain stub writes
    assert plain.split("public interface IStubApi")[1] in client.split("public interface IStubApi")[1]
    assert "_calls.Stream<long>(" in client and "_calls.CallAsync<long>(" in client and "_calls.CallAsync(" in client
    assert "MakeGeneric" not in client and "DispatchProxy" not in client
    # a Python name that is also a member of GeneratedClient is implemented explicitly
    (tmp_path / "clash.py").write_text("def dispose(x: int) -> int:\n    return x\n")
    clash = stub_for_module(str(tmp_path / "clash.py"), "IClash", client=True)
    assert "    long IClash.Dispose(long x)\n" in clash
    assert client_name("IMyApi") == "MyApi" and client_name("Api") == "ApiClient" and client_name("Ix") == "IxClient"
    # -o Api.cs with --client: interface IApi, class Api
    p = lesspy("stub", MODULE, "--client", "-o", tmp_path / "Api.cs")
    assert p.returncode == 0, p.stderr
    assert f"wrote IApi and its client class Api to {tmp_path / 'Api.cs'}" in p.stdout
    text = (tmp_path / "Api.cs").read_text()
    assert "public interface IApi" in text and "public sealed class Api : GeneratedClient, IApi" in text
    p = lesspy("stub", MODULE, "--client", "--interface", "ICalc")
    assert "public sealed class Calc : GeneratedClient, ICalc" in p.stdout


def test_generated_client_every_call_kind_under_the_jit(program):
    csharp_checks(run(program, "client", "--debug"), *CHECKS)


def test_interface_without_generated_client_still_gets_a_proxy_under_the_jit(program):
    csharp_checks(run(program, "proxy", "--debug"), "proxy")


def _aot(assembly: Path, mono_path: Path) -> None:
    env = dict(os.environ, MONO_PATH=str(mono_path))
    p = subprocess.run(["mono", "--aot=full", str(assembly)], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0 and Path(str(assembly) + ".so").is_file(), \
        f"mono --aot=full {assembly.name} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"


def framework_images() -> Path:
    """The framework assemblies and their full-AOT images, compiled once per Mono build and cached (they take
    seconds to minutes; the test's own assemblies are compiled each run)."""
    version = subprocess.run(["mono", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    libdir = Path("/usr/lib/mono/4.5")
    key = hashlib.sha256((version + str(libdir.resolve())).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lesspy" / f"mono-full-aot-{key}"
    if all((cache / f"{name}.dll.so").is_file() for name in FRAMEWORK):
        return cache
    building = cache.with_name(cache.name + f".{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    for name in FRAMEWORK:
        src = libdir / f"{name}.dll"
        if not src.is_file():
            found = sorted((libdir.parent / "gac" / name).glob(f"*/{name}.dll"))
            assert found, f"no {name}.dll in Mono's 4.5 profile or GAC"
            src = found[-1]
        shutil.copy(src, building)
    for name in FRAMEWORK:
        _aot(building / f"{name}.dll", building)
    shutil.rmtree(cache, ignore_errors=True)
    try:
        building.rename(cache)                # whole or not at all: a concurrent run may have won
    except OSError:
        shutil.rmtree(building, ignore_errors=True)
    return cache


@pytest.fixture(scope="module")
def full_aot_program(program, tmp_path_factory) -> Path:
    """The program, LessPy.dll and the framework, every assembly AOT-compiled into one folder."""
    if not (shutil.which("as") and shutil.which("ld")):
        pytest.fail("Mono's full-AOT mode needs binutils (as, ld): run `make deps` (apt-get install binutils)")
    images = framework_images()
    folder = tmp_path_factory.mktemp("full_aot")
    for f in images.iterdir():
        shutil.copy(f, folder)
    for f in ("LessPy.dll", program.name, MODULE.name):
        shutil.copy(program.parent / f, folder)
    _aot(folder / "LessPy.dll", folder)
    _aot(folder / program.name, folder)
    return folder / program.name


def test_generated_client_every_call_kind_under_full_aot(full_aot_program):
    csharp_checks(run(full_aot_program, "client", "--full-aot"), *CHECKS)


def test_without_generated_client_full_aot_says_to_run_lesspy_stub_client(full_aot_program):
    p = run(full_aot_program, "proxy", "--full-aot")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ERROR LessPy.LessPyException: LessPy cannot implement IPlain on this runtime" in p.stdout, p.stdout + p.stderr
    assert HINT in p.stdout and "ExecutionEngineException" in p.stdout, p.stdout


def test_magic_stub_client_in_a_real_kernel_writes_a_class_that_compiles(csharp_bin, tmp_path):
    from kernels import kernel

    with kernel(tmp_path) as k:
        k.run("%load_ext lesspy_kernel")
        k.run("def add(a: int, b: int) -> int:\n    return a + b\n\ndef count(n: int) -> 'Iterator[int]':\n"
              "    yield n\n\nfrom typing import Iterator")
        out = k.run(f"%lesspy stub --client -o {tmp_path / 'MyApi.cs'}")
    text = (tmp_path / "MyApi.cs").read_text()
    assert "[LessPyClient(typeof(MyApi))]\npublic interface IMyApi" in text, out + text
    assert "public sealed class MyApi : GeneratedClient, IMyApi" in text and "_calls.Stream<long>(" in text, text
    proc = subprocess.run(["mcs", "-target:library", "-nologo", f"-r:{csharp_bin / 'LessPy.dll'}",
                           f"-out:{tmp_path / 'MyApi.dll'}", str(tmp_path / "MyApi.cs")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
