"""The work folder: where a server's mappings, pid, port and key live, private to the user.

A folder left behind by a server that died (pid not alive, port not answering) is stale: it is detected
and replaced, never trusted. Named sessions resolve to `<jupyter runtime dir>/lesspy/<name>` exactly as the
C# client resolves them (docs/PROTOCOL.md section 1).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import socket
import stat
import sys
import time
from pathlib import Path
from typing import Iterator, Optional, Union

PID_FILE = "python.pid"
PORT_FILE = "notify.port"
SOCKET_FILE = "notify.sock"
KEY_FILE = "session.key"
LOG_FILE = "server.log"
MODULE_FILE = "python.module"
LOCK_FILE = "lesspy.lock"
UNIX = "unix"                   # what notify.port holds when the server listens on notify.sock
SERVER_FILES = (PORT_FILE, PID_FILE, KEY_FILE, MODULE_FILE, SOCKET_FILE)
LEGACY_FILES = ("req.mmf", "resp.mmf")          # protocol version 1's mappings, removed when found


MAX_SOCKET_PATH = 100           # sockaddr_un holds 108 bytes on Linux, 104 on macOS; Mono accepts less than 107


def use_unix_socket(path: Path) -> bool:
    """A Unix domain socket inside the 0700 folder: unreachable to other users, and faster than TCP. Not on
    Windows, and not when the folder's path is too long for a socket address (then TCP, with a warning)."""
    return hasattr(socket, "AF_UNIX") and sys.platform != "win32" and len(os.fsencode(path)) <= MAX_SOCKET_PATH


def jupyter_runtime_dir() -> Path:
    """Jupyter's runtime directory, as jupyter_core resolves it (the C# client follows the same rules)."""
    try:
        from jupyter_core.paths import jupyter_runtime_dir as runtime_dir
    except ImportError:         # jupyter_core comes with ipykernel; this is only for a bare install
        return _runtime_dir_fallback()
    return Path(runtime_dir())


def _runtime_dir_fallback() -> Path:
    env = os.environ.get("JUPYTER_RUNTIME_DIR")
    if env:
        return Path(env)
    data = os.environ.get("JUPYTER_DATA_DIR")
    if data:
        return Path(data) / "runtime"
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home())) / "jupyter" / "runtime"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Jupyter" / "runtime"
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "jupyter" / "runtime"


def session_folder(name: str) -> Path:
    """The folder of a named session: `<runtime dir>/lesspy/<name>`."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"a session name is a plain name such as 'demo', not {name!r}")
    return jupyter_runtime_dir() / "lesspy" / name


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs (signal 0 on POSIX; on Windows os.kill would kill it). On Linux a
    zombie (it exited, its parent has not reaped it yet) does not count, as the C# client's check does."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        ctypes.windll.kernel32.CloseHandle(handle)
        return True
    try:
        os.kill(pid, 0)
    except OSError as e:
        if e.errno != errno.EPERM:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:            # it just went, or there is no /proc (macOS: signal 0's answer stands)
        return not Path("/proc/self").exists()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2:stat.rindex(")") + 3] != "Z"


def _read_int(path: Path) -> Optional[int]:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def connect_notify(folder: Path, timeout: float = 5.0) -> socket.socket:
    """Connect to the notify socket that `notify.port` names (a Unix socket in the folder, or TCP)."""
    where = (folder / PORT_FILE).read_text().strip()
    if where == UNIX:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(str(folder / SOCKET_FILE))
        except OSError:
            s.close()
            raise
        return s
    s = socket.create_connection(("127.0.0.1", int(where)), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class WorkFolder:
    """One server's folder. Knows its files; never holds them open."""

    def __init__(self, path: Union[str, os.PathLike]) -> None:
        self.path = Path(path).absolute()

    def file(self, name: str) -> Path:
        return self.path / name

    def lane_file(self, lane_id: int, which: str) -> Path:
        """`lane-N.req.mmf` or `lane-N.resp.mmf`."""
        return self.file(f"lane-{lane_id}.{which}.mmf")

    def live_server_pid(self) -> Optional[int]:
        """The pid of a live server; None when the folder is empty or stale.

        Stale means the pid is dead, or nothing listens on the notify socket, or something else answers there.
        A server that accepts but is slow to say hello is alive, not gone.
        """
        pid = _read_int(self.file(PID_FILE))
        if pid is None or not pid_alive(pid):
            return None
        try:
            s = connect_notify(self.path, timeout=2)
        except (OSError, ValueError):
            return None
        with s:
            try:
                hello = s.recv(4)
            except socket.timeout:
                return pid
            except OSError:
                return None
        return pid if hello in (b"LSPY", b"") else None

    def prepare(self) -> None:
        """Create the folder 0700 (or tighten ours), refuse one owned by someone else, clear stale files."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = self.path.stat()
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise PermissionError(f"work folder {self.path} belongs to uid {st.st_uid}, not to you: "
                                  "choose another folder")
        if os.name == "posix" and stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(self.path, 0o700)
        live = self.live_server_pid()
        if live is not None and live != os.getpid():
            raise FileExistsError(f"a lesspy server (pid {live}) is already serving {self.path}: "
                                  "stop it (lesspy stop FOLDER), or use another folder or name")
        self.remove_files()

    @contextlib.contextmanager
    def start_lock(self, timeout: float = 60.0) -> Iterator[None]:
        """Hold `lesspy.lock` (a POSIX record lock on byte 0, as the C# client takes it) while starting."""
        fd = os.open(self.file(LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    _lock(fd)
                    break
                except OSError as e:
                    if e.errno not in (errno.EACCES, errno.EAGAIN, errno.EDEADLK) or time.monotonic() > deadline:
                        raise TimeoutError(f"another process holds {self.file(LOCK_FILE)} (starting a server "
                                           f"there) for more than {timeout:.0f} s") from e
                    time.sleep(0.02)
            try:
                yield
            finally:
                _unlock(fd)
        finally:
            os.close(fd)

    def write_key(self) -> bytes:
        """Write a fresh session key (0600) and return the HMAC key bytes."""
        key = secrets.token_hex(32)
        path = self.file(KEY_FILE)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)
        if os.name == "posix":
            os.chmod(path, 0o600)
        return key.encode("ascii")

    def publish(self, pid: int, where: Union[int, str], module: str = "") -> None:
        """Write python.pid (and python.module), then notify.port atomically: its presence means ready."""
        self.file(PID_FILE).write_text(str(pid))
        if module:
            self.file(MODULE_FILE).write_text(module, encoding="utf-8")
        tmp = self.file(PORT_FILE + ".tmp")
        tmp.write_text(str(where))
        os.replace(tmp, self.file(PORT_FILE))

    def remove_files(self) -> None:
        """Remove the server's files and every lane's mappings (the lock and the log stay)."""
        for name in SERVER_FILES + LEGACY_FILES + (PORT_FILE + ".tmp",):
            self.file(name).unlink(missing_ok=True)
        for lane in self.path.glob("lane-*.mmf"):
            lane.unlink(missing_ok=True)

    def remove(self) -> None:
        """Remove the server's files, and the folder itself when nothing else is left in it."""
        self.remove_files()
        self.file(LOCK_FILE).unlink(missing_ok=True)
        try:
            self.path.rmdir()
        except OSError:
            pass


if sys.platform != "win32":
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)

    def _unlock(fd: int) -> None:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)
else:  # pragma: no cover - Windows
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
