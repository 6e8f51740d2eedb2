"""Named sessions and the files around a work folder trust only what is the user's own (issue 14 follow-up).

- `<jupyter runtime dir>/lesspy/` (the folder of named sessions) is made 0700 and checked by the server, the Python
  CLI and the C# client: another user who owns it (or may write it) could rename, swap or hide the sessions in it.
- A session reached by its name must be that session: its server writes `session.name`, and a folder renamed into
  the name's place (another session of the same user's) is refused.
- A bare name is a session name first: a folder of that name that someone else made in a shared current directory
  never hides the session (`./NAME` names the folder; `lesspy_work` beside the app still works when no session
  has that name).
- `lesspy serve --log-file FILE` never writes into another user's file, a FIFO or through a link, and its rotation
  never writes into a `FILE.1` it did not make.

Real servers, real C# apps (Mono) and a real second user (`lesspy_other`); skipped with the reason when not root.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import compile_csharp, run_mono
from servers import Headless, wait_for

ROOT = Path(__file__).resolve().parent.parent
CS = ROOT / "tests" / "csharp"
OTHER = "lesspy_other"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ownership checks are tested on Linux")

MODULE = """
def whoami(s):
    return "{tag}:" + s

def add_ints(a: int, b: int) -> int:
    return a + b
"""


def _other_user() -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a second local user (useradd) and run as it (runuser)")
    if shutil.which("useradd") is None or shutil.which("runuser") is None:
        pytest.skip("useradd or runuser is not installed")
    if subprocess.run(["id", OTHER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER], check=True)
    return OTHER


def _as_other(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["runuser", "-u", OTHER, "--", *command], capture_output=True, text=True, cwd="/")
    if check:
        assert proc.returncode == 0, f"{command} as {OTHER}: {proc.stdout}{proc.stderr}"
    return proc


@pytest.fixture
def shared():
    """A sticky 1777 directory under /tmp, as /tmp itself: every user may create things in it."""
    _other_user()
    path = Path(tempfile.mkdtemp(prefix="lesspy-sessions-"))
    os.chmod(path, 0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def modules(tmp_path) -> dict:
    out = {}
    for tag in ("PROD", "SCRATCH", "WORK"):
        p = tmp_path / f"{tag.lower()}_module.py"
        p.write_text(MODULE.replace("{tag}", tag))
        out[tag] = p
    return out


@pytest.fixture(scope="module")
def app(csharp_bin) -> Path:
    return compile_csharp(csharp_bin, [CS / "TrustSessionsClient.cs"], "TrustSessionsClient.exe")


def _connect(app: Path, name: str, runtime: Path, cwd: Path = ROOT) -> str:
    """The app's one line: RESULT <whoami> or ERR <type>: <message>."""
    proc = run_mono(app, name, "x", env={"JUPYTER_RUNTIME_DIR": str(runtime)}, cwd=str(cwd), timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [l for l in proc.stdout.splitlines() if l.startswith(("RESULT ", "ERR "))]
    assert len(lines) == 1, proc.stdout + proc.stderr
    return lines[0]


def _lesspy(*args: str, runtime: Path, cwd: Path = ROOT, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lesspy_kernel", *args], capture_output=True, text=True,
                          cwd=str(cwd), timeout=timeout, env=dict(os.environ, JUPYTER_RUNTIME_DIR=str(runtime)))


def _serve(folder: Path, module: Path, monkeypatch, runtime: Path) -> Headless:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    return Headless(folder, module)


# ------------------------------------------------------------------------------------ the folder of named sessions


def test_session_parent_of_another_user_is_refused(shared, modules, app, monkeypatch):
    """p2: the other user owns <runtime>/lesspy/ (0777) and swaps the victim's sessions prod and scratch: the
    victim's Connect("prod") must not reach scratch, `lesspy status prod` must not answer for it, and no server
    starts in such a folder. (Before: Connect("prod") called SCRATCH's code.)"""
    runtime = shared
    sessions = runtime / "lesspy"
    os.mkdir(sessions, 0o700)
    # the victim's sessions, served while lesspy/ was the victim's; then lesspy/ is the other user's, 0777 (as when
    # the other user pre-created it for a version of lesspy that did not check it)
    with _serve(sessions / "prod", modules["PROD"], monkeypatch, runtime) as prod, \
            _serve(sessions / "scratch", modules["SCRATCH"], monkeypatch, runtime):
        assert _connect(app, "prod", runtime) == "RESULT PROD:x"
        shutil.chown(sessions, OTHER, OTHER)
        os.chmod(sessions, 0o777)
        _as_other("bash", "-c", f"cd {sessions} && mv prod tmp && mv scratch prod && mv tmp scratch")

        line = _connect(app, "prod", runtime)
        assert line.startswith("ERR UntrustedWorkFolderException: the folder of named sessions"), line
        assert f"belongs to uid {_uid(OTHER)} ({OTHER})" in line and "SCRATCH" not in line, line
        status = _lesspy("status", "prod", runtime=runtime)
        assert status.returncode != 0 and "folder of named sessions" in status.stderr, status.stdout + status.stderr
        assert prod.proc.poll() is None

    # a new server refuses such a folder (by --work-folder path as well)
    served = _lesspy("serve", "--module", str(modules["PROD"]), "--work-folder", str(sessions / "new"),
                     runtime=runtime)
    assert served.returncode == 2, served.stdout + served.stderr
    assert "folder of named sessions" in served.stderr and "belongs to" in served.stderr, served.stderr
    assert not (sessions / "new").exists()


def test_session_parent_writable_by_others_is_refused(shared, modules, app, monkeypatch):
    """Ours but 0777 (anyone may rename in it): refused by the server and the client alike."""
    runtime = shared
    sessions = runtime / "lesspy"
    os.mkdir(sessions, 0o700)
    with _serve(sessions / "prod", modules["PROD"], monkeypatch, runtime):
        os.chmod(sessions, 0o777)
        line = _connect(app, "prod", runtime)
        assert line.startswith("ERR UntrustedWorkFolderException: the folder of named sessions"), line
        assert "has mode 0777" in line and "chmod 700" in line, line
        status = _lesspy("status", "prod", runtime=runtime)
        assert status.returncode != 0 and "writable by other users" in status.stderr, status.stderr
        os.chmod(sessions, 0o700)
        assert _connect(app, "prod", runtime) == "RESULT PROD:x"
    os.chmod(sessions, 0o777)
    served = _lesspy("serve", "--module", str(modules["PROD"]), "--work-folder", str(sessions / "new"),
                     runtime=runtime)
    assert served.returncode == 2 and "writable by other users" in served.stderr, served.stdout + served.stderr


def test_session_parent_is_made_private(shared, modules, monkeypatch):
    """p5: a server that makes <runtime>/ and lesspy/ makes them 0700 (the other user cannot list the session
    names); a lesspy/ of ours that others may list (0755, as older versions made it) is made 0700."""
    runtime = shared / "data" / "runtime"
    folder = runtime / "lesspy" / "payroll_q3_layoffs"
    proc = subprocess.Popen([sys.executable, "-m", "lesspy_kernel", "serve", "--module", str(modules["PROD"]),
                             "--work-folder", str(folder)], cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=dict(os.environ, JUPYTER_RUNTIME_DIR=str(runtime)))
    try:
        wait_for(lambda: (folder / "notify.port").exists() or proc.poll() is not None, what="the server")
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        for p in (runtime, runtime / "lesspy", folder):
            assert stat.S_IMODE(os.stat(p).st_mode) == 0o700, (p, oct(os.stat(p).st_mode))
        assert (folder / "session.name").read_text() == "payroll_q3_layoffs"
        listing = _as_other("ls", str(runtime / "lesspy"), check=False)
        assert listing.returncode != 0 and "payroll" not in listing.stdout, listing.stdout
    finally:
        proc.terminate()
        proc.wait(10)

    os.chmod(runtime / "lesspy", 0o755)
    with _serve(runtime / "lesspy" / "other", modules["SCRATCH"], monkeypatch, runtime):
        assert stat.S_IMODE(os.stat(runtime / "lesspy").st_mode) == 0o700


def test_session_renamed_into_the_name_is_refused(tmp_path, modules, app, monkeypatch):
    """The user's own two sessions swapped (lesspy/ private, a rename by the same user): Connect("prod") and
    `lesspy status prod` must not answer for scratch; session.name says which session a folder holds."""
    _other_user()
    runtime = tmp_path / "runtime"
    sessions = runtime / "lesspy"
    os.makedirs(sessions, 0o700)
    with _serve(sessions / "prod", modules["PROD"], monkeypatch, runtime), \
            _serve(sessions / "scratch", modules["SCRATCH"], monkeypatch, runtime):
        assert (sessions / "prod" / "session.name").read_text() == "prod"
        assert stat.S_IMODE(os.stat(sessions / "prod" / "session.name").st_mode) == 0o600
        assert _connect(app, "prod", runtime) == "RESULT PROD:x"
        os.rename(sessions / "prod", sessions / "tmp")
        os.rename(sessions / "scratch", sessions / "prod")
        os.rename(sessions / "tmp", sessions / "scratch")
        for name, held in (("prod", "scratch"), ("scratch", "prod")):
            line = _connect(app, name, runtime)
            assert line.startswith("ERR UntrustedWorkFolderException:"), line
            assert f"holds the session '{held}', not '{name}'" in line, line
            status = _lesspy("status", name, runtime=runtime)
            assert status.returncode != 0 and f"holds the session '{held}', not '{name}'" in status.stderr, \
                status.stdout + status.stderr
        # the folder path itself (not the name) reaches the same check: it is a session's folder
        line = _connect(app, str(sessions / "prod"), runtime)
        assert "holds the session 'scratch'" in line, line


# ------------------------------------------------------------------------------------ a bare name vs ./NAME


def test_bare_name_is_the_session_before_a_folder_in_the_current_directory(shared, tmp_path, modules, app,
                                                                            monkeypatch):
    """p8: the other user makes /shared/prod; the victim's Connect("prod") from /shared still reaches the session
    (before: it took ./prod, another user's folder, and failed). ./prod names that folder (refused); a bare name
    with no session of that name is still a folder of the current directory (Connect("lesspy_work"))."""
    runtime = tmp_path / "runtime"
    os.makedirs(runtime / "lesspy", 0o700)
    _as_other("mkdir", "-m", "700", str(shared / "prod"))
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    with _serve(runtime / "lesspy" / "prod", modules["PROD"], monkeypatch, runtime), \
            _serve(app_dir / "lesspy_work", modules["WORK"], monkeypatch, runtime):
        assert _connect(app, "prod", runtime, cwd=shared) == "RESULT PROD:x"
        status = _lesspy("status", "prod", runtime=runtime, cwd=shared)
        assert status.returncode == 0 and str(runtime / "lesspy" / "prod") in status.stdout, \
            status.stdout + status.stderr
        line = _connect(app, "./prod", runtime, cwd=shared)
        assert line.startswith("ERR UntrustedWorkFolderException:") and f"{shared}/prod belongs to" in line, line
        # the documented `lesspy serve --work-folder lesspy_work` + Connect("lesspy_work")
        assert _connect(app, "lesspy_work", runtime, cwd=app_dir) == "RESULT WORK:x"
        status = _lesspy("status", "lesspy_work", runtime=runtime, cwd=app_dir)
        assert status.returncode == 0, status.stdout + status.stderr
        # neither a session nor a folder: the message says what was tried
        line = _connect(app, "nosuch", runtime, cwd=shared)
        assert line.startswith("ERR ServerUnavailableException:") and str(runtime / "lesspy" / "nosuch") in line \
            and "./nosuch" in line, line
        status = _lesspy("status", "nosuch", runtime=runtime, cwd=shared)
        assert status.returncode != 0 and "./NAME" in status.stderr, status.stderr


# ------------------------------------------------------------------------------------ --log-file


def _serve_log(folder: Path, module: Path, log: Path, *flags: str, timeout: float = 20) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lesspy_kernel", "serve", "--module", str(module), "--work-folder",
                             str(folder), "--log-file", str(log), *flags], cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("kind", ["other_users_file", "fifo", "symlink"])
def test_log_file_not_ours_is_refused(shared, tmp_path, modules, kind):
    """p6: a --log-file another user pre-created (0666, to read the log), a FIFO (which blocked the start) or a
    link is refused before anything is served, with a message; nothing is written into it."""
    log = shared / "srv.log"
    if kind == "other_users_file":
        _as_other("bash", "-c", f"umask 0; touch {log}; chmod 666 {log}")
        why = "belongs to uid"
    elif kind == "fifo":
        os.mkfifo(log, 0o600)
        why = "not a regular file"
    else:
        target = tmp_path / "target.log"
        target.write_text("")
        os.symlink(target, log)
        why = "symbolic link"
    folder = tmp_path / "wf"
    proc = _serve_log(folder, modules["PROD"], log)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"serve --log-file on a {kind} did not exit (blocked?)")
    assert proc.returncode == 2, out + err
    assert f"--log-file {log}" in err and why in err, err
    assert not (folder / "notify.port").exists()
    if kind == "other_users_file":
        assert log.stat().st_size == 0
    if kind == "symlink":
        assert (tmp_path / "target.log").read_text() == ""


def test_log_file_of_ours_is_made_private_and_rotation_never_writes_a_foreign_backup(shared, tmp_path, modules):
    """Our own 0644 log is made 0600 and used; FILE.1 pre-created by the other user (0666) is never opened for
    writing (before: O_TRUNC and the log's end written into it), and the log stays capped all the same."""
    from lesspy_kernel.client import ClientLane, RemoteError
    from lesspy_kernel.wire import Tag

    log = shared / "srv.log"
    log.write_text("")
    os.chmod(log, 0o644)
    backup = shared / "srv.log.1"
    _as_other("bash", "-c", f"umask 0; printf theirs > {backup}; chmod 666 {backup}")
    folder = tmp_path / "wf"
    proc = _serve_log(folder, modules["PROD"], log, "--log-max-bytes", "2000")
    try:
        wait_for(lambda: (folder / "notify.port").exists() or proc.poll() is not None, what="the server")
        assert proc.poll() is None, proc.communicate()[1]
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
        lane = ClientLane(folder)
        try:
            deadline = time.monotonic() + 20
            rotated = False
            while time.monotonic() < deadline and not rotated:
                for i in range(20):
                    try:
                        lane.call("add_ints", Tag.INT32, [f"secret-token-{i}", 1])
                    except RemoteError:
                        pass
                time.sleep(0.3)
                rotated = "its end was dropped" in log.read_text(errors="replace")
        finally:
            lane.close()
        assert rotated, log.read_text(errors="replace")[-2000:]
        assert backup.read_text() == "theirs" and os.stat(backup).st_uid != 0
        assert log.stat().st_size < 20000
    finally:
        proc.terminate()
        proc.wait(10)


def _uid(user: str) -> int:
    return int(subprocess.run(["id", "-u", user], capture_output=True, text=True, check=True).stdout)


def test_log_file_in_the_work_folder(shared, tmp_path, modules):
    """Initialize's --log-file FOLDER/server.log is opened through the checked folder once it is open: a FIFO there
    stops the start with a message and the files the server published are removed (before: the start blocked);
    another user's folder is refused without a log file made in it."""
    folder = tmp_path / "wf"
    folder.mkdir(mode=0o700)
    os.mkfifo(folder / "server.log", 0o600)
    proc = _serve_log(folder, modules["PROD"], folder / "server.log")
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("serve --log-file FOLDER/server.log (a FIFO) did not exit (blocked?)")
    assert proc.returncode == 2 and f"--log-file {folder / 'server.log'}" in err and "not a regular file" in err, \
        out + err
    assert not (folder / "notify.port").exists() and not (folder / "session.key").exists(), os.listdir(folder)

    theirs = shared / "theirs"
    _as_other("mkdir", "-m", "777", str(theirs))
    proc = _serve_log(theirs, modules["PROD"], theirs / "server.log")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "belongs to" in err, out + err
    assert os.listdir(theirs) == []
