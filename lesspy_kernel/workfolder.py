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
import struct
import sys
import time
from pathlib import Path
from typing import Iterator, List, Optional, Union

PID_FILE = "python.pid"
PORT_FILE = "notify.port"
SOCKET_FILE = "notify.sock"
KEY_FILE = "session.key"
LOG_FILE = "server.log"
MODULE_FILE = "python.module"
LOCK_FILE = "lesspy.lock"
SESSION_NAME_FILE = "session.name"      # a named session's server: the name it serves (checked by Connect(name))
SESSIONS = "lesspy"                     # <jupyter runtime dir>/lesspy/: the folder of named sessions
UNIX = "unix"                   # what notify.port holds when the server listens on notify.sock
SERVER_FILES = (PORT_FILE, PID_FILE, KEY_FILE, MODULE_FILE, SOCKET_FILE, SESSION_NAME_FILE)
LEGACY_FILES = ("req.mmf", "resp.mmf")          # protocol version 1's mappings, removed when found


MAX_SOCKET_PATH = 100           # sockaddr_un holds 108 bytes on Linux, 104 on macOS; Mono accepts less than 107
# FOR TESTS ONLY: serve on TCP 127.0.0.1 on Linux/macOS too, as on Windows, so that the TCP path (and its defence
# against a flood of unanswered handshakes) can be tested where the suite runs. Never set it otherwise: TCP
# lets every local user connect (they still need session.key to call).
FORCE_TCP_ENV = "LESSPY_TEST_FORCE_TCP"

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_PATH = getattr(os, "O_PATH", 0)          # Linux: a handle on the folder that needs no read permission
_PROC_FD = sys.platform.startswith("linux") and os.path.isdir("/proc/self/fd")
_CHECKS = os.name == "posix" and hasattr(os, "getuid")


def use_unix_socket(path: Optional[Path] = None) -> bool:
    """The notify socket is a Unix domain socket inside the 0700 folder (unreachable to other users, and faster
    than TCP) everywhere but Windows. A long folder path is no reason for TCP: see `socket_address`."""
    return hasattr(socket, "AF_UNIX") and sys.platform != "win32" and not os.environ.get(FORCE_TCP_ENV)


def socket_address(folder: Path, dirfd: Optional[int]) -> str:
    """Where to bind or connect the folder's notify.sock. On Linux through the open folder
    (`/proc/self/fd/<dirfd>/notify.sock`): always short, and it cannot be redirected by renaming the folder or a
    parent after it was checked. Elsewhere the plain path, which must fit a socket address."""
    if dirfd is not None and _PROC_FD:
        return f"/proc/self/fd/{dirfd}/{SOCKET_FILE}"
    path = folder / SOCKET_FILE
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise OSError(errno.ENAMETOOLONG,
                      f"{path} is {len(os.fsencode(path))} bytes, longer than a Unix socket address allows "
                      f"({MAX_SOCKET_PATH}) on this system: use a shorter work folder path, or a session name")
    return str(path)


def _owner(uid: int) -> str:
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def session_parent(path: Union[str, os.PathLike]) -> Optional[Path]:
    """`<jupyter runtime dir>/lesspy` when `path` is a named session's folder (`<runtime dir>/lesspy/NAME`, however
    it was given: `--name NAME` or its full path), else None. Compared as absolute paths, as the C# client does."""
    parent = Path(os.path.abspath(path)).parent
    if parent.name != SESSIONS:
        return None
    try:
        sessions = Path(os.path.abspath(jupyter_runtime_dir() / SESSIONS))
    except Exception:                   # no usable runtime dir: not a session
        return None
    return parent if parent == sessions else None


def open_session_parent(parent: Path, create: bool = False) -> int:
    """Open `<runtime dir>/lesspy/` (the folder of named sessions) without following a symlink and check it: a
    directory of the current user that no one else may write (whoever can write it can rename, swap or hide the
    sessions in it, whoever owns the sessions). One of ours that others may only list (an older lesspy made it
    0755 from the umask) is tightened to 0700: the session names are nobody else's business. `create`: make
    the runtime dir (if missing) and lesspy/ with mode 0700 first. Returns its descriptor; raises
    PermissionError / NotADirectoryError with a message that says what to do."""
    if create:
        runtime = parent.parent
        if not runtime.is_dir():
            runtime.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(runtime, 0o700)
        with contextlib.suppress(FileExistsError):
            os.mkdir(parent, 0o700)
    try:
        fd = os.open(parent, (_O_PATH or os.O_RDONLY) | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC)
    except OSError as e:
        if os.path.islink(parent):
            raise PermissionError(f"the folder of named sessions {parent} is a symbolic link: lesspy never follows "
                                  "one (whoever can change it could point your sessions at a folder of theirs); "
                                  "remove the link, or set JUPYTER_RUNTIME_DIR to a private folder") from None
        if e.errno == errno.ENOTDIR:
            raise NotADirectoryError(f"the folder of named sessions {parent} is not a folder: remove it") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(f"the folder of named sessions {parent} is not a folder: remove it")
        if st.st_uid != os.getuid():
            raise PermissionError(f"the folder of named sessions {parent} belongs to {_owner(st.st_uid)}, not to you "
                                  f"({_owner(os.getuid())}): its owner could rename, swap or hide your sessions in "
                                  "it, so lesspy refuses it. Remove it, or set JUPYTER_RUNTIME_DIR to a private "
                                  "folder of yours")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o022:
            raise PermissionError(f"the folder of named sessions {parent} is writable by other users (mode "
                                  f"{mode:04o}): they could rename, swap or hide your sessions in it, so lesspy "
                                  f"refuses it. If everything in it is yours, run `chmod 700 {parent}`")
        if mode & 0o077:                 # ours, others may only list the names: make it private
            if _O_PATH:
                os.chmod(f"/proc/self/fd/{fd}", 0o700)
            else:
                os.fchmod(fd, 0o700)
        return fd
    except BaseException:
        os.close(fd)
        raise


def check_session_name(path: Path, dirfd: Optional[int]) -> None:
    """A named session's folder reached by its name must hold that session: its server wrote the name it serves
    into session.name, and a folder renamed into this name's place (another session of the same user's) is
    refused. No session.name: no server of this version serves it (nothing is sent before that is found)."""
    try:
        found = read_private(folder_base(path, dirfd) / SESSION_NAME_FILE, path / SESSION_NAME_FILE)
    except FileNotFoundError:
        return
    name = found.decode("utf-8", "replace")
    if name != path.name:
        raise PermissionError(f"{path} holds the session {name!r}, not {path.name!r} (its {SESSION_NAME_FILE} says "
                              f"so): the folder was renamed while its server ran, and lesspy will not call another "
                              f"session's code under this name. Stop that server (lesspy stop {path}) and serve "
                              f"{path.name!r} again")


def open_folder(path: Path, tighten: bool = False, parent_fd: Optional[int] = None) -> Optional[int]:
    """Open a work folder without following a symlink and check it is ours and private: a directory owned by
    the current user with no group/other permission bits. `tighten` (the server, for its own folder only):
    remove group/other bits instead of refusing. Returns the folder's descriptor (None on Windows, where the
    folder's ACL is the protection). Raises PermissionError / NotADirectoryError / FileNotFoundError with a
    message that says what to do.

    A named session's folder is opened relative to `<runtime dir>/lesspy/`, itself opened and checked first
    (`open_session_parent`; `parent_fd`: already opened by the caller): a rename in it after the check changes
    nothing. Opened for a client (not `tighten`), its session.name must name it (`check_session_name`)."""
    if not _CHECKS:
        return None
    path = Path(path)
    own_parent = False
    if parent_fd is None and session_parent(path) is not None:
        parent_fd = open_session_parent(path.parent)
        own_parent = True
    try:
        fd = _open_checked_folder(path, tighten, parent_fd)
    finally:
        if own_parent and parent_fd is not None:
            os.close(parent_fd)
    if parent_fd is not None and not tighten:
        try:
            check_session_name(path, fd)
        except BaseException:
            os.close(fd)
            raise
    return fd


def _open_checked_folder(path: Path, tighten: bool, parent_fd: Optional[int]) -> int:
    try:
        fd = os.open(path.name if parent_fd is not None else path,
                     (_O_PATH or os.O_RDONLY) | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=parent_fd)
    except OSError as e:
        if os.path.islink(path):
            raise PermissionError(f"work folder {path} is a symbolic link: lesspy never follows one (another user "
                                  "could point it at a folder of theirs); use the real folder's path, or remove "
                                  "the link") from None
        if e.errno == errno.ENOTDIR:
            raise NotADirectoryError(f"work folder {path} is not a folder: remove it or choose another path") \
                from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(f"work folder {path} is not a folder: remove it or choose another path")
        if st.st_uid != os.getuid():
            raise PermissionError(f"work folder {path} belongs to {_owner(st.st_uid)}, not to you "
                                  f"({_owner(os.getuid())}): lesspy never uses another user's folder; choose "
                                  "another folder (or session name)")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            if not tighten:
                raise PermissionError(f"work folder {path} is open to other users (mode {mode:04o}): lesspy "
                                      f"only uses a private folder; run `chmod 700 {path}` or choose another")
            if _O_PATH:                  # an O_PATH descriptor cannot fchmod; its /proc link names the same folder
                os.chmod(f"/proc/self/fd/{fd}", 0o700)
            else:
                os.fchmod(fd, 0o700)
        return fd
    except BaseException:
        os.close(fd)
        raise


def check_private(fd: int, shown: Union[str, os.PathLike]) -> os.stat_result:
    """fstat-check a file opened in a work folder: a regular file of the current user, mode 0600 (no
    group/other bits). Raises PermissionError naming what was found."""
    st = os.fstat(fd)
    if not _CHECKS:
        return st
    if not stat.S_ISREG(st.st_mode):
        raise PermissionError(f"{shown} is not a regular file: lesspy refuses it; remove it or choose another "
                              "work folder")
    if st.st_uid != os.getuid():
        raise PermissionError(f"{shown} belongs to {_owner(st.st_uid)}, not to you ({_owner(os.getuid())}): "
                              "lesspy refuses it; remove it or choose another work folder")
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise PermissionError(f"{shown} is open to other users (mode {stat.S_IMODE(st.st_mode):04o}, lesspy "
                              "makes its files 0600): lesspy refuses it; remove it or choose another work folder")
    return st


def open_private(path: Union[str, os.PathLike], flags: int = os.O_RDONLY,
                 shown: Optional[Union[str, os.PathLike]] = None) -> int:
    """Open an existing file of a work folder without following a symlink, and check it (`check_private`)."""
    try:
        fd = os.open(path, flags | _O_NOFOLLOW | _O_CLOEXEC | getattr(os, "O_BINARY", 0))
    except OSError as e:
        if e.errno == errno.ELOOP or (_O_NOFOLLOW and os.path.islink(path)):
            raise PermissionError(f"{shown or path} is a symbolic link: lesspy never follows one; remove it or "
                                  "choose another work folder") from None
        raise
    try:
        check_private(fd, shown or path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_private(path: Union[str, os.PathLike], flags: int = os.O_WRONLY) -> int:
    """Create a file of a work folder afresh: a stale one is unlinked (the folder is ours and private, so it
    is ours), then O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600. Returns the descriptor."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return os.open(path, flags | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | getattr(os, "O_BINARY", 0),
                   0o600)


def read_private(path: Union[str, os.PathLike], shown: Optional[Union[str, os.PathLike]] = None) -> bytes:
    fd = open_private(path, os.O_RDONLY, shown)
    try:
        chunks: List[bytes] = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def write_private(path: Union[str, os.PathLike], data: bytes) -> None:
    fd = create_private(path)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def jupyter_runtime_dir() -> Path:
    """Jupyter's runtime directory, by jupyter_core's default rules, written out here with the C# client's
    WorkFolder.JupyterRuntimeDir (the same steps): both languages must find a named session in the same place,
    and the core imports nothing from Jupyter. jupyter_core's JUPYTER_PLATFORM_DIRS is not followed."""
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


def folder_base(folder: Path, dirfd: Optional[int]) -> Path:
    """Where to reach the files of a folder opened as `dirfd`: on Linux through the descriptor
    (`/proc/self/fd/<dirfd>`), so that a rename or a symlink swapped in for the folder or a parent after the
    check changes nothing; elsewhere the folder's path."""
    if dirfd is not None and _PROC_FD:
        return Path(f"/proc/self/fd/{dirfd}")
    return folder


_UCRED = struct.Struct("3i")                # struct ucred: pid, uid, gid


def peer_uid(sock: socket.socket) -> Optional[int]:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED, Linux); None where unknown."""
    if getattr(socket, "AF_UNIX", None) is None or sock.family != socket.AF_UNIX or \
            not hasattr(socket, "SO_PEERCRED"):
        return None
    _, uid, _ = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return uid


def connect_notify(folder: Path, timeout: float = 5.0, dirfd: Optional[int] = None) -> socket.socket:
    """Connect to the notify socket that `notify.port` names (a Unix socket in the folder, or TCP), after
    checking the folder and notify.port are the current user's and private (`open_folder`, `check_private`);
    on a Unix socket the server must be the current user too (SO_PEERCRED). `dirfd`: the folder, already
    opened and checked by the caller (kept open; otherwise opened and closed here)."""
    folder = Path(folder).absolute()
    own = dirfd is None
    if own:
        dirfd = open_folder(folder)
    try:
        where = read_private(folder_base(folder, dirfd) / PORT_FILE, folder / PORT_FILE).decode("ascii", "replace")
        where = where.strip()
        if where == UNIX:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            try:
                s.connect(socket_address(folder, dirfd))
                uid = peer_uid(s)
                if uid is not None and _CHECKS and uid != os.getuid():
                    raise PermissionError(f"the notify socket in {folder} is served by {_owner(uid)}, not by you "
                                          f"({_owner(os.getuid())}): lesspy refuses it; choose another work folder")
            except BaseException:
                s.close()
                raise
            return s
    finally:
        if own and dirfd is not None:
            os.close(dirfd)
    s = socket.create_connection(("127.0.0.1", int(where)), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class WorkFolder:
    """One server's folder. Knows its files; holds only the folder itself open (`open`), never its files.

    Ownership rule (docs/PROTOCOL.md section 1): the folder is opened without following a symlink and checked
    (ours, private) before anything in it is touched; every file in it is opened with O_NOFOLLOW and checked,
    or created with O_EXCL, 0600. On Linux every path goes through the open folder (`base`), so renaming the
    folder or a parent, or swapping a symlink in, after the check cannot redirect a single file.
    """

    def __init__(self, path: Union[str, os.PathLike]) -> None:
        self.path = Path(path).absolute()
        self.fd: Optional[int] = None
        # a named session's name (the folder is <runtime dir>/lesspy/NAME), else None
        self.session: Optional[str] = self.path.name if session_parent(self.path) is not None else None

    @property
    def base(self) -> Path:
        return folder_base(self.path, self.fd)

    def file(self, name: str) -> Path:
        return self.base / name

    def lane_file(self, lane_id: int, which: str) -> Path:
        """`lane-N.req.mmf` or `lane-N.resp.mmf`."""
        return self.file(f"lane-{lane_id}.{which}.mmf")

    def open(self, create: bool = True) -> None:
        """Create the folder 0700 if missing, open it without following a symlink, refuse it unless it is ours
        (tightening ours to 0700). Everything else in this class needs it open."""
        if self.fd is not None:
            return
        if _CHECKS and self.session is not None:
            # <runtime dir>/lesspy/ made 0700 and checked; the folder made and opened relative to it
            parent_fd = open_session_parent(self.path.parent, create=create)
            try:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(self.path.name, 0o700, dir_fd=parent_fd)
                self.fd = open_folder(self.path, tighten=True, parent_fd=parent_fd)
            finally:
                os.close(parent_fd)
            return
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(self.path, 0o700)
            except FileExistsError:
                pass                         # whatever is there is checked now
        self.fd = open_folder(self.path, tighten=True)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def address(self) -> str:
        """Where the notify socket is bound and connected (see `socket_address`)."""
        return socket_address(self.path, self.fd)

    def _read_int(self, name: str) -> Optional[int]:
        try:
            return int(read_private(self.file(name), self.path / name).decode("ascii").strip())
        except (OSError, ValueError):          # missing, not ours, not private, garbage: not a live server's
            return None

    def live_server_pid(self) -> Optional[int]:
        """The pid of a live server; None when the folder is empty or stale.

        Stale means the pid is dead, or nothing listens on the notify socket, or something else answers there
        (or its files are not ours and private: nothing of ours wrote them). A server that accepts but is slow
        to say hello is alive, not gone.
        """
        self.open(create=False)
        pid = self._read_int(PID_FILE)
        if pid is None or not pid_alive(pid):
            return None
        try:
            s = connect_notify(self.path, timeout=2, dirfd=self.fd)
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
        """Open (and check) the folder, refuse it when a live server serves it, clear stale files."""
        self.open()
        live = self.live_server_pid()
        if live is not None and live != os.getpid():
            raise FileExistsError(f"a lesspy server (pid {live}) is already serving {self.path}: "
                                  "stop it (lesspy stop FOLDER), or use another folder or name")
        self.remove_files()

    def _open_lock(self) -> int:
        path, shown = self.file(LOCK_FILE), self.path / LOCK_FILE
        flags = os.O_RDWR | _O_NOFOLLOW | _O_CLOEXEC
        try:
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        try:
            fd = os.open(path, flags)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise PermissionError(f"{shown} is a symbolic link: lesspy never follows one; remove it") from None
            raise
        try:
            st = os.fstat(fd)
            if _CHECKS and stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and \
                    stat.S_IMODE(st.st_mode) & 0o077:
                os.fchmod(fd, 0o600)         # ours (an older version made it 0644): it holds no secret
            check_private(fd, shown)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextlib.contextmanager
    def start_lock(self, timeout: float = 60.0) -> Iterator[None]:
        """Hold `lesspy.lock` (a POSIX record lock on byte 0, as the C# client takes it) while starting."""
        self.open()
        fd = self._open_lock()
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    _lock(fd)
                    break
                except OSError as e:
                    if e.errno not in (errno.EACCES, errno.EAGAIN, errno.EDEADLK) or time.monotonic() > deadline:
                        raise TimeoutError(f"another process holds {self.path / LOCK_FILE} (starting a server "
                                           f"there) for more than {timeout:.0f} s") from e
                    time.sleep(0.02)
            try:
                yield
            finally:
                _unlock(fd)
        finally:
            os.close(fd)

    def write_key(self) -> bytes:
        """Write a fresh session key (created 0600, O_EXCL) and return the HMAC key bytes."""
        key = secrets.token_hex(32)
        write_private(self.file(KEY_FILE), key.encode("ascii"))
        return key.encode("ascii")

    def publish(self, pid: int, where: Union[int, str], module: str = "") -> None:
        """Write python.pid (and python.module), then notify.port atomically: its presence means ready."""
        write_private(self.file(PID_FILE), str(pid).encode("ascii"))
        if module:
            write_private(self.file(MODULE_FILE), module.encode("utf-8"))
        if self.session is not None:
            write_private(self.file(SESSION_NAME_FILE), self.session.encode("utf-8"))
        tmp = self.file(PORT_FILE + ".tmp")
        write_private(tmp, str(where).encode("ascii"))
        os.replace(tmp, self.file(PORT_FILE))

    def remove_files(self) -> None:
        """Remove the server's files and every lane's mappings (the lock and the log stay)."""
        for name in SERVER_FILES + LEGACY_FILES + (PORT_FILE + ".tmp",):
            self.file(name).unlink(missing_ok=True)
        for lane in self.base.glob("lane-*.mmf"):
            lane.unlink(missing_ok=True)

    def remove(self) -> None:
        """Remove the server's files, and the folder itself when nothing else is left in it."""
        self.remove_files()
        self.file(LOCK_FILE).unlink(missing_ok=True)
        try:
            if _CHECKS and self.session is not None:     # through the checked <runtime dir>/lesspy/
                parent_fd = open_session_parent(self.path.parent)
                try:
                    os.rmdir(self.path.name, dir_fd=parent_fd)
                finally:
                    os.close(parent_fd)
            else:
                os.rmdir(self.path)          # never follows a symlink; fails unless empty
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
