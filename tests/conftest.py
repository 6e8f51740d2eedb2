"""Shared fixtures: the C# build (real mcs), and helpers to compile and run C# programs with Mono."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def csharp_bin(tmp_path_factory) -> Path:
    """A folder holding LessPy.dll (and the demo), built from csharp/ with Mono's mcs for this run."""
    assert shutil.which("mcs"), "Mono's mcs is required: run `make test`, which installs it"
    out = tmp_path_factory.mktemp("csharp_bin")
    subprocess.run(["bash", str(ROOT / "csharp" / "build.sh"), str(out)], check=True)
    assert (out / "LessPy.dll").is_file()
    return out


def compile_csharp(csharp_bin: Path, sources, exe_name: str, extra=()) -> Path:
    """Compile C# sources against LessPy.dll into csharp_bin/exe_name; fail the test with mcs's output."""
    exe = csharp_bin / exe_name
    cmd = ["mcs", "-unsafe", "-optimize+", "-nologo", f"-out:{exe}", f"-r:{csharp_bin / 'LessPy.dll'}",
           *extra, *map(str, sources)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"mcs failed:\n{proc.stdout}\n{proc.stderr}"
    return exe


def run_mono(exe: Path, *args, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run a compiled program with mono, with MONO_PATH pointing at LessPy.dll."""
    env = dict(os.environ, MONO_PATH=str(exe.parent))
    env.update(kw.pop("env", {}))
    return subprocess.run(["mono", "--debug", str(exe), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


def csharp_checks(proc: subprocess.CompletedProcess, *names: str) -> dict:
    """The `CHECK <name> ok|...` lines a test program printed, by name: fails the test unless there is at least
    one, every one says ok, the program exited 0, and each of `names` is among them."""
    lines = [line for line in proc.stdout.splitlines() if line.startswith("CHECK ")]
    failed = [line for line in lines if not line.endswith(" ok")]
    assert lines and not failed and proc.returncode == 0, \
        f"exit {proc.returncode}\n" + "\n".join(failed) + "\n" + proc.stdout[-3000:] + proc.stderr[-3000:]
    result = {line.split()[1]: line for line in lines}
    for name in names:
        assert name in result, f"no CHECK covering {name}: {sorted(result)}"
    return result
