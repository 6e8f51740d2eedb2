"""Start and stop real headless servers for tests; every wait has a timeout, every process is stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
TYPES_MODULE = ROOT / "tests" / "pymodules" / "types_module.py"


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Headless:
    """`python -m lesspy_kernel serve` in a subprocess."""

    def __init__(self, folder: Path, module: Path = TYPES_MODULE, *flags: str, env: Optional[dict] = None,
                 log: Optional[Path] = None, timeout: float = 20.0) -> None:
        self.folder = Path(folder)
        self.log = log or self.folder.parent / (self.folder.name + ".server.log")
        self._log = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lesspy_kernel", "serve", "--module", str(module), "--work-folder",
             str(self.folder), *flags], stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
        try:
            wait_for(lambda: self._ready() or self.proc.poll() is not None, timeout, f"notify.port of {self.folder}")
            assert self.proc.poll() is None, self.output()
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        try:
            return (self.folder / "notify.port").exists() and \
                int((self.folder / "python.pid").read_text()) == self.proc.pid
        except (OSError, ValueError):
            return False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        self._log.flush()
        return self.log.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
