"""A headless server's log file (--log-file): counted as lines and printed output go to it, and moved to FILE.1
past its cap, so a chatty client or function never fills the disk."""

from __future__ import annotations

import logging
import os
import stat
import threading
import weakref
from pathlib import Path
from typing import Optional

from .workfolder import WorkFolder, create_private, open_private

log = logging.getLogger("lesspy_kernel")

DEFAULT_LOG_CAP = 10 * 1024 * 1024
LOG_CHECK_BYTES = 16 * 1024  # the log's size is checked (and the log rotated) after this many bytes of lines


class _LogBytes(logging.Filter):
    """Counts the bytes of the lines the server logs (LogFile.count), so the log is looked at and rotated every
    LOG_CHECK_BYTES, not only by the watchdog."""

    def __init__(self, logfile: "LogFile") -> None:
        super().__init__()
        self._logfile = weakref.ref(logfile)

    def filter(self, record: logging.LogRecord) -> bool:
        n = 64 + len(str(record.msg)) + (4096 if record.exc_info else 0)
        try:
            n += sum(len(a) if isinstance(a, str) else 8 for a in record.args or ())  # type: ignore[union-attr]
        except TypeError:
            pass
        logfile = self._logfile()
        if logfile is not None:
            logfile.count(n)
        return True


class LogFile:
    """The log file `path` a server writes to, kept under `cap` bytes. One in the server's work folder is opened
    through the folder it checked."""

    def __init__(self, path: Path, cap: int, folder: WorkFolder) -> None:
        self.path = path
        self.cap = cap
        self.folder = folder
        self.forked = False                   # set in a forked child: the log is its parent's
        self._lock = threading.RLock()        # a rotation logs a line, which may ask for a rotation
        self._bytes = 0
        self._filter: Optional[_LogBytes] = None

    def attach(self) -> None:
        """Count what the server logs from now on."""
        if self._filter is None:
            self._filter = _LogBytes(self)
            log.addFilter(self._filter)

    def detach(self) -> None:
        if self._filter is not None:
            log.removeFilter(self._filter)
            self._filter = None

    def count(self, n: int) -> None:
        """`n` bytes went to the log (a logged line, or what a call printed: cli.py counts that): look at its size
        every LOG_CHECK_BYTES, so it stays within its cap plus that between the watchdog's looks."""
        self._bytes += n
        if self._bytes >= LOG_CHECK_BYTES:
            self._bytes = 0
            self.rotate_if_full()

    def rotate_if_full(self) -> None:
        """Past its cap, move the log's end to FILE.1 and start afresh (the fds writing to it stay valid)."""
        if self.forked:
            return
        with self._lock:
            self._rotate()

    def _rotate(self) -> None:
        log_file = self.path
        if log_file.parent == self.folder.path:         # in the work folder: through the folder it checked
            log_file = self.folder.file(log_file.name)
        try:
            # a look at its size opens nothing (the watchdog looks often: no descriptor comes and goes)
            if os.stat(log_file, follow_symlinks=False).st_size <= self.cap:
                return
        except OSError:
            return
        try:
            # never through a link, and only a regular file of ours, 0600 (not one someone put in its place)
            fd = open_private(log_file, os.O_RDWR | getattr(os, "O_NONBLOCK", 0), self.path)
        except OSError:
            return
        try:
            size = os.fstat(fd).st_size
            if size <= self.cap:
                return
            backup = log_file.with_name(log_file.name + ".1")
            try:
                try:
                    st = os.lstat(backup)
                    if not stat.S_ISREG(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
                        raise PermissionError(f"it is not a regular file of yours (uid {st.st_uid}, mode "
                                              f"{st.st_mode:o})")
                except FileNotFoundError:
                    pass
                out = create_private(backup)         # ours unlinked first, then O_CREAT|O_EXCL|O_NOFOLLOW, 0600
            except OSError as e:                     # another user's file there: never written into, nor removed
                os.ftruncate(fd, 0)
                log.warning("server.log reached %d bytes and %s cannot be made afresh (%s): its end was dropped "
                            "instead; remove that file", self.cap, self.path.with_name(backup.name), e)
                return
            with open(out, "wb") as dst:
                os.lseek(fd, size - min(self.cap, size), os.SEEK_SET)
                left = min(self.cap, size)
                while left > 0:
                    chunk = os.read(fd, min(left, 1 << 20))
                    if not chunk:
                        break
                    dst.write(chunk)
                    left -= len(chunk)
            os.ftruncate(fd, 0)
            log.info("server.log reached %d bytes: its end moved to %s", self.cap, backup.name)
        except OSError:
            pass
        finally:
            os.close(fd)
