"""Issue 14, security items 2, 3 and 4, server side (docs/SECURITY.md): another local user can neither reach,
plant, redirect nor crowd out a server; a stop request never stops a server other clients use.

The second-user tests need root (useradd, runuser, setpriv) and are skipped with that reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from lesspy_kernel import client
from lesspy_kernel.client import ClientLane
from lesspy_kernel.transport.handshake import HandshakeError
from lesspy_kernel.wire.handshake import Result
from lesspy_kernel.wire import Tag
from lesspy_kernel.workfolder import FORCE_TCP_ENV, MAX_SOCKET_PATH
from servers import ROOT, Headless, wait_for
from test_other_user import _other_user, _python_for

LANES_MODULE = ROOT / "tests" / "pymodules" / "lanes_module.py"
I = Tag.INT32


def _long_folder(base: Path, length: int = 150) -> Path:
    folder = base / ("d" * 60) / ("x" * max(1, length - len(str(base)) - 62))
    assert len(os.fsencode(folder / "notify.sock")) > MAX_SOCKET_PATH + 20
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(folder.parent, 0o755)
    return folder


def _open_dir(mode: int = 0o755) -> Path:
    """A temporary folder other users can enter (pytest's tmp_path lives under a 0700 folder)."""
    base = Path(tempfile.mkdtemp(prefix="lesspy-trust-"))
    os.chmod(base, mode)
    return base


def _as(user: str, *cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", user, "--", *cmd], capture_output=True, text=True, timeout=60, **kw)


def _serve(folder: Path, *flags: str, env=None) -> subprocess.CompletedProcess:
    """`lesspy serve` that is expected to refuse (it exits at once)."""
    return subprocess.run([sys.executable, "-m", "lesspy_kernel", "serve", "--module", str(LANES_MODULE),
                           "--work-folder", str(folder), *flags], capture_output=True, text=True, timeout=60,
                          cwd=str(ROOT), env=env)


def _snapshot(folder: Path):
    """Every entry's name, mode, owner, size and content (what an attacker left), to check nothing changed."""
    out = {}
    for p in sorted(folder.iterdir()):
        st = p.lstat()
        out[p.name] = (stat.filemode(st.st_mode), st.st_uid, st.st_size,
                       p.read_bytes() if stat.S_ISREG(st.st_mode) else None)
    return out, stat.filemode(folder.lstat().st_mode)


# ------------------------------------------------------------------ item 2: long paths stay on a private socket


def test_a_long_folder_is_served_on_its_private_unix_socket_not_tcp(tmp_path):
    folder = _long_folder(tmp_path)
    with Headless(folder, LANES_MODULE, "--keep-alive") as s:
        assert (folder / "notify.port").read_text() == "unix"
        sock = folder / "notify.sock"
        assert stat.S_ISSOCK(sock.lstat().st_mode) and stat.S_IMODE(sock.lstat().st_mode) == 0o600
        with socket.socket(socket.AF_UNIX) as plain, pytest.raises(OSError):
            plain.connect(str(sock))                   # too long for a socket address: only the /proc way works
        with ClientLane(s.folder) as lane:
            assert lane.call("add_ints", I, [2, 40], [I, I]) == 42
        wait_for(lambda: client.status(folder)["lanes"] == 0, timeout=5, what="the lane to close")
        assert "TCP" not in s.output()
        for name in ("session.key", "python.pid", "python.module", "notify.port", "lesspy.lock"):
            assert stat.S_IMODE((folder / name).lstat().st_mode) == 0o600, name


FLOOD_UNIX = r"""
import os, socket, sys, time
folder, pid, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ok = denied = 0
held = []
end = time.time() + seconds
def attempt(address):
    global ok, denied
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(address)
        held.append(s)
        ok += 1
    except OSError:
        denied += 1
        s.close()
while time.time() < end:
    attempt(folder + "/notify.sock")                         # too long, and behind 0700 anyway
    try:                                                     # the folder's own O_PATH handle (the parent is open)
        fd = os.open(folder, os.O_PATH | os.O_DIRECTORY)
    except OSError:
        denied += 1
    else:
        attempt(f"/proc/self/fd/{fd}/notify.sock")
        os.close(fd)
    try:                                                     # the server's handle on its folder
        for fd in os.listdir(f"/proc/{pid}/fd"):
            attempt(f"/proc/{pid}/fd/{fd}/notify.sock")
    except OSError:
        denied += 1
    for name in ("session.key", "notify.port", "lane-1.req.mmf"):
        try:
            open(folder + "/" + name, "rb").read()
            ok += 1
        except OSError:
            denied += 1
print(ok, denied)
"""


def test_another_user_flooding_a_long_folder_cannot_connect_and_every_owner_lane_opens():
    user = _other_user()
    python = _python_for(user)
    base = _open_dir()
    try:
        folder = _long_folder(base)                  # its parents are open: only the work folder protects it
        with Headless(folder, LANES_MODULE, "--keep-alive") as s:
            assert (folder / "notify.port").read_text() == "unix"
            attack = subprocess.Popen(["runuser", "-u", user, "--", python, "-c", FLOOD_UNIX, str(folder),
                                       str(s.pid), "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(0.5)
            opened = 0
            t0 = time.monotonic()
            for i in range(20):
                with ClientLane(s.folder) as lane:
                    assert lane.call("add_ints", I, [i, 1], [I, I]) == i + 1
                    opened += 1
            assert opened == 20 and time.monotonic() - t0 < 10
            out, err = attack.communicate(timeout=30)
            assert attack.returncode == 0, err
            ok, denied = map(int, out.split())
            assert ok == 0 and denied > 0, f"the other user got in {ok} times"
    finally:
        shutil.rmtree(base, ignore_errors=True)


FLOOD_TCP = r"""
import collections, socket, sys, time
port, seconds, cap = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
held = collections.deque()
made = failed = 0
end = time.time() + seconds
while time.time() < end:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    except OSError:
        failed += 1
        s.close()
        continue
    held.append(s)                      # never answers the hello, as an attacker without the key
    made += 1
    if len(held) > cap:
        held.popleft().close()
print(made, failed)
"""


def _tcp_flood_owner_lanes(folder: Path, user: str, python: str, lanes: int = 20, attackers: int = 2,
                           seconds: float = 6):
    """Serve `folder` on TCP (the test-only switch), flood its port from `user` for `seconds`, open lanes as the
    owner one after the other while the flood lasts (at least `lanes`); returns (lane openings that worked,
    openings tried during the flood, errors, connections the flood made, refusals the server counted)."""
    os.environ[FORCE_TCP_ENV] = "1"            # inherited by the server process only while it starts
    try:
        s = Headless(folder, LANES_MODULE, "--keep-alive")
    finally:
        del os.environ[FORCE_TCP_ENV]
    with s:
        port = (folder / "notify.port").read_text()
        assert port.isdigit(), "the test-only switch did not give TCP"
        floods = [subprocess.Popen(["runuser", "-u", user, "--", python, "-c", FLOOD_TCP, port, str(seconds), "800"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for _ in range(attackers)]
        time.sleep(1.0)                          # the flood is in full swing
        opened, during, errors = 0, 0, []
        i = 0
        while i < lanes or all(f.poll() is None for f in floods):
            i += 1
            if all(f.poll() is None for f in floods):
                during += 1
            try:
                with ClientLane(folder) as lane:
                    assert lane.call("add_ints", I, [i, 1], [I, I]) == i + 1
                    opened += 1
            except (OSError, HandshakeError) as e:
                errors.append(f"{type(e).__name__}: {e}")
        made = 0
        for f in floods:
            out, err = f.communicate(timeout=60)
            assert f.returncode == 0, err
            made += int(out.split()[0])
        refused = client.status(folder)["refused"]
        return opened, i, during, errors, made, refused


def test_on_tcp_a_flood_of_unanswered_handshakes_from_another_user_does_not_crowd_out_the_owner():
    """TCP is only for Windows; the test-only switch (LESSPY_TEST_FORCE_TCP) serves TCP here so the defence
    can be tested: answers are read before new connections, and the longest-waiting connection goes first."""
    user = _other_user()
    python = _python_for(user)
    base = _open_dir()
    try:
        opened, tried, during, errors, made, refused = _tcp_flood_owner_lanes(_long_folder(base), user, python)
        assert made > 1000, f"the flood made only {made} connections"
        assert opened == tried, f"{tried - opened} of {tried} lane openings failed under the flood: {errors[:3]}"
        assert during >= 3, f"only {during} lane openings were tried while the flood lasted"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.stress
def test_on_tcp_a_longer_heavier_flood_does_not_crowd_out_the_owner():
    user = _other_user()
    python = _python_for(user)
    base = _open_dir()
    try:
        opened, tried, during, errors, _, _ = _tcp_flood_owner_lanes(_long_folder(base), user, python, lanes=100,
                                                                     attackers=4, seconds=30)
        assert opened == tried, f"{tried - opened} of {tried} lane openings failed: {errors[:3]}"
        assert during >= 30, f"only {during} lane openings were tried while the flood lasted"
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------ item 3: symlinks, foreign folders and files


def test_a_symlinked_work_folder_is_refused_and_its_target_left_alone(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    os.chmod(target, 0o755)
    (tmp_path / "work").symlink_to(target)
    r = _serve(tmp_path / "work")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "symbolic link" in r.stderr and "never follows" in r.stderr, r.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o755 and not list(target.iterdir())


def test_a_work_folder_open_to_others_is_refused_by_a_client(tmp_path):
    with Headless(tmp_path / "w", LANES_MODULE, "--keep-alive") as s:
        os.chmod(s.folder, 0o755)
        with pytest.raises(PermissionError, match="open to other users"):
            ClientLane(s.folder)
        os.chmod(s.folder, 0o700)
        (s.folder / "notify.port").chmod(0o644)
        with pytest.raises(PermissionError, match="notify.port is open to other users"):
            client.status(s.folder)


def test_another_users_symlinks_are_never_followed_nor_their_targets_touched():
    """The other user plants `work` (where the owner's app will serve) as a symlink: to a folder of the owner's
    (the server would chmod it 0700 for good and fill it) or to a folder of theirs with world-readable files
    waiting. Both are refused as symlinks, and neither target changes."""
    user = _other_user()
    base = _open_dir(0o777)                     # not sticky: the kernel follows another user's symlink here
    try:
        mine = base / "mine"                    # the owner's, e.g. a project folder
        mine.mkdir()
        os.chmod(mine, 0o755)
        (mine / "data.txt").write_text("the owner's")
        theirs = base / "theirs"
        assert _as(user, "mkdir", "-m", "777", str(theirs)).returncode == 0
        for name in ("session.key", "lane-1.req.mmf", "lane-1.resp.mmf"):
            assert _as(user, "sh", "-c", f"umask 0; printf attacker > {theirs / name}").returncode == 0
        for link, target in (("work", mine), ("work2", theirs)):
            assert _as(user, "ln", "-s", str(target), str(base / link)).returncode == 0
            before = _snapshot(target)
            r = _serve(base / link)
            assert r.returncode == 2 and "symbolic link" in r.stderr, r.stdout + r.stderr
            assert _snapshot(target) == before, f"the server touched {target}"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_folder_another_user_made_in_a_sticky_dir_is_refused_and_left_alone():
    user = _other_user()
    base = _open_dir(0o1777)                    # like /tmp
    try:
        theirs = base / "lesspy_work"
        assert _as(user, "mkdir", "-m", "777", str(theirs)).returncode == 0
        for name in ("session.key", "python.pid", "notify.port", "lane-1.req.mmf"):   # no lesspy.lock yet
            assert _as(user, "sh", "-c", f"umask 0; printf 1 > {theirs / name}").returncode == 0
        before = _snapshot(theirs)
        r = _serve(theirs)
        assert r.returncode == 2, r.stdout + r.stderr
        assert _snapshot(theirs) == before, "the server touched the other user's folder"
        assert f"belongs to uid {_uid(user)} ({user}), not to you" in r.stderr, r.stderr
        # the Python client (status, stop, lanes) refuses it the same way, before reading anything
        with pytest.raises(PermissionError, match="belongs to uid"):
            client.status(theirs)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


def test_swapping_a_running_servers_folder_for_another_users_never_sends_it_a_byte():
    """The other user renames the server's folder away (its parent is world-writable, not sticky) and puts a
    symlink to a folder of theirs, with world-readable lane files waiting, in its place. The server goes on
    using its real folder (it holds it open): new lanes are created there, and the other user's files stay as
    they were."""
    user = _other_user()
    base = _open_dir(0o777)
    try:
        folder = base / "work"
        with Headless(folder, LANES_MODULE, "--keep-alive") as s:
            with ClientLane(folder) as lane:
                assert lane.call("add_ints", I, [1, 2], [I, I]) == 3
            theirs = base / "theirs"
            assert _as(user, "mkdir", "-m", "777", str(theirs)).returncode == 0
            for n in range(1, 8):
                for which in ("req", "resp"):
                    assert _as(user, "sh", "-c", f"umask 0; : > {theirs}/lane-{n}.{which}.mmf").returncode == 0
            r = _as(user, "sh", "-c", f"mv {folder} {base}/moved && ln -s {theirs} {folder}")
            assert r.returncode == 0, r.stderr
            before = _snapshot(theirs)
            moved = base / "moved"
            secret = b"my password is hunter2"
            for _ in range(3):
                with ClientLane(moved) as lane:
                    assert lane.call("echo_bytes", Tag.BYTES, [secret], [Tag.BYTES]) == secret
                    assert (moved / f"lane-{lane.id}.req.mmf").exists()
            assert _snapshot(theirs) == before, "the server wrote into the other user's folder"
            with pytest.raises(PermissionError, match="symbolic link"):
                ClientLane(folder)                           # and a client refuses the swapped path
            assert s.proc.poll() is None
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------ SO_PEERCRED


PEER = r"""
import hashlib, hmac, socket, struct, sys
folder = sys.argv[1]
key = open(folder + "/session.key").read().strip().encode()         # it can read everything (CAP_DAC_OVERRIDE)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(folder + "/notify.sock")
try:
    hello = s.recv(48)
except OSError as e:
    hello = b""
if len(hello) < 48:
    print("closed", len(hello))
    sys.exit(0)
nonce = hello[16:48]
s.sendall(struct.pack("<4sHHIQ32s", b"LSPY", 2, 0, 1, 7, hmac.new(key, nonce, hashlib.sha256).digest()))
print("answered", s.recv(64)[:1].hex())
"""


def test_a_connection_from_another_uid_is_closed_before_the_hello():
    """The 0700 folder already keeps other users out, so this check is defence in depth; to exercise it for
    real, the other user's process is given CAP_DAC_OVERRIDE (setpriv): it can read session.key and reach the
    socket, and its uid is still not the server's. The server closes its connection before sending a byte."""
    user = _other_user()
    python = _python_for(user)
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    with tempfile.TemporaryDirectory(prefix="lesspy-peer-") as tmp, \
            Headless(Path(tmp) / "w", LANES_MODULE, "--keep-alive") as s:
        r = subprocess.run(["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups",
                            "--inh-caps=+dac_override", "--ambient-caps=+dac_override", python, "-c", PEER,
                            str(s.folder)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["closed", "0"], f"the other uid got an answer: {r.stdout}"
        assert client.status(s.folder)["refused"] >= 1
        wait_for(lambda: f"from uid {_uid(user)}" in s.output(), timeout=5, what="the refusal in the log")
        with ClientLane(s.folder) as lane:
            assert lane.call("add_ints", I, [1, 2], [I, I]) == 3


# ------------------------------------------------------------------ item 4: a stop request while others use it


HOLDER = r"""
import sys, time
sys.path.insert(0, sys.argv[2])
from lesspy_kernel.client import ClientLane
from lesspy_kernel.wire import Tag
lane = ClientLane(sys.argv[1])
print("ready", flush=True)
n = 0
try:
    while True:
        assert lane.call("add_ints", Tag.INT32, [n, 1], [Tag.INT32, Tag.INT32]) == n + 1
        n += 1
        time.sleep(0.005)
except Exception as e:
    print("ended", n, type(e).__name__, flush=True)
"""


def _holder(folder: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(ROOT)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready", p.stderr.read()
    return p


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lesspy_kernel", *args], capture_output=True, text=True,
                          timeout=60, cwd=str(ROOT))


def test_a_stop_request_is_refused_while_another_client_has_lanes_and_force_stops_it(tmp_path):
    with Headless(tmp_path / "w", LANES_MODULE, "--keep-alive") as s:
        holder = _holder(s.folder)
        try:
            with pytest.raises(HandshakeError) as refused:      # what C#'s Initialize of another module sends
                client.stop(s.folder)
            assert refused.value.result == Result.IN_USE
            message = str(refused.value)
            assert f"pid {holder.pid}" in message and str(LANES_MODULE) in message and "not stopped" in message

            r = _cli("stop", str(s.folder))
            assert r.returncode == 1, r.stdout + r.stderr
            assert "refused" in r.stderr and f"pid {holder.pid}" in r.stderr and "--force" in r.stderr, r.stderr
            time.sleep(0.3)
            assert s.proc.poll() is None and holder.poll() is None, "the server or its client stopped"
            calls = client.status(s.folder)["calls"]
            wait_for(lambda: client.status(s.folder)["calls"] > calls + 5, timeout=10, what="more calls")

            r = _cli("stop", "--force", str(s.folder))
            assert r.returncode == 0, r.stdout + r.stderr
            assert f"pid {s.pid}" in r.stdout
            assert s.proc.wait(10) == 0
            out, _ = holder.communicate(timeout=20)
            assert out.startswith("ended"), out
        finally:
            if holder.poll() is None:
                holder.kill()


def test_a_client_may_stop_a_server_only_it_uses(tmp_path):
    with Headless(tmp_path / "w", LANES_MODULE, "--keep-alive") as s:
        with ClientLane(s.folder) as lane:
            assert lane.call("add_ints", I, [1, 2], [I, I]) == 3
            client.stop(s.folder, client_id=lane.client_id)     # its own lanes do not count
            assert s.proc.wait(10) == 0
    with Headless(tmp_path / "w2", LANES_MODULE, "--keep-alive") as s:
        with ClientLane(s.folder) as lane:
            assert lane.call("add_ints", I, [1, 2], [I, I]) == 3
        r = _cli("stop", str(s.folder))                          # no lanes open any more
        assert r.returncode == 0, r.stderr
        assert s.proc.wait(10) == 0


def test_stop_force_never_signals_a_process_that_is_not_the_folders_server(tmp_path):
    with Headless(tmp_path / "w", LANES_MODULE, "--keep-alive") as s:
        holder = _holder(s.folder)
        decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            pidfile = s.folder / "python.pid"
            real = pidfile.read_text()
            os.unlink(pidfile)
            fd = os.open(pidfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, str(decoy.pid).encode())
            os.close(fd)
            r = _cli("stop", "--force", str(s.folder))
            assert r.returncode == 1 and "not signalling" in r.stderr, r.stdout + r.stderr
            assert decoy.poll() is None and s.proc.poll() is None
            os.unlink(pidfile)
            fd = os.open(pidfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, real.encode())
            os.close(fd)
        finally:
            decoy.kill()
            decoy.wait()
            holder.send_signal(signal.SIGKILL)
            holder.wait()


def test_a_shutdown_byte_never_stops_a_server_another_client_uses(tmp_path):
    """SHUTDOWN (stop once this client has gone) waits for the other clients: the server stops when the last
    of them has gone, not under them."""
    from lesspy_kernel.wire import handshake

    with Headless(tmp_path / "w", LANES_MODULE, "--keep-alive") as s:
        holder = _holder(s.folder)
        try:
            with ClientLane(s.folder) as lane:
                lane.sock.sendall(handshake.SHUTDOWN)
                assert lane.call("add_ints", I, [1, 2], [I, I]) == 3
            wait_for(lambda: "other clients use it" in s.output(), timeout=10, what="the deferred stop")
            calls = client.status(s.folder)["calls"]
            wait_for(lambda: client.status(s.folder)["calls"] > calls + 5, timeout=10, what="more calls")
            assert s.proc.poll() is None and holder.poll() is None
        finally:
            holder.kill()
            holder.wait()
        assert s.proc.wait(10) == 0, "the server did not stop once its last client had gone"


FAKE_SERVER = r"""
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1] + "/notify.sock")
s.listen(8)
print("listening", flush=True)
s.settimeout(20)
try:
    c, _ = s.accept()
    c.sendall(b"LSPY")                     # it would go on with a hello of its own
    time.sleep(2)
except OSError:
    pass
"""


def test_the_python_client_refuses_a_socket_served_by_another_uid(tmp_path):
    """The client side of SO_PEERCRED: a process of another uid (with CAP_DAC_OVERRIDE, so it can reach the
    0700 folder) listens on notify.sock in the owner's folder; the Python client refuses it after connect."""
    user = _other_user()
    python = _python_for(user)
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    folder = tmp_path / "w"
    folder.mkdir(mode=0o700)
    for name, text in (("notify.port", "unix"), ("session.key", "0" * 64)):
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, text.encode())
        os.close(fd)
    fake = subprocess.Popen(["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups",
                             "--inh-caps=+dac_override", "--ambient-caps=+dac_override", python, "-c", FAKE_SERVER,
                             str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert fake.stdout.readline().strip() == "listening", fake.stderr.read()
        with pytest.raises(PermissionError, match=f"served by uid {_uid(user)} \\({user}\\), not by you"):
            client.status(folder)
    finally:
        fake.kill()
        fake.wait()
