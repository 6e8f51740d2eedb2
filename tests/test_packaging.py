"""Packaging: one version for Python and C#, a wheel that carries the C# sources and an SPDX licence without
setuptools warnings, an sdist that holds the whole project, README links that work on a package index page."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest

import lesspy_kernel
from conftest import ROOT, compile_csharp, run_mono

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
REPO_URL = PYPROJECT["project"]["urls"]["Repository"]


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """The wheel and sdist that `python -m build` makes from this checkout, and what the build printed."""
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "-o", str(out), str(ROOT)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------------ one version


def test_the_version_is_written_once():
    assert "version" in PYPROJECT["project"]["dynamic"] and "version" not in PYPROJECT["project"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "lesspy_kernel.__version__"}
    assert metadata.version("lesspy-kernel") == lesspy_kernel.__version__
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode == 0:         # the project's own files, not what a build wrote (csharp/bin/obj, ...)
        sources = [ROOT / f for f in tracked.stdout.splitlines()]
    else:
        sources = [p for p in ROOT.rglob("*")
                   if not any(part.startswith(".") or part in ("build", "dist", "bin") for part in p.relative_to(ROOT).parts)]
    sources = [p for p in sources if p.suffix in (".py", ".toml", ".csproj", ".sh", ".cs") and p.is_file()]
    holders = [p.relative_to(ROOT) for p in sources if f'"{lesspy_kernel.__version__}"' in p.read_text(errors="ignore")]
    assert holders == [Path("lesspy_kernel/__init__.py")], f"the version literal is also in {holders}"


def test_the_csproj_reads_the_version_from_the_package():
    csproj = (ROOT / "csharp" / "LessPy" / "LessPy.csproj").read_text()
    # the .csproj's own regex, applied as MSBuild would to ../../lesspy_kernel/__init__.py
    pattern = re.search(r"Regex\]::Match\(.*?, '([^']+)'\)", csproj).group(1)
    assert re.search(pattern, (ROOT / "lesspy_kernel" / "__init__.py").read_text()).group(1) \
        == lesspy_kernel.__version__
    assert "../../lesspy_kernel/__init__.py" in csproj and "VERSION" in csproj
    for tag in ("PackageId", "Authors", "Description", "PackageLicenseExpression", "RepositoryUrl",
                "PackageProjectUrl", "PackageTags"):
        assert f"<{tag}" in csproj, f"LessPy.csproj lacks NuGet metadata <{tag}>"
    assert "<PackageLicenseExpression>BSD-3-Clause</PackageLicenseExpression>" in csproj
    assert f"<RepositoryUrl>{REPO_URL}</RepositoryUrl>" in csproj


def test_the_built_dll_carries_the_package_version(csharp_bin, tmp_path):
    src = tmp_path / "Version.cs"
    src.write_text("using System; using System.Reflection;\n"
                   "static class V { static void Main() { var a = typeof(LessPy.NdArray).Assembly;\n"
                   "  Console.WriteLine(a.GetName().Version);\n"
                   "  Console.WriteLine(a.GetCustomAttribute<AssemblyInformationalVersionAttribute>()"
                   ".InformationalVersion); } }\n")
    run = run_mono(compile_csharp(csharp_bin, [src], "Version.exe"))
    assert run.returncode == 0, run.stderr
    assembly, informational = run.stdout.split()
    assert informational == lesspy_kernel.__version__
    assert assembly.startswith(lesspy_kernel.__version__.split("rc")[0].split("a")[0].split("b")[0])


# ------------------------------------------------------------------------------------------------ the wheel


def test_the_build_prints_no_deprecation_warning(dist):
    _, _, log = dist
    assert not re.search(r"deprecat", log, re.I), log


def test_the_wheel_carries_licence_metadata_script_and_the_csharp_sources(dist):
    wheel, _, _ = dist
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        info = f"lesspy_kernel-{lesspy_kernel.__version__}.dist-info"
        meta = Parser().parsestr(z.read(f"{info}/METADATA").decode())
        entry_points = z.read(f"{info}/entry_points.txt").decode()
        assert z.read(f"{info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
        for cs in (ROOT / "csharp" / "LessPy").glob("*.cs"):
            assert z.read(f"lesspy_kernel/csharp/{cs.name}") == cs.read_bytes(), cs.name
        assert "lesspy_kernel/csharp/LessPy.csproj" in names
    assert "lesspy_kernel/magics/lesspy_magics.py" in names and "lesspy_kernel/py.typed" in names
    if sys.platform.startswith("linux"):              # the result allocator (allocator.py), built for this Python
        assert any(re.match(r"lesspy_kernel/_resultalloc\..*\.so$", n) for n in names), names
    assert not any(n.startswith(("magics/", "tests/")) for n in names), "only the lesspy_kernel package"
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert not any(c.startswith("License ::") for c in meta.get_all("Classifier"))
    assert meta["Version"] == lesspy_kernel.__version__
    requires = meta.get_all("Requires-Dist")
    for dep in ("numpy", "ipykernel", "ipython", "traitlets"):
        assert any(re.match(rf"{dep}>=\d", r) for r in requires), f"{dep} has no floor: {requires}"
    assert any(u.startswith("Repository, https://github.com/") for u in meta.get_all("Project-URL"))
    assert "lesspy = lesspy_kernel.cli:main" in entry_points


SERVER_CONFIG = "etc/jupyter/jupyter_server_config.d/lesspy_kernel.json"


def test_the_wheel_enables_the_jupyter_server_extension(dist):
    """The wheel installs <prefix>/etc/jupyter/jupyter_server_config.d/lesspy_kernel.json, which enables the
    extension that `_jupyter_server_extension_points` names."""
    wheel, _, _ = dist
    with zipfile.ZipFile(wheel) as z:
        data = f"lesspy_kernel-{lesspy_kernel.__version__}.data/data/{SERVER_CONFIG}"
        assert data in z.namelist(), [n for n in z.namelist() if ".data/" in n]
        config = json.loads(z.read(data))
    assert config == {"ServerApp": {"jpserver_extensions": {"lesspy_kernel": True}}}
    assert config == json.loads((ROOT / "jupyter-config" / "jupyter_server_config.d" / "lesspy_kernel.json").read_text())
    assert lesspy_kernel._jupyter_server_extension_points() == [{"module": "lesspy_kernel.jupyter.server_extension"}]


def test_jupyter_server_lists_the_extension_as_enabled():
    """`jupyter server extension list` of this environment (its config file in <sys.prefix>/etc/jupyter, as the
    wheel puts it and `make` does for the editable install) lists lesspy_kernel enabled and valid."""
    pytest.importorskip("jupyter_server")
    assert (Path(sys.prefix) / SERVER_CONFIG).is_file(), f"{Path(sys.prefix) / SERVER_CONFIG} is missing"
    proc = subprocess.run([sys.executable, "-m", "jupyter_server.extension.serverextension", "list"],
                          capture_output=True, text=True, timeout=120)
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    assert re.search(r"^\s*lesspy_kernel enabled\s*$", out, re.M), out
    assert re.search(rf"^\s*lesspy_kernel {re.escape(lesspy_kernel.__version__)} OK\s*$", out, re.M), out


def test_the_sdist_is_the_whole_project(dist):
    _, sdist, _ = dist
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for needed in ("LICENSE", "README.md", "CHANGELOG.md", "Makefile", ".ci/run", "csharp/build.sh",
                   "csharp/LessPy/LessPy.csproj", "csharp/Demo/Program.cs", "docs/PROTOCOL.md", "docs/CSHARP.md",
                   "tests/conftest.py", "tests/test_readme.py", "tests/vectors/names.txt", "tests/vectors/expected.txt",
                   "tests/vectors/value_none.bin", "magics/lesspy_magics.py", "setup.py", "lesspy_kernel/_resultalloc.c"):
        assert needed in names, f"the sdist lacks {needed}"
    assert not any(n.endswith((".dll", ".exe", ".pyc", ".so")) for n in names)


# ------------------------------------------------------------------------------------------------ README, LICENSE


def test_readme_links_are_absolute_and_point_at_files_of_this_project():
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    relative = [u for u in links if not re.match(r"https?://", u)]
    assert not relative, f"relative links break on a package index page: {relative}"
    prefix = REPO_URL + "/blob/main/"
    for url in links:
        if url.startswith(prefix):
            assert (ROOT / url[len(prefix):].split("#")[0]).exists(), f"{url} names no file of this project"


def test_readme_claims_no_install_from_pypi():
    for line in (ROOT / "README.md").read_text().splitlines():
        if "pip install lesspy-kernel" in line or "pip install lesspy " in line:
            assert "not on PyPI" in line or "finds nothing" in line, line


def test_licence_is_bsd_3_clause():
    assert PYPROJECT["project"]["license"] == "BSD-3-Clause"
    assert (ROOT / "LICENSE").read_text().startswith("BSD 3-Clause License")


def test_the_stress_marker_is_registered_and_make_test_excludes_it():
    assert any(m.startswith("stress:") for m in PYPROJECT["tool"]["pytest"]["ini_options"]["markers"])
    makefile = (ROOT / "Makefile").read_text()
    assert '-m "not stress"' in makefile and "-m stress" in makefile


def test_the_package_exports_what_it_names():
    assert lesspy_kernel.__all__ and "__version__" in lesspy_kernel.__all__
    missing = [name for name in lesspy_kernel.__all__ if not hasattr(lesspy_kernel, name)]
    assert not missing, missing
