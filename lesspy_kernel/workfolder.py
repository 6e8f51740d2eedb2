"""The work folder: where a server's mappings, pid, port and key live, private to the user.

A folder left behind by a server that died (pid not alive, port not answering) is stale: it is detected
and replaced, never trusted. Named sessions resolve to `<jupyter runtime dir>/lesspy/<name>` exactly as the
C# client resolves them (docs/PROTOCOL.md section 1).
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import stat
import sys
from pathlib import Path
from typing import Optional, Union

REQUEST_FILE = "req.mmf"
RESPONSE_FILE = "resp.mmf"
PID_FILE = "python.pid"
PORT_FILE = "notify.port"
KEY_FILE = "session.key"
LOG_FILE = "server.log"
MODULE_FILE = "python.module"
SERVER_FILES = (PORT_FILE, PID_FILE, KEY_FILE, MODULE_FILE, REQUEST_FILE, RESPONSE_FILE)


def jupyter_runtime_dir() -> Path:
    """Jupyter's runtime directory, resolved the way the C# client resolves it."""
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
    """Whether a process with this id exists (signal 0 on POSIX; on Windows os.kill would kill it)."""
    if pid <= 0:
        return False
    if os.name == "nt":
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        ctypes.windll.kernel32.CloseHandle(handle)
        return True
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True


def _read_int(path: Path) -> Optional[int]:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class WorkFolder:
    """One server's folder. Knows its files; never holds them open."""

    def __init__(self, path: Union[str, os.PathLike]) -> None:
        self.path = Path(path).absolute()

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def request(self) -> Path:
        return self.file(REQUEST_FILE)

    @property
    def response(self) -> Path:
        return self.file(RESPONSE_FILE)

    def live_server_pid(self) -> Optional[int]:
        """The pid of a live server; None when the folder is empty or stale.

        Stale means the pid is dead, or nothing listens on the port, or something else answers there.
        A server that accepts but is slow to say hello is alive: it is busy in a call, not gone.
        """
        pid = _read_int(self.file(PID_FILE))
        port = _read_int(self.file(PORT_FILE))
        if pid is None or port is None or not pid_alive(pid):
            return None
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
        except OSError:
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
                                  "stop it, or use another folder or name")
        self.remove_files()

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

    def publish(self, pid: int, port: int, module: str = "") -> None:
        """Write python.pid (and python.module), then notify.port atomically: its presence means ready."""
        self.file(PID_FILE).write_text(str(pid))
        if module:
            self.file(MODULE_FILE).write_text(module, encoding="utf-8")
        tmp = self.file(PORT_FILE + ".tmp")
        tmp.write_text(str(port))
        os.replace(tmp, self.file(PORT_FILE))

    def remove_files(self, keep_mappings: bool = False) -> None:
        """Remove the server's files; `keep_mappings` leaves req.mmf and resp.mmf (keep-alive, as the original)."""
        kept = (REQUEST_FILE, RESPONSE_FILE) if keep_mappings else ()
        for name in SERVER_FILES + (PORT_FILE + ".tmp",):
            if name not in kept:
                self.file(name).unlink(missing_ok=True)

    def remove(self) -> None:
        """Remove the server's files, and the folder itself when nothing else is left in it."""
        self.remove_files()
        try:
            self.path.rmdir()
        except OSError:
            pass
