"""The C# client trusts only what is the user's own (issue 14 items 1, 3 and 4), with a real second user.

Another local user pre-creates an app's `lesspy_work/` in a shared sticky directory and serves its own module there;
the app's Initialize and Connect must refuse it, send nothing and create nothing in it. A symbolic link as the work
folder, a session.key of another user and a socket answered by another user's process are refused too. Long folder
paths are reached through /proc/self/fd (no TCP). Two apps with different modules in one folder: app B's Initialize
neither stops A's server while A uses it nor makes A call B's code, and A's proxy refuses a server of another module
after a reconnect.

Needs root (useradd, runuser, chown); skipped with that reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import compile_csharp, run_mono
from lesspy_kernel.workfolder import pid_alive
from servers import Headless, wait_for

ROOT = Path(__file__).resolve().parent.parent
CS = ROOT / "tests" / "csharp"
OTHER = "lesspy_other"
SECRET = "my password is hunter2"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ownership checks are tested on Linux")

MODULE = """
import os, time
LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "received.log")

def echo(s):
    with open(LOG, "a") as f:
        f.write(s + "\\n")
    return "{tag}:" + s

def slow_echo(s, seconds):
    time.sleep(seconds)
    return "{tag}:" + s
"""

# The other user's server, with its own peer check switched off: an attacker runs whatever code it likes, so only
# the victim's own checks protect the victim.
ATTACKER_SERVE = r"""
import runpy, sys
try:
    import lesspy_kernel.server as server
    server.peer_uid = lambda conn: None
except Exception:
    pass
sys.argv = ["lesspy_kernel"] + sys.argv[1:]
runpy.run_module("lesspy_kernel", run_name="__main__", alter_sys=True)
"""

# Another user's process answering on a socket: sends a hello as a server would, records how many bytes came.
FAKE_LISTENER = r"""
import os, socket, struct, sys
path, out = sys.argv[1], sys.argv[2]
if path == "tcp":
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
else:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
s.listen(4)
with open(out + ".ready", "w") as f:
    f.write(str(s.getsockname()[1]) if path == "tcp" else "")
c, _ = s.accept()
c.sendall(b"LSPY" + struct.pack("<HHQ", 2, 0, 7) + os.urandom(32))
c.settimeout(15)
got = b""
try:
    while True:
        d = c.recv(4096)
        if not d:
            break
        got += d
except OSError:
    pass
with open(out, "w") as f:
    f.write(str(len(got)))
"""


def _other_user() -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a second local user (useradd) and run as it (runuser)")
    if shutil.which("useradd") is None or shutil.which("runuser") is None:
        pytest.skip("useradd or runuser is not installed")
    if subprocess.run(["id", OTHER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER], check=True)
    return OTHER


def _uid(user: str) -> int:
    return int(subprocess.run(["id", "-u", user], capture_output=True, text=True, check=True).stdout)


def _python_for(user: str) -> list:
    """A command line (env ... python) the other user may run with lesspy_kernel and numpy importable: our
    interpreter, or the system's of the same version with this checkout and the venv's packages on PYTHONPATH (ours may
    live under root's private home)."""
    import sysconfig
    paths = os.pathsep.join([str(ROOT), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for candidate in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        command = ["env", f"PYTHONPATH={paths}", candidate]
        if Path(candidate).exists() and subprocess.run(
                ["runuser", "-u", user, "--", *command, "-c", "import lesspy_kernel.server, numpy"],
                capture_output=True, cwd="/").returncode == 0:
            return command
    pytest.skip(f"no Python interpreter with lesspy_kernel and numpy that {user} may run")


def _lines(proc) -> list:
    assert proc.returncode == 0, f"TrustClient exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return [l for l in proc.stdout.splitlines() if l.startswith(("RESULT ", "ERR ", "PID "))]


def _kill_folder_server(folder: Path) -> None:
    try:
        pid = int((folder / "python.pid").read_text())
    except (OSError, ValueError):
        return
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        try:
            wait_for(lambda: not pid_alive(pid), timeout=10, what="the server to stop")
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def trust_exe(csharp_bin) -> Path:
    return compile_csharp(csharp_bin, [CS / "TrustClient.cs"], "TrustClient.exe")


def _app_in(folder: Path, trust_exe: Path) -> Path:
    """TrustClient.exe and LessPy.dll in `folder`: its Initialize works in folder/lesspy_work."""
    shutil.copy(trust_exe.parent / "LessPy.dll", folder)
    shutil.copy(trust_exe, folder)
    return folder / "TrustClient.exe"


def _module(folder: Path, tag: str, owner: str = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"module_{tag.lower()}.py"
    path.write_text(MODULE.replace("{tag}", tag))
    if owner:
        shutil.chown(folder, owner)
        shutil.chown(path, owner)
    os.chmod(folder, 0o755)
    return path


@pytest.fixture
def attacker(trust_exe):
    """A sticky 1777 directory holding the victim's app, and the other user's lesspy_work/ beside it, served (its
    own module, python.module removed) by the other user."""
    user = _other_user()
    python = _python_for(user)
    shared = Path(tempfile.mkdtemp(prefix="lesspy-trust-"))
    os.chmod(shared, 0o1777)
    exe = _app_in(shared, trust_exe)
    home = shared / "attacker"
    module = _module(home, "ATTACKER", owner=user)
    work = shared / "lesspy_work"
    log = open(shared / "attacker.log", "wb")
    proc = subprocess.Popen(["runuser", "-u", user, "--", "env", f"HOME={home}", *python, "-c", ATTACKER_SERVE, "serve",
                             "--module", str(module), "--work-folder", str(work), "--keep-alive"],
                            cwd=str(home), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (work / "notify.port").exists() or proc.poll() is not None, timeout=30,
                 what="the other user's server")
        assert proc.poll() is None, (shared / "attacker.log").read_text()
        assert os.stat(work).st_uid == _uid(user)
        (work / "python.module").unlink()          # "TryReuse reuses a server even when python.module is missing"
        yield exe, work, home
    finally:
        _kill_folder_server(work)
        proc.kill()
        proc.wait()
        log.close()
        shutil.rmtree(shared, ignore_errors=True)


def _received(home: Path) -> str:
    try:
        return (home / "received.log").read_text()
    except FileNotFoundError:
        return ""


def test_initialize_refuses_a_work_folder_another_user_made_and_serves(attacker, tmp_path):
    exe, work, home = attacker
    before = sorted(os.listdir(work))
    victim = _module(tmp_path / "victim", "VICTIM")
    run = run_mono(exe, "init", sys.executable, victim, SECRET)
    lines = _lines(run)
    assert lines and lines[0].startswith("ERR UntrustedWorkFolderException"), run.stdout + run.stderr
    assert str(work) in lines[0] and f"uid {_uid(OTHER)}" in lines[0] and "not to you" in lines[0], lines[0]
    assert SECRET not in _received(home), "the other user's server got the victim's call"
    assert sorted(os.listdir(work)) == before, "Initialize created something in another user's folder (lesspy.lock?)"


def test_connect_refuses_a_work_folder_another_user_serves(attacker):
    exe, work, home = attacker
    before = sorted(os.listdir(work))
    run = run_mono(exe, "connect", work, SECRET)
    lines = _lines(run)
    assert lines and lines[0].startswith("ERR UntrustedWorkFolderException"), run.stdout + run.stderr
    assert str(work) in lines[0] and f"uid {_uid(OTHER)}" in lines[0], lines[0]
    # Connect(name): <runtime dir>/lesspy/NAME is the other user's folder
    runtime = work.parent / "runtime"
    runtime.mkdir()
    (runtime / "lesspy").symlink_to(work.parent)
    run = run_mono(exe, "connect", work.name, SECRET, env={"JUPYTER_RUNTIME_DIR": str(runtime)})
    lines = _lines(run)
    assert lines and lines[0].startswith("ERR UntrustedWorkFolderException"), run.stdout + run.stderr
    # lesspy/ itself is refused first now, being a link (test_trust_sessions.py tests the folder of sessions)
    assert f"uid {_uid(OTHER)}" in lines[0] or f"{runtime / 'lesspy'} is a symbolic link" in lines[0], lines[0]
    assert SECRET not in _received(home)
    assert sorted(os.listdir(work)) == before


def test_a_symlinked_work_folder_is_never_followed(trust_exe, tmp_path):
    user = _other_user()
    app = tmp_path / "app"
    app.mkdir()
    exe = _app_in(app, trust_exe)
    target = tmp_path / "theirs"
    target.mkdir()
    shutil.chown(target, user)
    os.chmod(target, 0o777)
    (app / "lesspy_work").symlink_to(target)
    victim = _module(tmp_path / "victim", "VICTIM")
    run = run_mono(exe, "init", sys.executable, victim, SECRET)
    lines = _lines(run)
    assert lines and lines[0].startswith("ERR UntrustedWorkFolderException") and "symbolic link" in lines[0], \
        run.stdout + run.stderr
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o777, "the link's target was chmod'ed"
    assert os.listdir(target) == [], "Initialize created files in the link's target"
    run = run_mono(exe, "connect", app / "lesspy_work", SECRET)
    lines = _lines(run)
    assert lines and lines[0].startswith("ERR UntrustedWorkFolderException") and "symbolic link" in lines[0], lines
    assert os.listdir(target) == []


def test_a_session_key_of_another_user_is_refused(trust_exe, tmp_path):
    user = _other_user()
    victim = _module(tmp_path / "victim", "VICTIM")
    with Headless(tmp_path / "work", victim, "--keep-alive") as server:
        key = server.folder / "session.key"
        os.chown(key, _uid(user), -1)
        run = run_mono(trust_exe, "connect", server.folder, SECRET)
        lines = _lines(run)
        assert lines and lines[0].startswith("ERR UntrustedWorkFolderException"), run.stdout + run.stderr
        assert str(key) in lines[0] and f"uid {_uid(user)}" in lines[0], lines[0]
        assert SECRET not in _received(victim.parent)
        os.chown(key, 0, -1)
        os.chmod(key, 0o644)
        lines = _lines(run_mono(trust_exe, "connect", server.folder, SECRET))
        assert lines[0].startswith("ERR UntrustedWorkFolderException") and "mode 0644" in lines[0], lines
        os.chmod(key, 0o600)
        lines = _lines(run_mono(trust_exe, "connect", server.folder, SECRET))
        assert lines[-1] == f"RESULT VICTIM:{SECRET}", lines


def test_a_socket_answered_by_another_user_gets_nothing(trust_exe, tmp_path):
    """SO_PEERCRED: our folder and files, but another user's process listens on notify.sock."""
    user = _other_user()
    python = _python_for(user)
    shared = Path(tempfile.mkdtemp(prefix="lesspy-peer-"))
    try:
        os.chmod(shared, 0o1777)
        theirs = shared / "theirs"
        theirs.mkdir()
        shutil.chown(theirs, user)
        ours = shared / "work"
        ours.mkdir(mode=0o700)
        out = theirs / "got"
        fake = subprocess.Popen(["runuser", "-u", user, "--", *python, "-c", FAKE_LISTENER, str(theirs / "notify.sock"),
                                 str(out)], cwd="/", stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: Path(str(out) + ".ready").exists() or fake.poll() is not None, what="the listener")
            assert fake.poll() is None, fake.stderr.read()
            os.rename(theirs / "notify.sock", ours / "notify.sock")     # still bound by the other user's process
            for name, text in (("python.pid", str(fake.pid)), ("notify.port", "unix"), ("session.key", "0" * 64)):
                fd = os.open(ours / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                os.write(fd, text.encode())
                os.close(fd)
            run = run_mono(trust_exe, "connect", ours, SECRET, timeout=60)
            lines = _lines(run)
            assert lines and lines[0].startswith("ERR UntrustedWorkFolderException"), run.stdout + run.stderr
            assert f"uid {_uid(user)}" in lines[0] and str(ours) in lines[0], lines[0]
            fake.wait(timeout=30)
            assert out.read_text() == "0", f"the other user's process received {out.read_text()} bytes"
        finally:
            fake.kill()
            fake.wait()
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_a_tcp_port_another_user_listens_on_gets_nothing(trust_exe, tmp_path):
    """notify.port (ours) names a TCP port (an older server, or one forced to TCP) that another user's process now
    holds: the client finds the listener's uid in /proc/net/tcp and refuses before sending anything."""
    user = _other_user()
    python = _python_for(user)
    theirs = Path(tempfile.mkdtemp(prefix="lesspy-tcp-"))
    try:
        shutil.chown(theirs, user)
        out = theirs / "got"
        fake = subprocess.Popen(["runuser", "-u", user, "--", *python, "-c", FAKE_LISTENER, "tcp", str(out)], cwd="/",
                                stderr=subprocess.PIPE, text=True)
        try:
            ready = Path(str(out) + ".ready")
            wait_for(lambda: (ready.exists() and ready.read_text()) or fake.poll() is not None, what="the listener")
            assert fake.poll() is None, fake.stderr.read()
            ours = tmp_path / "work"
            ours.mkdir(mode=0o700)
            files = (("python.pid", str(fake.pid)), ("notify.port", ready.read_text()), ("session.key", "0" * 64))
            for name, text in files:
                fd = os.open(ours / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                os.write(fd, text.encode())
                os.close(fd)
            run = run_mono(trust_exe, "connect", ours, SECRET, timeout=60)
            lines = _lines(run)
            assert lines and lines[0].startswith("ERR UntrustedWorkFolderException"), run.stdout + run.stderr
            assert f"uid {_uid(user)}" in lines[0] and "127.0.0.1:" in lines[0], lines[0]
            fake.wait(timeout=30)
            assert out.read_text() == "0", f"the other user's process received {out.read_text()} bytes"
        finally:
            fake.kill()
            fake.wait()
    finally:
        shutil.rmtree(theirs, ignore_errors=True)


def test_a_long_work_folder_path_is_reached_without_tcp(trust_exe, tmp_path):
    folder = tmp_path / ("d" * 60) / ("e" * 60) / "work"
    folder.parent.mkdir(parents=True)
    assert len(os.fsencode(folder / "notify.sock")) > 108
    victim = _module(tmp_path / "victim", "VICTIM")
    with Headless(folder, victim, "--keep-alive") as server:
        assert (folder / "notify.port").read_text().strip() == "unix"
        lines = _lines(run_mono(trust_exe, "connect", server.folder, SECRET))
        assert lines == [f"PID {server.pid}", f"RESULT VICTIM:{SECRET}"], lines


def test_app_b_neither_stops_app_a_nor_makes_it_call_b(trust_exe, tmp_path):
    """Two apps beside each other (one lesspy_work/) with different modules (issue 14 item 4)."""
    if os.geteuid() != 0:
        pytest.skip("runs with the other trust tests (root)")
    app = tmp_path / "apps"
    app.mkdir()
    exe = _app_in(app, trust_exe)
    module_a = _module(tmp_path / "a", "A")
    module_b = _module(tmp_path / "b", "B")
    work = app / "lesspy_work"
    env = dict(os.environ, MONO_PATH=str(app))
    a = subprocess.Popen(["mono", "--debug", str(exe), "appA", sys.executable, str(module_a)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    server_b = None
    try:
        lines = []
        for line in a.stdout:
            lines.append(line.strip())
            if line.strip() == "READY":
                break
        assert lines[-1] == "READY", lines + [a.stderr.read()]
        pid_a = int(lines[0].split()[1])
        # app B, while A's call runs: refused, A's server untouched
        b = _lines(run_mono(exe, "init", sys.executable, module_b, "from B"))
        assert b and b[0].startswith("ERR ServerUnavailableException") and "in use" in b[0] and str(module_a) in b[0], b
        assert pid_alive(pid_a)
        a.stdin.write("\n")
        a.stdin.flush()
        for line in a.stdout:
            lines.append(line.strip())
            if line.strip() == "READY2":
                break
        assert "RESULT A:slow" in lines and "RESULT A:again" in lines, lines
        # A's server goes, and a server of module B takes the folder: A's proxy must refuse it, not call B's code
        os.kill(pid_a, signal.SIGTERM)
        wait_for(lambda: not pid_alive(pid_a), timeout=15, what="A's server to stop")
        server_b = Headless(work, module_b, "--keep-alive")
        out, err = a.communicate("\n", timeout=60)
        after = [l for l in out.splitlines() if l.startswith(("RESULT", "ERR"))]
        assert after and after[-1].startswith("ERR ServerUnavailableException"), out + err
        assert str(module_a) in after[-1] and str(module_b) in after[-1], after[-1]
        assert "after" not in _received(module_b.parent), "A's proxy called B's code"
    finally:
        a.kill()
        a.wait()
        if server_b is not None:
            server_b.stop()
        _kill_folder_server(work)


def test_initialize_never_reuses_a_server_that_names_no_module(trust_exe, tmp_path):
    """Our own folder, our own live server, but no python.module (a notebook's %lesspy serve, or it was removed):
    Initialize neither calls it nor stops it, and says so."""
    app = tmp_path / "app"
    app.mkdir()
    exe = _app_in(app, trust_exe)
    module = _module(tmp_path / "m", "SOMEONE")
    with Headless(app / "lesspy_work", module, "--keep-alive") as server:
        (server.folder / "python.module").unlink()
        lines = _lines(run_mono(exe, "init", sys.executable, module, SECRET))
        assert lines and lines[0].startswith("ERR ServerUnavailableException") and "python.module" in lines[0] \
            and str(server.pid) in lines[0], lines
        assert SECRET not in _received(module.parent)
        assert server.proc.poll() is None, "Initialize stopped a server it could not identify"


@pytest.mark.stress
def test_app_b_initializing_again_and_again_never_disturbs_app_a(trust_exe, tmp_path):
    """App A calls without pause for 12 s while app B (another module, same folder) tries Initialize again and again:
    every try is refused as "in use", and A gets only its own results, without one error."""
    if os.geteuid() != 0:
        pytest.skip("runs with the other trust tests (root)")
    app = tmp_path / "apps"
    app.mkdir()
    exe = _app_in(app, trust_exe)
    module_a = _module(tmp_path / "a", "A")
    module_b = _module(tmp_path / "b", "B")
    env = dict(os.environ, MONO_PATH=str(app))
    a = subprocess.Popen(["mono", "--debug", str(exe), "loop", sys.executable, str(module_a), "12", "A"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert a.stdout.readline().startswith("PID ")
        assert a.stdout.readline().strip() == "READY"
        tries = 0
        deadline = time.monotonic() + 9
        while time.monotonic() < deadline:
            b = _lines(run_mono(exe, "init", sys.executable, module_b, "from B"))
            assert b and b[0].startswith("ERR ServerUnavailableException") and "in use" in b[0], b
            tries += 1
        out, err = a.communicate(timeout=60)
        loop = next(l for l in out.splitlines() if l.startswith("LOOP "))
        calls, wrong, errors = int(loop.split()[1]), int(loop.split()[3]), int(loop.split()[5])
        assert tries >= 3 and calls > 100 and wrong == 0 and errors == 0, (tries, loop, err[-2000:])
        assert "from B" not in _received(module_b.parent)
    finally:
        a.kill()
        a.wait()
        _kill_folder_server(app / "lesspy_work")


def test_owner_and_mode_checks_read_the_same_with_and_without_statx(tmp_path):
    """Posix.Status and LinkStatus (statx, and the __fxstat64/__lxstat64 fallback for a glibc before 2.28) agree with
    os.lstat on a folder, a file of another owner and mode, and a symbolic link."""
    exe = tmp_path / "TrustPosixCheck.exe"
    p = subprocess.run(["mcs", "-unsafe", "-optimize+", "-nologo", f"-out:{exe}",
                        *map(str, sorted((ROOT / "csharp" / "LessPy").glob("*.cs"))), str(CS / "TrustPosixCheck.cs")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    folder = tmp_path / "f"
    folder.mkdir(mode=0o700)
    file = folder / "session.key"
    file.write_bytes(b"x" * 1234)
    os.chmod(file, 0o640)
    if os.geteuid() == 0:
        os.chown(file, 4321, -1)
    link = tmp_path / "link"
    link.symlink_to(folder)
    out = run_mono(exe, folder, file, link)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    for how in ("statx", "old"):
        for path in (folder, file, link):
            st = os.lstat(path)
            expect = f"{how} link {st.st_mode:o} {st.st_uid} {st.st_size} {path}"
            assert expect in lines, (expect, lines)
        for path in (folder, file):
            st = os.stat(path)
            assert f"{how} fd {st.st_mode:o} {st.st_uid} {st.st_size} {path}" in lines, lines
        assert f"{how} fd - - - {link}" in lines, lines       # a link is never opened
