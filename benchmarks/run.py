"""`make bench`: lesspy next to its floors and its peers, every figure measured in this same run.

    .venv/bin/python benchmarks/run.py [--quick] [--json PATH] [--no-docs] [--no-install]

What it does, in order (a few minutes on a 2-vCPU machine; --quick: tiny sizes, about half a minute):
  1. builds benchmarks/*.cs with Mono's mcs (LessPy.dll from csharp/build.sh);
  2. makes the peers' venv .venv-bench (pythonnet, jupyter_kernel_gateway, matplotlib) unless it exists;
  3. measures the floors: numpy copies and np.add map->map here; from Mono (Bench.exe) one-byte round trips over
     TCP loopback and a Unix socket to Python, a round trip spinning on a shared mapped word, C# copies;
  4. measures lesspy from C# through its public API: headless (no-op, add_ints, 4096^2 float32 `a + 1` three ways,
     1 MiB echo, Connect + first call, 8 threads vs 1, RSS growth, idle CPU), a live notebook kernel (and Jupyter's
     own messaging round trip, its floor), cold Initialize (and `python -c "import numpy"`, its floor);
  5. measures lesspy by URL through a real Jupyter Server (RemoteBench.exe): the relay to a headless named session,
     next to a bare websocket echo in the same server (remote_echo.py, its floor) and to Jupyter Server's own kernel
     messaging (kernel_info over the kernel's channels websocket);
  6. measures the peers: pythonnet hosted in Mono, Jupyter Kernel Gateway notebook-http called from C#; quotes the
     original LessPythonInvoke's published figure (marked as quoted);
  7. prints one table, writes benchmarks/results.json, docs/benchmarks.png and the figures section of
     docs/PERFORMANCE.md (full runs only).
A peer that cannot be installed or started is reported as skipped with the reason. Nothing asserts on wall-clock
time; the script exits non-zero only when something is broken (a build, a start-up, a wrong result).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import mmap
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
BIN = ROOT / "csharp" / "bin"
BENCH_VENV = ROOT / ".venv-bench"
BENCH_PACKAGES = ["pythonnet", "jupyter_kernel_gateway", "matplotlib", "numpy", "ipykernel", "nbformat"]
PERF_DOC = ROOT / "docs" / "PERFORMANCE.md"
PLOT = ROOT / "docs" / "benchmarks.png"
MARK_BEGIN = "<!-- bench:begin (written by benchmarks/run.py; do not edit by hand) -->"
MARK_END = "<!-- bench:end -->"
LPI_PUBLISHED_MS = 24.9
NETSTANDARD = "/usr/lib/mono/4.5/Facades/netstandard.dll"


class Broken(RuntimeError):
    """Something that must work did not (a build, a start-up, a wrong result)."""


# ================================================================ sizes

def sizes(quick: bool) -> Dict[str, Any]:
    if quick:
        return dict(n=512, small=1000, big=5, echo=50, rss=3000, idle=1, threads_s=0.5, connects=1, cold=1,
                    live=300, jmsg=30, pn_small=2000, pn_big=3, kg_small=10, kg_big=1, kg_n=256, py_reps=5,
                    remote_small=300, remote_big=3, remote_jmsg=5)
    return dict(n=4096, small=20000, big=15, echo=300, rss=100000, idle=10, threads_s=2, connects=3, cold=3,
                live=3000, jmsg=300, pn_small=20000, pn_big=10, kg_small=100, kg_big=1, kg_n=4096, py_reps=15,
                remote_small=3000, remote_big=10, remote_jmsg=100)


# ================================================================ helpers

def stats(samples_s: List[float]) -> Dict[str, float]:
    s = sorted(x * 1e6 for x in samples_s)

    def pct(p):
        return s[min(len(s) - 1, max(0, math.ceil(p * len(s)) - 1))]

    return {"median_us": s[len(s) // 2], "p90_us": pct(0.90), "p99_us": pct(0.99), "n": len(s)}


def parse_lines(text: str, into: Dict[str, Any], skips: Dict[str, str]) -> None:
    """RESULT/VALUE/SKIP lines from the C# programs."""
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "RESULT" and len(parts) == 6:
            into[parts[1]] = {"median_us": float(parts[2]), "p90_us": float(parts[3]), "p99_us": float(parts[4]),
                              "n": int(parts[5])}
        elif parts[0] == "VALUE" and len(parts) == 4:
            into[parts[1]] = {"value": float(parts[2]), "unit": parts[3]}
        elif parts[0] == "SKIP" and len(parts) >= 3:
            skips[parts[1]] = " ".join(parts[2:])


def mapped(path: Path, size: int) -> mmap.mmap:
    with open(path, "w+b") as f:
        f.truncate(size)
        return mmap.mmap(f.fileno(), size, access=mmap.ACCESS_WRITE)


def wait_for(cond: Callable[[], bool], proc: subprocess.Popen, what: str, log: Path, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            raise Broken(f"{what} exited with code {proc.returncode}:\n{tail(log)}")
        if time.monotonic() - t0 > timeout:
            raise Broken(f"{what} not ready after {timeout:.0f} s:\n{tail(log)}")
        time.sleep(0.02)


def tail(log: Path, n: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def stop(proc: Optional[subprocess.Popen], sig=signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def run_checked(cmd: List[str], what: str, timeout: float, env=None, cwd=None, preexec_fn=None) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
                           preexec_fn=preexec_fn)
    except subprocess.TimeoutExpired as e:
        raise Broken(f"{what} did not finish in {timeout:.0f} s:\n{(e.stdout or '')[-2000:]}")
    if p.returncode != 0:
        raise Broken(f"{what} failed with code {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p.stdout


def first_line(cmd: List[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.splitlines()[0].strip()
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


# ================================================================ machine and versions

def machine() -> Dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    except (OSError, IndexError):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "allowed_cpus": sorted(os.sched_getaffinity(0)),
            "memory": mem, "os": f"{platform.system()} {platform.release()}"}


def versions(bench_py: Optional[Path]) -> Dict[str, str]:
    import lesspy_kernel

    commit = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    v = {"python": platform.python_version(), "numpy": np.__version__,
         "lesspy": f"{lesspy_kernel.__version__} (git {commit})", "mono": first_line(["mono", "--version"])}
    for dist in ("ipykernel", "jupyter_client"):
        try:
            from importlib.metadata import version
            v[dist] = version(dist)
        except Exception:  # noqa: BLE001 - a missing dist is just not listed
            pass
    if bench_py is not None:
        code = ("import json, importlib.metadata as m\nout = {}\n"
                "for d in ('pythonnet', 'clr_loader', 'jupyter_kernel_gateway', 'jupyter_server', 'matplotlib'):\n"
                "    try: out[d] = m.version(d)\n    except Exception: pass\nprint(json.dumps(out))")
        try:
            v.update(json.loads(subprocess.run([str(bench_py), "-c", code], capture_output=True, text=True,
                                               timeout=60).stdout))
        except (ValueError, subprocess.SubprocessError, OSError):
            pass
    return v


# ================================================================ the peers' venv

def bench_venv(install: bool) -> tuple:
    """(python of .venv-bench or None, why not). Made once with pip; reused afterwards."""
    py = BENCH_VENV / "bin" / "python"
    if py.exists():
        return py, ""
    if not install:
        return None, f"{BENCH_VENV.name} does not exist (run `make bench` once without --no-install to create it)"
    print(f"creating {BENCH_VENV.name} for the peers and the plot ({', '.join(BENCH_PACKAGES)}); once only...",
          flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True, capture_output=True, timeout=300)
        p = subprocess.run([str(py), "-m", "pip", "install", "-q"] + BENCH_PACKAGES, capture_output=True, text=True,
                           timeout=900)
    except (subprocess.SubprocessError, OSError) as e:
        shutil.rmtree(BENCH_VENV, ignore_errors=True)
        return None, f"could not create {BENCH_VENV.name}: {e}"
    if p.returncode != 0:
        shutil.rmtree(BENCH_VENV, ignore_errors=True)
        err = [ln for ln in (p.stdout + p.stderr).splitlines() if not ln.startswith("WARNING: Location")]
        return None, "pip install " + " ".join(BENCH_PACKAGES) + " failed: " + " / ".join(err[-3:])
    return py, ""


def has_module(py: Path, module: str) -> bool:
    return subprocess.run([str(py), "-c", f"import {module}"], capture_output=True, timeout=120).returncode == 0


def find_libpython(py: Path) -> tuple:
    """(path of the shared libpython matching `py`, or None, and why not)."""
    code = ("import sysconfig as s, sys\nprint(s.get_config_var('Py_ENABLE_SHARED') or 0)\n"
            "print(s.get_config_var('LIBDIR'))\nprint(s.get_config_var('INSTSONAME') or s.get_config_var('LDLIBRARY'))\n"
            "print('%d.%d' % sys.version_info[:2])")
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=60).stdout.split("\n")
    shared, libdir, soname, ver = out[0], out[1], out[2], out[3]
    candidates = [Path(libdir) / soname, Path(libdir) / f"libpython{ver}.so"]
    candidates += sorted(Path("/usr/lib").glob(f"*/libpython{ver}.so*"))
    for c in candidates:
        if c.exists() and ".so" in c.name:
            return c, ""
    return None, (f"no shared libpython{ver} for {py} (Py_ENABLE_SHARED={shared}, looked in {libdir} and "
                  f"/usr/lib/*/): install one, e.g. Debian's libpython{ver} with a matching Python")


# ================================================================ builds

def mcs(out: Path, sources: List[Path], refs: List[str]) -> None:
    run_checked(["mcs", "-nologo", "-unsafe", "-optimize+", f"-out:{out}"] + [f"-r:{r}" for r in refs]
                + [str(s) for s in sources], f"mcs {out.name}", 300)


def build_lesspy(tmp: Path) -> Path:
    dll = BIN / "LessPy.dll"
    sources = list((ROOT / "csharp" / "LessPy").glob("*.cs"))
    if not dll.exists() or any(src.stat().st_mtime > dll.stat().st_mtime for src in sources):
        run_checked(["bash", str(ROOT / "csharp" / "build.sh"), str(BIN)], "csharp/build.sh", 600)
    exe = tmp / "Bench.exe"
    mcs(exe, [BENCH / "Bench.cs", BENCH / "Measure.cs"], [str(BIN / "LessPy.dll")])
    shutil.copy2(BIN / "LessPy.dll", tmp / "LessPy.dll")
    if (BIN / "LessPy.dll.so").exists():                  # Mono's AOT image (build.sh): loaded beside the dll
        shutil.copy2(BIN / "LessPy.dll.so", tmp / "LessPy.dll.so")
    return exe


# ================================================================ Python-side floors

def python_floors(tmp: Path, n: int, reps: int) -> Dict[str, Any]:
    """numpy work between two mapped files as the server has them (created once, reused, pages faulted in)."""
    big = n * n * 4
    ma, mb = mapped(tmp / "py_a.mmf", big), mapped(tmp / "py_b.mmf", big)
    a = np.frombuffer(ma, dtype=np.float32).reshape(n, n)
    b = np.frombuffer(mb, dtype=np.float32).reshape(n, n)
    a[...] = (np.arange(n * n, dtype=np.float32) % 1000).reshape(n, n)
    b[...] = 0
    heap = np.empty((n, n), dtype=np.float32)
    heap[...] = a
    one_a = np.frombuffer(ma, dtype=np.float64, count=min(1 << 17, big // 8))
    one_b = np.frombuffer(mb, dtype=np.float64, count=min(1 << 17, big // 8))
    r: Dict[str, List[float]] = {}
    for _ in range(2):     # two interleaved rounds, statistics over both
        for name, fn, k in (
            ("floor_py_add_map_to_map", lambda: np.add(a, 1, out=b), reps),
            ("floor_py_copy_64MiB", lambda: np.copyto(b, heap), reps),
            ("floor_py_copy_1MiB", lambda: np.copyto(one_b, one_a), reps * 20),
        ):
            for _ in range(2):
                fn()
            for _ in range(k):
                t0 = time.perf_counter()
                fn()
                r.setdefault(name, []).append(time.perf_counter() - t0)
    if not np.array_equal(b[:1], a[:1]):
        raise Broken("numpy copy floor: wrong data")
    del a, b, one_a, one_b, heap
    ma.close()
    mb.close()
    return {k: stats(v) for k, v in r.items()}


# ================================================================ CPU placement

class Placement:
    """Where the scheduler runs two processes: every 20 ms, the CPU (/proc/<pid>/task/*/stat field 39) of each
    thread that is running or used CPU time since the last sample."""

    def __init__(self, pids: Dict[str, int], interval: float = 0.02):
        self.pids, self.interval = pids, interval
        self.counts: Dict[str, Dict[int, int]] = {name: {} for name in pids}
        self.ticks: Dict[tuple, int] = {}
        self.same = self.both = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> Dict[str, Any]:
        self._stop.set()
        self._thread.join(5)
        out: Dict[str, Any] = {}
        for name, c in self.counts.items():
            total = sum(c.values()) or 1
            out[name] = {f"cpu{k}": round(v / total, 2) for k, v in sorted(c.items())}
        out["samples_both_busy"] = self.both
        out["same_cpu_fraction"] = round(self.same / self.both, 2) if self.both else None
        return out

    def _busy(self, pid: int) -> set:
        cpus = set()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return cpus
        for tid in tids:
            try:
                s = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except OSError:
                continue
            f = s[s.rfind(")") + 2:].split()
            t = int(f[11]) + int(f[12])
            if f[0] == "R" or t != self.ticks.get((pid, tid), t):
                cpus.add(int(f[36]))
            self.ticks[(pid, tid)] = t
        return cpus

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            seen = [self._busy(pid) for pid in self.pids.values()]
            for name, cpus in zip(self.pids, seen):
                for c in cpus:
                    self.counts[name][c] = self.counts[name].get(c, 0) + 1
            if seen[0] and seen[1]:
                self.both += 1
                self.same += bool(seen[0] & seen[1])


# ================================================================ lesspy headless + floors from Mono

class Procs:
    """Every process this run starts, stopped at the end whatever happens."""

    def __init__(self):
        self.procs: List[subprocess.Popen] = []
        self.files = []

    def log(self, path: Path):
        f = open(path, "wb")
        self.files.append(f)
        return f

    def popen(self, cmd, log: Path, pipe: bool = False, **kw) -> subprocess.Popen:
        """Start `cmd` with its output in `log` (with pipe: stdout readable as text, stderr in `log`)."""
        if pipe:
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log(log), stdin=subprocess.DEVNULL,
                                 text=True, **kw)
        else:
            p = subprocess.Popen(cmd, stdout=self.log(log), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in reversed(self.procs):
            stop(p)
            if p.stdout is not None:
                p.stdout.close()
        for f in self.files:
            f.close()


def headless(exe: Path, tmp: Path, sz: Dict[str, int], procs: Procs, res: Dict[str, Any],
             skips: Dict[str, str]) -> None:
    tcp = procs.popen([sys.executable, str(BENCH / "floor_servers.py"), "tcp"], tmp / "tcp.log", pipe=True)
    port = tcp.stdout.readline().strip()
    if not port.isdigit():
        raise Broken(f"TCP echo server did not report its port ({port!r}):\n{tail(tmp / 'tcp.log')}")
    unix_path = tmp / "echo.sock"
    unix = procs.popen([sys.executable, str(BENCH / "floor_servers.py"), "unix", str(unix_path)], tmp / "unix.log")
    spin_mmf, spin_sock = tmp / "spin.mmf", tmp / "spin.sock"
    spin = procs.popen([sys.executable, str(BENCH / "floor_servers.py"), "spin", str(spin_mmf), str(spin_sock)],
                       tmp / "spin.log")

    work = tmp / "work"
    server_log = tmp / "server.log"
    server = procs.popen([sys.executable, "-m", "lesspy_kernel", "serve", "--module", str(BENCH / "bench_module.py"),
                          "--work-folder", str(work), "--keep-alive"] + capacity_args(sz),
                         server_log, cwd=str(tmp))
    wait_for(lambda: (work / "notify.port").exists(), server, "the lesspy server", server_log)
    wait_for(unix_path.exists, unix, "the Unix echo server", tmp / "unix.log")
    wait_for(spin_sock.exists, spin, "the spin server", tmp / "spin.log")

    print("running Bench.exe connect (Connect + first call, each from a fresh process)...", flush=True)
    image = tmp / "LessPy.dll.so"                         # Mono's AOT image of LessPy.dll, as build.sh makes it
    aside = tmp / "LessPy.dll.so.aside"
    for key in ("connect_first_call", "connect_first_call_jit"):
        if key == "connect_first_call_jit":
            if not image.exists():
                skips[key] = "build.sh made no AOT image, so the row above is already JIT-only"
                continue
            image.rename(aside)                           # the same dll, compiled just in time
        firsts = []
        for _ in range(sz["connects"]):
            r: Dict[str, Any] = {}
            parse_lines(run_checked(["mono", str(exe), "connect", f"folder={work}"], "Bench.exe connect", 120,
                                    env=dict(os.environ, MONO_PATH=str(tmp)), cwd=str(tmp)), r, skips)
            firsts.append(r["connect_first_call"]["value"] / 1e6)
        res[key] = stats(firsts)
    if aside.exists():
        aside.rename(image)

    spin_pinned(exe, tmp, sz, procs, res, skips)

    import lesspy_kernel
    has_ra = int(hasattr(lesspy_kernel, "result_array"))
    args = ["mono", str(exe), "headless", f"folder={work}", f"scratch={tmp}", f"tcp={port}", f"unix={unix_path}",
            f"spinmmf={spin_mmf}", f"spinsock={spin_sock}", f"n={sz['n']}", f"small={sz['small']}",
            f"big={sz['big']}", f"echo={sz['echo']}", f"rss={sz['rss']}", f"idle={sz['idle']}",
            f"threads_s={sz['threads_s']}", f"connects={sz['connects']}", f"clk={os.sysconf('SC_CLK_TCK')}",
            f"result_array={has_ra}"]
    print("running Bench.exe headless (floors over sockets and a shared word, then lesspy calls)...", flush=True)
    bench = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(tmp),
                             env=dict(os.environ, MONO_PATH=str(BIN)))
    lines, sampler = [], None
    t0 = time.monotonic()
    for line in bench.stdout:
        lines.append(line)
        if line.startswith("PIDS "):
            cs_pid, py_pid = (int(x) for x in line.split()[1:3])
            sampler = Placement({"csharp": cs_pid, "python": py_pid})
        elif line.startswith("PHASE small") and sampler is not None:
            sampler.start()
        elif line.startswith("PHASE end") and sampler is not None:
            res["placement"] = sampler.stop()
        if time.monotonic() - t0 > 900:
            bench.kill()
    err = bench.stderr.read()
    bench.wait()
    if bench.returncode != 0:
        raise Broken(f"Bench.exe headless failed with code {bench.returncode}:\n{''.join(lines)[-3000:]}\n{err[-3000:]}"
                     f"\nserver log:\n{tail(server_log)}")
    parse_lines("".join(lines), res, skips)
    small_pinned(exe, tmp, sz, server, work, res, skips)
    stop(server)


def small_pinned(exe: Path, tmp: Path, sz: Dict[str, Any], server: subprocess.Popen, work: Path,
                 res: Dict[str, Any], skips: Dict[str, str]) -> None:
    """The small calls again with Mono on one CPU and every server thread on the other: like for like with the
    pinned spin floor, whatever the scheduler did in the main run."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        for k in ("pinned_noop", "pinned_add_ints"):
            skips[k] = f"needs two CPUs, this process may use only {cpus}"
        return
    print(f"running Bench.exe small (Mono on CPU {cpus[0]}, the lesspy server on CPU {cpus[1]})...", flush=True)
    pin(server.pid, {cpus[1]})
    try:
        out = run_checked(["mono", str(exe), "small", f"folder={work}", f"small={sz['small']}", "prefix=pinned_"],
                          "Bench.exe small", 300, env=dict(os.environ, MONO_PATH=str(BIN)), cwd=str(tmp),
                          preexec_fn=lambda: os.sched_setaffinity(0, {cpus[0]}))
    finally:
        pin(server.pid, set(cpus))
    parse_lines(out, res, skips)


def pin(pid: int, cpus: set) -> None:
    """Set the CPU affinity of every thread of `pid` (threads it starts later inherit their creator's)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass


def spin_pinned(exe: Path, tmp: Path, sz: Dict[str, int], procs: Procs, res: Dict[str, Any],
                skips: Dict[str, str]) -> None:
    """The spin floor with Mono and the Python spinner pinned to different CPUs: what spinning can do when each
    side has a CPU. (Unpinned, interleaved with the lesspy calls, it is `floor_spin_unpinned`: two spinners that the
    scheduler puts on one CPU take turns, each spinning out its 200 µs.)"""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        skips["floor_spin"] = f"needs two CPUs, this process may use only {cpus}"
        return
    mmf, sock = tmp / "spin2.mmf", tmp / "spin2.sock"
    spin = procs.popen([sys.executable, str(BENCH / "floor_servers.py"), "spin", str(mmf), str(sock)],
                       tmp / "spin2.log", preexec_fn=lambda: os.sched_setaffinity(0, {cpus[1]}))
    wait_for(sock.exists, spin, "the spin server", tmp / "spin2.log")
    print(f"running Bench.exe spin (Mono on CPU {cpus[0]}, Python on CPU {cpus[1]})...", flush=True)
    out = run_checked(["mono", str(exe), "spin", f"spinmmf={mmf}", f"spinsock={sock}", f"small={sz['small']}",
                       "name=floor_spin"], "Bench.exe spin", 120, env=dict(os.environ, MONO_PATH=str(BIN)),
                      cwd=str(tmp), preexec_fn=lambda: os.sched_setaffinity(0, {cpus[0]}))
    parse_lines(out, res, skips)
    stop(spin)


def capacity_args(sz: Dict[str, int]) -> List[str]:
    """Protocol v1 servers need mappings made big enough for the 64 MiB calls up front; from v2 on they start at
    the default size and grow on demand (which is what this measures)."""
    try:
        from lesspy_kernel.wire import PROTOCOL_VERSION
    except ImportError:
        PROTOCOL_VERSION = 2
    if PROTOCOL_VERSION < 2:
        return ["--capacity", f"{sz['n'] * sz['n'] * 4 // (1 << 20) * 5 // 2 + 16}M"]
    return []


# ================================================================ live kernel

def live_kernel(exe: Path, tmp: Path, sz: Dict[str, int], procs: Procs, res: Dict[str, Any],
                skips: Dict[str, str]) -> None:
    from jupyter_client.manager import start_new_kernel

    home = tmp / "jupyter"
    spec = home / "kernels" / "lesspy-bench"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "lesspy bench", "language": "python"}))
    env = dict(os.environ, IPYTHONDIR=str(tmp / "ipython"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTER_DATA_DIR=str(home), JUPYTER_PATH=str(home))
    old = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "JUPYTER_DATA_DIR")}
    os.environ.update(JUPYTER_PATH=str(home), JUPYTER_DATA_DIR=str(home))
    try:
        km, kc = start_new_kernel(kernel_name="lesspy-bench", env=env, cwd=str(tmp), startup_timeout=60,
                                  stdout=procs.log(tmp / "kernel.log"), stderr=subprocess.STDOUT)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        folder = tmp / "live"

        def execute(code: str) -> dict:
            msg_id = kc.execute(code, store_history=False)
            while True:
                reply = kc.get_shell_msg(timeout=60)
                if reply["parent_header"].get("msg_id") == msg_id:
                    return reply

        # defined in the notebook, as its users write them (imported functions are not exported)
        r = execute("def noop():\n    return None\n\ndef add_ints(a, b):\n    return a + b\n\n"
                    "%%load_ext lesspy_kernel\n%%lesspy serve --folder %s" % folder)
        if r["content"]["status"] != "ok":
            raise Broken(f"%lesspy serve in the kernel failed: {r['content']}")
        t0 = time.monotonic()
        while not (folder / "notify.port").exists():
            if time.monotonic() - t0 > 30:
                raise Broken("the kernel's lesspy server did not become ready in 30 s")
            time.sleep(0.02)

        # Jupyter's own messaging round trip: an execute request calling the same no-op, reply received
        for _ in range(20):
            execute("noop()")
        samples = []
        for _ in range(sz["jmsg"]):
            t = time.perf_counter()
            execute("noop()")
            samples.append(time.perf_counter() - t)
        res["floor_jupyter_msg"] = stats(samples)

        print("running Bench.exe live (no-op calls into an idle notebook kernel)...", flush=True)
        out = run_checked(["mono", str(exe), "live", f"folder={folder}", f"small={sz['live']}"], "Bench.exe live", 300,
                          env=dict(os.environ, MONO_PATH=str(BIN)), cwd=str(tmp))
        parse_lines(out, res, skips)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# ================================================================ remote: through Jupyter Server

REMOTE_ROWS = ("remote_echo_small", "remote_frames_direct", "remote_echo_big", "remote_frames_direct_big",
               "remote_noop", "remote_add_ints", "remote_big", "remote_connect_warm", "remote_relayed_noop",
               "remote_relayed_big", "jupyter_ws_kernel_info")


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, token: str, method: str = "GET", body: Optional[bytes] = None, timeout: float = 30) -> Any:
    import urllib.request
    req = urllib.request.Request(url, data=body, method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        data = r.read()
    return json.loads(data) if data else None


def build_remote_bench(tmp: Path) -> Path:
    """RemoteBench.exe from LessPy's sources (the echo uses the internal RemoteLane) and the bench's."""
    exe = tmp / "RemoteBench.exe"
    sources = sorted((ROOT / "csharp" / "LessPy").glob("*.cs"))
    version = BIN / "obj" / "LessPyVersion.cs"            # written by build.sh: the library's assembly version
    if version.exists():
        sources.append(version)
    mcs(exe, sources + [BENCH / "RemoteBench.cs", BENCH / "Measure.cs"], [])
    return exe


def frames_direct(folder: Path, calls: int, warm: int, name: str = "noop", array: Optional[np.ndarray] = None
                  ) -> List[float]:
    """Round trips straight to the session over a FRAMES connection (what the relay opens for each websocket),
    from this Python process with blocking sockets: the relay's hop and the session's call, without the relay.
    `name()` returns nothing, or with `array`, `name(array)` returns an array of the same size."""
    from lesspy_kernel.client import open_frames
    from lesspy_kernel.coerce import encode_call
    from lesspy_kernel.wire import HEADER_SIZE, Tag
    from lesspy_kernel.wire.message import message_header, read_message_header

    conn = open_frames(folder, timeout=5.0)
    if array is None:
        payload = encode_call(name, Tag.NONE, [], [])
    else:
        payload = encode_call(name, Tag.NDARRAY, [array], [Tag.NDARRAY])
    sock = conn.sock
    reply = bytearray(HEADER_SIZE + len(payload) + 4096)
    view = memoryview(reply)

    def read(at: int, n: int) -> None:
        end = at + n
        while at < end:
            got = sock.recv_into(view[at:end])
            if not got:
                raise Broken("the session closed its FRAMES connection")
            at += got

    samples = []
    try:
        for seq in range(1, calls + warm + 1):
            t = time.perf_counter()
            sock.sendall(message_header(seq, len(payload), 0, conn.session) + payload)
            read(0, HEADER_SIZE)
            h = read_message_header(view[:HEADER_SIZE])
            if HEADER_SIZE + h.length > len(reply):
                raise Broken(f"FRAMES {name}: a reply of {h.length} bytes for a request of {len(payload)}")
            read(HEADER_SIZE, h.length)
            if seq > warm:
                samples.append(time.perf_counter() - t)
            if h.sequence != seq or h.status != 0:
                raise Broken(f"FRAMES {name}: reply {h.sequence} status {h.status} to {seq}: "
                             f"{bytes(view[HEADER_SIZE:HEADER_SIZE + 200])!r}")
    finally:
        view.release()
        conn.close()
    return samples


def remote(tmp: Path, sz: Dict[str, int], procs: Procs, res: Dict[str, Any], skips: Dict[str, str]) -> None:
    """A real `jupyter server` with lesspy's extension and the bench's echo (remote_echo.py) in the same process;
    a headless session named `bench` behind the relay; a kernel for Jupyter's own kernel messaging. Mono calls
    by URL (RemoteBench.exe), alternating blocks with the echo."""
    import importlib.util

    import lesspy_kernel

    why = ""
    if importlib.util.find_spec("jupyter_server") is None:
        why = f"jupyter_server is not installed in {sys.prefix}"
    elif not hasattr(lesspy_kernel, "_jupyter_server_extension_points"):
        why = "this lesspy has no Jupyter Server extension (lesspy_kernel._jupyter_server_extension_points)"
    if not why:
        try:
            exe = build_remote_bench(tmp)
        except Broken as e:
            why = f"RemoteBench.cs does not build against this checkout's LessPy sources: {str(e)[-400:]}"
    if why:
        for k in REMOTE_ROWS:
            skips[k] = why
        return

    relayed_too = hands_off()
    res["remote_hand_off"] = {"value": int(relayed_too), "unit": "bool"}
    if not relayed_too:
        for k in ("remote_relayed_noop", "remote_relayed_big"):
            skips[k] = "this lesspy's relay always relays (it has no LessPyRelay.hand_off): the rows above are relayed"
    for mode, extra in [("", [])] + ([("relayed_", ["--LessPyRelay.hand_off=False"])] if relayed_too else []):
        remote_mode(exe, tmp / f"remote{mode.rstrip('_')}", mode, extra, sz, procs, res, skips)


def hands_off() -> bool:
    """Whether this lesspy's relay hands a plain-http websocket to the session by default (else it relays)."""
    try:
        from lesspy_kernel.jupyter.relay import LessPyRelay
    except ImportError:
        return False
    return bool(LessPyRelay.class_traits().get("hand_off") is not None and LessPyRelay().hand_off)


def remote_mode(exe: Path, d: Path, prefix: str, server_args: List[str], sz: Dict[str, int], procs: Procs,
                res: Dict[str, Any], skips: Dict[str, str]) -> None:
    """One Jupyter Server (with `server_args`): RemoteBench.exe's calls and echo, result names given `prefix`;
    for the default server also the FRAMES rows and Jupyter's kernel channels."""
    runtime = d / "runtime"
    for sub in ("config", "data", "runtime", "root"):
        (d / sub).mkdir(parents=True)
    os.chmod(runtime, 0o700)
    (d / "config" / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": {"lesspy_kernel": True, "remote_echo": True}}}))
    token = os.urandom(16).hex()
    port = free_port()
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(d / "config"), JUPYTER_DATA_DIR=str(d / "data"),
               JUPYTER_RUNTIME_DIR=str(runtime), IPYTHONDIR=str(d / "ipython"),
               PYTHONPATH=os.pathsep.join([str(BENCH)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    env.pop("JUPYTER_TOKEN", None)
    log = d / "jupyter_server.log"
    server = procs.popen([sys.executable, "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1",
                          f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--ServerApp.open_browser=False",
                          f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={d / 'root'}",
                          "--ServerApp.allow_root=True"] + server_args, log, env=env, cwd=str(d))
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            http_json(base + "/api/status", token, timeout=2)
            return True
        except (OSError, ValueError):
            return False

    wait_for(answers, server, "jupyter server (with the lesspy extension and remote_echo)", log, timeout=90)
    for ext in ("lesspy_kernel", "remote_echo"):
        if f"{ext} | extension was successfully loaded" not in tail(log, 100000):
            raise Broken(f"jupyter server did not load the {ext} extension:\n{tail(log)}")

    folder = runtime / "lesspy" / "bench"
    session_log = d / "session.log"
    session = procs.popen([sys.executable, "-m", "lesspy_kernel", "serve", "--module", str(BENCH / "bench_module.py"),
                           "--work-folder", str(folder), "--keep-alive"], session_log, env=env, cwd=str(d))
    wait_for(lambda: (folder / "notify.port").exists(), session, "the lesspy session `bench`", session_log)

    what = " ".join(server_args) or "default settings"
    print(f"running RemoteBench.exe remote (calls by URL, {what}, and the echo beside them)...", flush=True)
    out = run_checked(["mono", str(exe), "remote", f"url={base}/lesspy/bench?token={token}",
                       f"echo={base}/echo/lesspy/bench?token={token}", f"small={sz['remote_small']}",
                       f"big={sz['remote_big']}", f"n={sz['n']}", f"connects={0 if prefix else sz['connects']}",
                       f"prefix={prefix}"], "RemoteBench.exe remote", 900, cwd=str(d))
    parse_lines(out, res, skips)
    if prefix:
        stop(session)
        stop(server)
        return
    res["remote_frames_direct"] = stats(frames_direct(folder, sz["remote_small"], 200))
    n = sz["n"]
    a = (np.arange(n * n, dtype=np.float32) % 1000).reshape(n, n)
    res["remote_frames_direct_big"] = stats(frames_direct(folder, sz["remote_big"], 2, "inc_ndarray", a))
    stop(session)

    kernel = http_json(base + "/api/kernels", token, "POST", b"{}")["id"]
    try:
        # the server's websocket waits for the kernel to answer before it carries messages; RemoteBench warms up
        print("running RemoteBench.exe channels (kernel_info over Jupyter Server's kernel websocket)...", flush=True)
        out = run_checked(["mono", str(exe), "channels", f"url=ws://127.0.0.1:{port}/api/kernels/{kernel}/channels",
                           f"token={token}", f"calls={sz['remote_jmsg']}"], "RemoteBench.exe channels", 300,
                          cwd=str(d))
        parse_lines(out, res, skips)
    finally:
        try:
            http_json(f"{base}/api/kernels/{kernel}", token, "DELETE")
        except OSError:
            pass
        stop(server)


# ================================================================ cold start

def cold(exe: Path, tmp: Path, sz: Dict[str, int], res: Dict[str, Any], skips: Dict[str, str]) -> None:
    print("running Bench.exe cold (Initialize starting Python, then `python -c \"import numpy\"`)...", flush=True)
    init, numpy_ = [], []
    venv = Path(sys.prefix)
    # numpy's bytecode was compiled when pip installed it; ours too when installed from the wheel, but not in
    # an editable checkout (and PYTHONDONTWRITEBYTECODE keeps it from being cached): compile it alike
    import compileall
    import lesspy_kernel
    compileall.compile_dir(str(Path(lesspy_kernel.__file__).parent), quiet=1)
    for _ in range(sz["cold"]):
        d = tmp / "cold"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        shutil.copy2(exe, d / exe.name)
        shutil.copy2(BIN / "LessPy.dll", d / "LessPy.dll")
        out = run_checked(["mono", str(d / exe.name), "cold", f"venv={venv}", f"module={BENCH / 'bench_module.py'}",
                           f"python={sys.executable}"], "Bench.exe cold", 120, cwd=str(d))
        r: Dict[str, Any] = {}
        parse_lines(out, r, skips)
        init.append(r["cold_initialize"]["value"] / 1e6)
        numpy_.append(r["floor_import_numpy"]["value"] / 1e6)
    res["cold_initialize"] = stats(init)
    res["floor_import_numpy"] = stats(numpy_)


# ================================================================ peers

def pythonnet_peer(tmp: Path, bench_py: Optional[Path], why: str, sz: Dict[str, int], res: Dict[str, Any],
                   skips: Dict[str, str]) -> None:
    names = ("pythonnet_add_ints", "pythonnet_big")
    if bench_py is None or not has_module(bench_py, "pythonnet"):
        for k in names:
            skips[k] = why or f"pythonnet is not importable in {BENCH_VENV.name}"
        return
    site = subprocess.run([str(bench_py), "-c", "import numpy, os; print(os.path.dirname(os.path.dirname(numpy.__file__)))"],
                          capture_output=True, text=True, timeout=60).stdout.strip()
    dll = subprocess.run([str(bench_py), "-c", "import pythonnet, os; print(os.path.join(os.path.dirname(pythonnet.__file__), 'runtime', 'Python.Runtime.dll'))"],
                         capture_output=True, text=True, timeout=60).stdout.strip()
    lib, why_lib = find_libpython(bench_py)
    if lib is None or not Path(dll).exists():
        for k in names:
            skips[k] = why_lib or f"Python.Runtime.dll not found in the pythonnet wheel ({dll})"
        return
    d = tmp / "pythonnet"
    d.mkdir()
    shutil.copy2(dll, d / "Python.Runtime.dll")
    try:
        mcs(d / "PyNetBench.exe", [BENCH / "PyNetBench.cs", BENCH / "Measure.cs"],
            [str(d / "Python.Runtime.dll"), "Microsoft.CSharp", "System.Numerics", NETSTANDARD])
    except Broken as e:
        for k in names:
            skips[k] = f"PyNetBench.cs does not build against this pythonnet: {str(e)[:300]}"
        return
    print(f"running the pythonnet peer (Python.Runtime.dll in Mono, {lib.name})...", flush=True)
    out = run_checked(["mono", str(d / "PyNetBench.exe"), str(lib), str(BENCH), f"small={sz['pn_small']}",
                       f"big={sz['pn_big']}", f"n={sz['n']}"], "the pythonnet peer (PyNetBench.exe)", 600,
                      env=dict(os.environ, PYTHONPATH=site, PYTHONNOUSERSITE="1"), cwd=str(d))
    parse_lines(out, res, skips)
    res["pythonnet_libpython"] = {"value": str(lib)}


KG_NOTEBOOK_CELLS = [
    "import json, base64\nimport numpy as np",
    "# POST /add_ints\nreq = json.loads(REQUEST)\nprint(req['body']['a'] + req['body']['b'])",
    "# POST /inc\nreq = json.loads(REQUEST)\nb = req['body']\n"
    "a = np.frombuffer(base64.b64decode(b['data']), dtype=np.float32).reshape(b['shape'])\n"
    "print(base64.b64encode((a + 1).tobytes()).decode())",
]


def kernel_gateway_peer(tmp: Path, bench_py: Optional[Path], why: str, sz: Dict[str, int], procs: Procs,
                        res: Dict[str, Any], skips: Dict[str, str]) -> None:
    names = ("kg_add_ints", "kg_big")
    if bench_py is None or not has_module(bench_py, "kernel_gateway"):
        for k in names:
            skips[k] = why or f"jupyter_kernel_gateway is not importable in {BENCH_VENV.name}"
        return
    d = tmp / "kg"
    spec = d / "jupyter" / "kernels" / "kg-bench"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(bench_py), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "kg bench", "language": "python"}))
    nb = {"nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "kg-bench", "display_name": "kg bench", "language": "python"}},
          "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None, "outputs": [],
                     "source": src} for i, src in enumerate(KG_NOTEBOOK_CELLS)]}
    (d / "api.ipynb").write_text(json.dumps(nb))
    mcs(d / "KgBench.exe", [BENCH / "KgBench.cs", BENCH / "Measure.cs"], ["System.Net.Http"])
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, JUPYTER_PATH=str(d / "jupyter"), JUPYTER_DATA_DIR=str(d / "jupyter"),
               JUPYTER_RUNTIME_DIR=str(d / "runtime"), IPYTHONDIR=str(d / "ipython"))
    log = d / "kg.log"
    kg = procs.popen([str(bench_py), "-m", "kernel_gateway", "--KernelGatewayApp.api=kernel_gateway.notebook_http",
                      f"--KernelGatewayApp.seed_uri={d / 'api.ipynb'}", "--KernelGatewayApp.ip=127.0.0.1",
                      f"--KernelGatewayApp.port={port}"], log, env=env, cwd=str(d))
    try:
        wait_for(lambda: "is available at" in tail(log), kg, "Jupyter Kernel Gateway", log, timeout=90)
    except Broken as e:
        for k in names:
            skips[k] = f"Jupyter Kernel Gateway did not start: {str(e)[-300:]}"
        return
    print(f"running the Jupyter Kernel Gateway peer (HTTP from C#; {sz['kg_n']}² as base64 JSON takes ~30 s)...",
          flush=True)
    out = run_checked(["mono", str(d / "KgBench.exe"), f"http://127.0.0.1:{port}", f"small={sz['kg_small']}",
                       f"big={sz['kg_big']}", f"n={sz['kg_n']}", "timeout_s=150"],
                      "the Kernel Gateway peer (KgBench.exe)", 400, cwd=str(d))
    parse_lines(out, res, skips)
    stop(kg)


# ================================================================ rows: what the table, JSON and plot show

def m(res, k):
    return res[k]["median_us"] if k in res and "median_us" in res[k] else None


def v(res, k):
    return res[k]["value"] if k in res and "value" in res[k] else None


def total(*xs):
    return None if any(x is None for x in xs) else sum(xs)


def build_rows(res: Dict[str, Any], skips: Dict[str, str], sz: Dict[str, int]) -> List[Dict[str, Any]]:
    n = sz["n"]
    big = f"{n}²"
    rows: List[Dict[str, Any]] = []

    def row(section, key, label, floor_us=None, floor_label="", target="", met=None, **extra):
        r = {"section": section, "id": key, "label": label}
        if key in res and "median_us" in res[key]:
            r.update(res[key])
        if floor_us is not None:
            r["floor_us"] = floor_us
            r["floor"] = floor_label
            if r.get("median_us") is not None:
                r["ratio"] = r["median_us"] / floor_us
        elif floor_label:
            r["floor"] = floor_label
        if target:
            r["target"] = target
        if met is not None and r.get("median_us") is not None:
            r["target_met"] = bool(met(r))
        r.update(extra)
        if r.get("median_us") is None and r.get("value") is None:
            r["skip"] = skips.get(key, "not measured in this run")
        rows.append(r)
        return r

    # ---- floors
    row("floor", "floor_rtt_unix", "one-byte round trip, Unix socket, Mono<->Python")
    row("floor", "floor_rtt_tcp", "one-byte round trip, TCP loopback NODELAY, Mono<->Python")
    row("floor", "floor_spin", "round trip spinning on a shared word, Mono and Python pinned to 2 CPUs")
    row("floor", "floor_spin_unpinned", "the same, wherever the scheduler puts them (≤200 µs, then block)")
    row("floor", "floor_cs_copy_64MiB", "C# Buffer.MemoryCopy 64 MiB into a mapped view"
        if n == 4096 else f"C# Buffer.MemoryCopy {n}² float32 into a mapped view")
    row("floor", "floor_py_copy_64MiB", "numpy copy 64 MiB heap -> mapping" if n == 4096 else f"numpy copy {n}² float32")
    row("floor", "floor_py_add_map_to_map", f"np.add(a, 1, out=b), {big} float32, map -> map")
    row("floor", "floor_py_add_in_server", "the same inside the server, request -> response mapping, between the calls")
    row("floor", "floor_cs_copy_1MiB", "C# Buffer.MemoryCopy 1 MiB into a mapped view")
    row("floor", "floor_py_copy_1MiB", "numpy copy 1 MiB map -> map")
    row("floor", "floor_jupyter_msg", "Jupyter messaging: execute_request `noop()` -> execute_reply (jupyter_client)")
    row("floor", "floor_import_numpy", "python -c \"import numpy\" (process start to exit)")
    row("floor", "remote_echo_small", "websocket echo in Jupyter Server (tornado), small message, from C#'s RemoteLane")
    row("floor", "remote_frames_direct", "no-op straight to the session over the relay's Unix socket, from Python")
    row("floor", "remote_echo_big", f"the same echo carrying a {big} float32 call's bytes both ways")
    row("floor", "remote_frames_direct_big", f"{big} float32 `a + 1` straight to the session over that socket, from Python")

    spin, unix = m(res, "floor_spin"), m(res, "floor_rtt_unix")
    rt = spin if spin is not None else unix
    noop = m(res, "noop")
    # np.add's floor as measured inside the server next to the calls when it could be (the separate process at
    # the start of the run sees other conditions; its figure moves by a third from run to run)
    add = m(res, "floor_py_add_in_server") or m(res, "floor_py_add_map_to_map")
    big_floor = total(m(res, "floor_cs_copy_64MiB"), add, rt)
    big_label = "C# copy in + np.add map->map + spin round trip"

    # ---- lesspy
    row("lesspy", "noop", "no-op f(), headless", spin, "spin round trip", "≤ 8 µs median, p99 ≤ 50 µs",
        lambda r: r["median_us"] <= 8 and r["p99_us"] <= 50,
        ratio_unix=(noop / unix) if noop and unix else None)
    row("lesspy", "add_ints", "add_ints(2, 40), headless", noop, "the no-op call", "≤ 1.3× no-op",
        lambda r: r["ratio"] <= 1.3)
    row("lesspy", "pinned_noop", "no-op f(), headless, C# and Python pinned to 2 CPUs", spin,
        "spin round trip (pinned alike)", "≤ 8 µs median, p99 ≤ 50 µs",
        lambda r: r["median_us"] <= 8 and r["p99_us"] <= 50)
    row("lesspy", "pinned_add_ints", "add_ints(2, 40), pinned alike", m(res, "pinned_noop"), "the pinned no-op call",
        "≤ 1.3× no-op", lambda r: r["ratio"] <= 1.3)
    row("lesspy", "big_natural", f"{big} float32 `return a + 1`", big_floor, big_label, "≤ 1.3× floor",
        lambda r: r["ratio"] <= 1.3)
    row("lesspy", "big_result_array", f"{big} float32 +1 into result_array()", big_floor, big_label,
        "≤ 1.10× floor", lambda r: r["ratio"] <= 1.10)
    row("lesspy", "big_inplace", f"{big} float32 +1, C# fills the request in place", total(
        add, noop), "np.add map->map + lesspy no-op call", "≤ 1.25× floor",
        lambda r: r["ratio"] <= 1.25)
    row("lesspy", "echo_1MiB", "1 MiB float64 echo", total(m(res, "floor_cs_copy_1MiB"), m(res, "floor_py_copy_1MiB"), rt),
        "C# copy 1 MiB + numpy copy 1 MiB + spin round trip", "≤ 1.5× floor", lambda r: r["ratio"] <= 1.5)
    row("lesspy", "live_noop", "no-op into an idle live kernel (default mode)", m(res, "floor_jupyter_msg"),
        "Jupyter's messaging round trip", "median ≤ 150 µs, p99 ≤ 1 ms, ≤ 1/12 of Jupyter's",
        lambda r: r["median_us"] <= 150 and r["p99_us"] <= 1000 and r["ratio"] <= 1 / 12)
    row("lesspy", "connect_first_call", "Connect + first call, from a fresh process (LessPy.dll with its AOT image)",
        target="≤ 30 ms", met=lambda r: r["median_us"] <= 30000, warm_process_us=m(res, "connect_warm"))
    row("lesspy", "connect_first_call_jit", "the same, LessPy.dll compiled just in time (no LessPy.dll.so)",
        target="≤ 30 ms", met=lambda r: r["median_us"] <= 30000)
    row("lesspy", "cold_initialize", "cold Initialize to first result", m(res, "floor_import_numpy"),
        "python -c \"import numpy\"", "≤ 2.5× floor", lambda r: r["ratio"] <= 2.5)

    t1, t8 = v(res, "threads_1_calls_per_s"), v(res, "threads_8_calls_per_s")
    r = {"section": "lesspy", "id": "threads_8", "label": "8 C# threads on one proxy, aggregate add_ints/s",
         "target": "≥ 1× one thread's", "floor": "one thread's calls/s"}
    if t1 and t8:
        r.update(value=t8, unit="calls/s", floor_value=t1, ratio=t8 / t1, target_met=t8 >= t1)
    else:
        r["skip"] = skips.get("threads_8", "not measured in this run")
    rows.append(r)

    for side, who in (("cs", "C#"), ("py", "Python")):
        idle = v(res, f"idle_cpu_{side}")
        r = {"section": "lesspy", "id": f"idle_cpu_{side}",
             "label": f"idle CPU of the {who} process, {v(res, 'idle_seconds') or sz['idle']:.0f} s after calls stop",
             "target": "≤ 1% of a CPU"}
        if idle is not None:
            r.update(value=idle, unit="% of a CPU", target_met=idle <= 1.0)
        else:
            r["skip"] = skips.get(f"idle_cpu_{side}", "not measured in this run")
        rows.append(r)
    calls = int(v(res, "rss_calls") or sz["rss"])
    for side, who in (("cs", "C#"), ("py", "Python")):
        g = v(res, f"rss_growth_{side}")
        r = {"section": "lesspy", "id": f"rss_growth_{side}",
             "label": f"RSS growth of the {who} process over {calls:,} calls",
             "target": "≤ 5 MB per 1,000,000 calls (this run makes %s)" % f"{calls:,}"}
        if g is not None:
            r.update(value=g / 1024, unit="MiB", target_met=g / 1024 * (1_000_000 / calls) <= 5.0)
        else:
            r["skip"] = skips.get(f"rss_growth_{side}", "not measured in this run")
        rows.append(r)

    # ---- remote: by URL through Jupyter Server's relay to a headless session, the echo as floor
    rnoop, radd, rbig = m(res, "remote_noop"), m(res, "remote_add_ints"), m(res, "remote_big")
    how = ("handed to the session" if v(res, "remote_hand_off") else "through the relay")
    row("lesspy", "remote_noop", f"remote no-op f() by URL, websocket {how} (headless session)",
        m(res, "remote_echo_small"), "websocket echo, same server and client", "≤ 1.3× echo",
        lambda r: r["ratio"] <= 1.3)
    row("lesspy", "remote_add_ints", "remote add_ints(2, 40)", rnoop, "the remote no-op call")
    row("lesspy", "remote_big", f"remote {big} float32 `return a + 1`", m(res, "remote_echo_big"),
        "the same bytes both ways over the echo", "≤ 1.5× echo", lambda r: r["ratio"] <= 1.5)
    row("lesspy", "remote_connect_warm", "remote Connect by URL + first call (warm process)")
    row("lesspy", "remote_relayed_noop", "remote no-op, relayed (LessPyRelay.hand_off off, as for https)",
        m(res, "remote_relayed_echo_small"), "the echo beside it", "≤ 1.3× echo", lambda r: r["ratio"] <= 1.3)
    row("lesspy", "remote_relayed_big", f"remote {big} `return a + 1`, relayed alike", m(res, "remote_relayed_echo_big"),
        "the echo beside it", "≤ 1.5× echo", lambda r: r["ratio"] <= 1.5)

    # ---- peers
    la, lb = m(res, "add_ints"), m(res, "big_natural")
    row("peer", "pythonnet_add_ints", "pythonnet in Mono: add_ints(2, 40)", la, "lesspy add_ints")
    row("peer", "pythonnet_big", f"pythonnet in Mono: {big} +1, array copied in and out", lb,
        "lesspy `return a + 1`")
    row("peer", "jupyter_ws_kernel_info", "Jupyter Server kernel channels: kernel_info round trip from C#", rnoop,
        "lesspy remote no-op")
    kg_small = m(res, "kg_add_ints")
    row("peer", "kg_add_ints", "Jupyter Kernel Gateway notebook-http: add_ints from C#", la,
        "lesspy add_ints", ratio_remote=(kg_small / radd) if kg_small and radd else None)
    kg_n = sz["kg_n"]
    kg_big = m(res, "kg_big")
    row("peer", "kg_big", f"Jupyter Kernel Gateway: {kg_n}² float32 +1 as base64 JSON", lb if kg_n == n else None,
        "lesspy `return a + 1`" if kg_n == n else "",
        ratio_remote=(kg_big / rbig) if kg_big and rbig and kg_n == n else None)
    rows.append({"section": "peer", "id": "lpi_published", "label": "original LessPythonInvoke: 4096² +1 (QUOTED)",
                 "median_us": LPI_PUBLISHED_MS * 1000, "quoted": True, "floor": "lesspy `return a + 1`",
                 "floor_us": lb if n == 4096 else None,
                 "ratio": (LPI_PUBLISHED_MS * 1000 / lb) if (lb and n == 4096) else None,
                 "note": "published figure, measured on another machine; not measured in this run"})
    return rows


# ================================================================ output

def fmt_t(us: Optional[float]) -> str:
    if us is None:
        return "-"
    if us >= 1e6:
        return f"{us / 1e6:.2f} s"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.1f} µs"


def fmt_ratio(ratio: Optional[float], sign: str) -> str:
    if ratio is None:
        return ""
    return f"{ratio:.3f}{sign}" if ratio < 0.1 else f"{ratio:.2f}{sign}"


def fmt_value(r: Dict[str, Any]) -> str:
    unit = r.get("unit", "")
    val = r["value"]
    if unit == "calls/s":
        return f"{val:,.0f}/s"
    if unit == "MiB":
        return f"{val * 1024:+.0f} KiB" if abs(val) < 1 else f"{val:+.2f} MiB"
    if unit.startswith("%"):
        return f"{val:.2f}%"
    return f"{val} {unit}"


def table(rows: List[Dict[str, Any]]) -> List[str]:
    w = 66
    out = [f"{'case':<{w}} {'median':>10} {'p99':>10} {'floor / ref':>11} {'ratio':>7}  {'target':<26} met"]
    out.append("-" * (w + 76))
    titles = {"floor": "FLOORS (measured in this run)", "lesspy": "LESSPY (ratio = lesspy / floor)",
              "peer": "PEERS (ratio = peer / lesspy, same case)"}
    section = None
    for r in rows:
        if r["section"] != section:
            section = r["section"]
            out.append(titles[section])
        label = r["label"][:w]
        if "skip" in r:
            out.append(f"  {label:<{w - 2}} SKIPPED: {r['skip']}")
            continue
        if "value" in r:
            med, p99 = fmt_value(r), ""
            fl = f"{r['floor_value']:,.0f}/s" if "floor_value" in r else "-"
        else:
            med, p99 = fmt_t(r.get("median_us")), fmt_t(r.get("p99_us"))
            fl = fmt_t(r.get("floor_us"))
        ratio = fmt_ratio(r.get("ratio"), "x") or "-"
        met = {True: "yes", False: "NO"}.get(r.get("target_met"), "")
        out.append(f"  {label:<{w - 2}} {med:>10} {p99:>10} {fl:>11} {ratio:>7}  {r.get('target', ''):<26} {met}")
    return out


def remote_summary(rows: List[Dict[str, Any]], handed_off: bool) -> str:
    """One paragraph on the remote rows: their ratios to the echo (their floor), and what the relay adds over it
    where it relays."""
    r = {x["id"]: x for x in rows}

    def med(k):
        return r.get(k, {}).get("median_us")

    def measured(k):
        return r.get(k, {}).get("ratio") is not None

    def vs_echo(k: str) -> str:
        return f"{r[k]['ratio']:.2f}× the echo ({fmt_t(r[k]['median_us'])} vs {fmt_t(r[k]['floor_us'])})"

    if not measured("remote_noop"):
        return ""
    big = r["remote_big"]["label"].replace("remote ", "")
    direct, direct_big = med("remote_frames_direct"), med("remote_frames_direct_big")
    relayed, relayed_big = ("remote_relayed_noop", "remote_relayed_big") if handed_off else ("remote_noop", "remote_big")
    parts = []
    if handed_off:
        parts.append("Jupyter Server authenticates each websocket and hands its connection to the session, which "
                     f"answers on it itself: no-op {vs_echo('remote_noop')}")
        if measured("remote_big"):
            parts.append(f"{big} {vs_echo('remote_big')}")
    if measured(relayed):
        extra = r[relayed]["median_us"] - r[relayed]["floor_us"]
        parts.append(("relayed by Jupyter Server (https, or hand_off off): " if handed_off else "")
                     + f"no-op {vs_echo(relayed)}: the relay adds {fmt_t(extra)}, its Unix socket hop to the "
                     "session and the call" + (f" ({fmt_t(direct)} straight from Python)" if direct is not None else "")
                     + " and its own work per message")
    if measured(relayed_big):
        parts.append(f"{big}{', relayed,' if handed_off else ''} {vs_echo(relayed_big)}"
                     + (f"; the same call straight to the session over the relay's socket {fmt_t(direct_big)}"
                        if direct_big is not None else ""))
    peers = []
    ki = med("jupyter_ws_kernel_info")
    if ki is not None:
        peers.append(f"Jupyter Server's kernel channels (kernel_info) {fmt_t(ki)}, "
                     f"{ki / med('remote_noop'):.0f}× the remote no-op")
    for k, what in (("kg_add_ints", "add_ints"), ("kg_big", "`a + 1`")):
        if r.get(k, {}).get("ratio_remote"):
            peers.append(f"Kernel Gateway {what} {r[k]['ratio_remote']:.0f}× lesspy's remote {what}")
    return ("Remote, through Jupyter Server (loopback): " + "; ".join(parts) + "."
            + (" Next to it: " + "; ".join(peers) + "." if peers else ""))


def busy_warning(meta: Dict[str, Any]) -> str:
    """A warning when other work shared the machine (1-minute load average above half the cores)."""
    cores = meta["machine"]["cores"] or 1
    if meta["load_average_before"][0] <= cores / 2:
        return ""
    return (f"WARNING: the machine was busy with other work (1-minute load average {meta['load_average_before'][0]} "
            f"before, {meta['load_average_after'][0]} after, on {cores} cores): floors and calls alike are slower "
            f"and noisier than on a quiet machine; compare ratios, not times.")


def markdown(rows: List[Dict[str, Any]], meta: Dict[str, Any]) -> str:
    mono = meta["versions"]["mono"].replace("Mono JIT compiler version", "Mono").split(" (")[0]
    md = [f"Last run: {meta['date']} on {meta['machine']['cpu']}, {meta['machine']['cores']} cores "
          f"({meta['machine']['os']}); Python {meta['versions']['python']}, numpy {meta['versions']['numpy']}, "
          f"lesspy {meta['versions']['lesspy']}, {mono}"
          + (f", pythonnet {meta['versions']['pythonnet']}" if "pythonnet" in meta["versions"] else "")
          + (f", jupyter_kernel_gateway {meta['versions']['jupyter_kernel_gateway']}"
             if "jupyter_kernel_gateway" in meta["versions"] else "")
          + f". Run took {meta['seconds']:.0f} s{' (--quick)' if meta['quick'] else ''}; 1-minute load average "
          f"{meta['load_average_before'][0]} before, {meta['load_average_after'][0]} after.", ""]
    if meta.get("busy_warning"):
        md += [f"**{meta['busy_warning']}**", ""]
    md.append("| case | median | p99 | floor (or lesspy, for peers) | ratio | target | met |")
    md.append("|---|---|---|---|---|---|---|")
    names = {"floor": "**floor**", "lesspy": "**lesspy**", "peer": "**peer**"}
    for r in rows:
        label = r["label"].replace("|", "\\|")
        if "skip" in r:
            md.append(f"| {names[r['section']]} {label} | skipped: {r['skip']} | | | | | |")
            continue
        if "value" in r:
            med, p99 = fmt_value(r), ""
            fl = f"{r['floor_value']:,.0f}/s ({r['floor']})" if "floor_value" in r else ""
        else:
            med, p99 = fmt_t(r.get("median_us")), fmt_t(r.get("p99_us")) if "p99_us" in r else ""
            fl = f"{fmt_t(r['floor_us'])} ({r['floor']})" if r.get("floor_us") is not None else ""
        ratio = fmt_ratio(r.get("ratio"), "×")
        met = {True: "yes", False: "**no**"}.get(r.get("target_met"), "")
        md.append(f"| {names[r['section']]} {label} | {med} | {p99} | {fl} | {ratio} | {r.get('target', '')} | {met} |")
    summary = remote_summary(rows, bool(meta.get("remote_hand_off")))
    if summary:
        md += ["", summary]
    pl = meta.get("placement")
    if pl:
        md += ["", f"Scheduler placement during the small calls (share of 20 ms samples in which a busy thread was on "
                   f"each CPU): C# {pl.get('csharp')}, Python {pl.get('python')}; both running on the same CPU in "
                   f"{pl.get('same_cpu_fraction')} of {pl.get('samples_both_busy')} samples where both were busy."]
    return "\n".join(md)


def update_doc(text_md: str) -> None:
    if not PERF_DOC.exists():
        return
    doc = PERF_DOC.read_text()
    if MARK_BEGIN not in doc or MARK_END not in doc:
        print(f"note: {PERF_DOC} has no {MARK_BEGIN!r} section; figures not written there", file=sys.stderr)
        return
    head, rest = doc.split(MARK_BEGIN, 1)
    _, foot = rest.split(MARK_END, 1)
    PERF_DOC.write_text(head + MARK_BEGIN + "\n" + text_md + "\n" + MARK_END + foot)


def plot(bench_py: Optional[Path], json_path: Path, png: Path) -> str:
    py = next((p for p in (bench_py, Path(sys.executable)) if p is not None and has_module(p, "matplotlib")), None)
    if py is None:
        return f"no plot: matplotlib is importable neither in {BENCH_VENV.name} nor here"
    p = subprocess.run([str(py), str(BENCH / "plot.py"), str(json_path), str(png)], capture_output=True,
                       text=True, timeout=120)
    if p.returncode != 0:
        return f"plot failed: {p.stderr[-500:]}"
    return f"wrote {png.relative_to(ROOT) if png.is_relative_to(ROOT) else png}"


# ================================================================ main

def main(argv) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes and few repetitions (a smoke run, ~30 s)")
    ap.add_argument("--json", help="where to write the results (default benchmarks/results.json; "
                                   "--quick: a temporary file)")
    ap.add_argument("--no-docs", action="store_true", help="do not touch docs/PERFORMANCE.md or docs/benchmarks.png")
    ap.add_argument("--no-install", action="store_true", help=f"do not create {BENCH_VENV.name}: skip what needs it")
    ap.add_argument("--no-peers", action="store_true", help="skip pythonnet and the Kernel Gateway")
    ap.add_argument("--bin", help="folder with LessPy.dll (default csharp/bin, built by csharp/build.sh if stale)")
    args = ap.parse_args(argv)
    global BIN
    if args.bin:
        BIN = Path(args.bin).resolve()
    sz = sizes(args.quick)
    docs = not (args.no_docs or args.quick)
    t_start = time.monotonic()
    load_before = os.getloadavg()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    tmp = Path(tempfile.mkdtemp(prefix="lesspy-bench-"))
    json_path = Path(args.json) if args.json else (tmp.parent / "lesspy-bench-quick.json" if args.quick
                                                   else BENCH / "results.json")
    procs = Procs()
    res: Dict[str, Any] = {}
    skips: Dict[str, str] = {}
    try:
        exe = build_lesspy(tmp)
        bench_py, why = (None, "not run: --no-peers given") if args.no_peers else bench_venv(not args.no_install)

        print("measuring numpy floors...", flush=True)
        res.update(python_floors(tmp, sz["n"], sz["py_reps"]))
        headless(exe, tmp, sz, procs, res, skips)
        live_kernel(exe, tmp, sz, procs, res, skips)
        remote(tmp, sz, procs, res, skips)
        cold(exe, tmp, sz, res, skips)
        pythonnet_peer(tmp, bench_py, why, sz, res, skips)
        kernel_gateway_peer(tmp, bench_py, why, sz, procs, res, skips)

        rows = build_rows(res, skips, sz)
        meta = {"date": date, "machine": machine(), "versions": versions(bench_py), "quick": args.quick,
                "sizes": sz, "seconds": time.monotonic() - t_start, "placement": res.get("placement"),
                "remote_hand_off": v(res, "remote_hand_off"),
                "pythonnet_libpython": (res.get("pythonnet_libpython") or {}).get("value"),
                "load_average_before": [round(x, 2) for x in load_before],
                "load_average_after": [round(x, 2) for x in os.getloadavg()]}
        meta["busy_warning"] = busy_warning(meta)
        print()
        print(f"lesspy benchmarks, {date}: {meta['machine']['cpu']}, {meta['machine']['cores']} cores; "
              f"Python {meta['versions']['python']}, numpy {meta['versions']['numpy']}, "
              f"lesspy {meta['versions']['lesspy']}")
        print(f"{meta['versions']['mono']}; peers: " + (", ".join(
            f"{k} {meta['versions'][k]}" for k in ("pythonnet", "jupyter_kernel_gateway") if k in meta["versions"])
            or "none installed"))
        if meta["busy_warning"]:
            print(meta["busy_warning"])
        print()
        print("\n".join(table(rows)))
        summary = remote_summary(rows, bool(meta.get("remote_hand_off")))
        if summary:
            print("\n" + summary)
        pl = res.get("placement")
        if pl:
            print(f"\nscheduler placement during the small calls: C# {pl['csharp']}, Python {pl['python']}; "
                  f"on the same CPU in {pl['same_cpu_fraction']} of {pl['samples_both_busy']} 20 ms samples where both were busy")
        if args.quick:
            print("\n(--quick: tiny sizes, few repetitions; not figures to quote)")
        json_path.write_text(json.dumps({"meta": meta, "rows": rows, "raw": res, "skips": skips}, indent=1,
                                        default=str) + "\n")
        print(f"\nwrote {json_path}")
        if docs:
            update_doc(markdown(rows, meta))
            print(plot(bench_py, json_path, PLOT))
            print(f"updated {PERF_DOC.relative_to(ROOT)}")
        print(f"(total {time.monotonic() - t_start:.0f} s)")
        return 0
    except Broken as e:
        print(f"benchmark failed: {e}", file=sys.stderr)
        return 1
    finally:
        procs.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
