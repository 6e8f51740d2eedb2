"""`lesspy csharp`: LessPy's C# sources copied out of the installed package, and built with Mono if asked."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import List

from . import __version__


class ExportError(Exception):
    """The sources are missing or would not build; the message says what to do."""


def csharp_sources() -> Path:
    """The folder holding LessPy's C# sources: inside the installed package, or csharp/LessPy in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "csharp", here.parent / "csharp" / "LessPy"):
        if (candidate / "LessPy.csproj").is_file():
            return candidate
    raise ExportError("lesspy csharp: this installation has no C# sources (lesspy_kernel/csharp is missing): "
                      "reinstall the package from its wheel or from the repository")


def export_csharp(out: Path) -> List[Path]:
    """Copy LessPy's sources and LessPy.csproj into `out`, with a VERSION file the .csproj reads."""
    src = csharp_sources()
    written = []
    for path in sorted(src.rglob("*")):
        if path.suffix not in (".cs", ".csproj") or any(p in ("bin", "obj") for p in path.relative_to(src).parts):
            continue
        target = out / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        written.append(target)
    (out / "VERSION").write_text(__version__, encoding="ascii")
    written.append(out / "VERSION")
    return written


def build_dll(out: Path, sources: List[Path]) -> Path:
    """Compile LessPy.dll (and its XML docs) into `out` with Mono's mcs."""
    mcs = shutil.which("mcs")
    if not mcs:
        raise ExportError("lesspy csharp --build: Mono's mcs is not on PATH (Debian: apt-get install mono-devel); "
                          "or build LessPy.csproj with `dotnet build`")
    dll = out / "LessPy.dll"
    cmd = [mcs, "-target:library", "-unsafe", "-optimize+", "-nologo", f"-out:{dll}", f"-doc:{out / 'LessPy.xml'}",
           *[str(p) for p in sources if p.suffix == ".cs"]]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ExportError(f"lesspy csharp --build: mcs failed:\n{proc.stdout}{proc.stderr}")
    return dll


def compile_ahead(dll: Path) -> str:
    """Mono's ahead-of-time image of `dll` (`dll`.so beside it, which Mono loads by itself): a fresh process's
    Connect and first call skip the JIT compilation of LessPy (docs/PERFORMANCE.md). Best effort: returns why there
    is none, or ""."""
    mono = shutil.which("mono")
    if not mono:
        return "mono is not on PATH"
    proc = subprocess.run([mono, "--aot", str(dll)], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"mono --aot failed (it needs the binutils `as` and `ld`): {(proc.stdout + proc.stderr).strip()[-300:]}"
    return ""
