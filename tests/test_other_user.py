"""Another local user can neither call nor delay the owner (issue: nobody else gets in, nobody keeps the owner
out). The notify socket lives inside the 0700 work folder, so another user cannot even connect to it.

Needs root (to create the second user with useradd); skipped with that reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from lesspy_kernel.client import ClientLane
from lesspy_kernel.wire import Tag
from servers import ROOT, Headless

OTHER = "lesspy_other"
LANES_MODULE = ROOT / "tests" / "pymodules" / "lanes_module.py"

ATTACK = r"""
import socket, sys, time
path = sys.argv[1]
ok = denied = 0
held = []
end = time.time() + float(sys.argv[2])
while time.time() < end:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        held.append(s)           # hold it open, as an attacker would
        ok += 1
    except OSError:
        denied += 1
        s.close()
    for name in ("session.key", "python.pid"):
        try:
            open(path.rsplit("/", 1)[0] + "/" + name).read()
            ok += 1
        except OSError:
            denied += 1
print(ok, denied)
"""


def _other_user() -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a second local user (useradd)")
    if shutil.which("useradd") is None:
        pytest.skip("useradd is not installed")
    if subprocess.run(["id", OTHER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER], check=True)
    return OTHER


def _python_for(user: str) -> str:
    """An interpreter the other user may run (ours may live under root's home)."""
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        if Path(candidate).exists() and subprocess.run(["runuser", "-u", user, "--", candidate, "-c", "pass"],
                                                       capture_output=True).returncode == 0:
            return candidate
    pytest.skip(f"no Python interpreter that {user} may run")


def test_another_user_cannot_connect_read_the_key_or_delay_the_owner():
    user = _other_user()
    python = _python_for(user)
    base = Path(tempfile.mkdtemp(prefix="lesspy-other-"))
    try:
        os.chmod(base, 0o755)                       # the parent is open: only the work folder protects it
        with Headless(base / "work", LANES_MODULE, "--keep-alive") as s:
            sock = str(s.folder / "notify.sock")
            attack = subprocess.Popen(["runuser", "-u", user, "--", python, "-c", ATTACK, sock, "4"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(0.5)
            with ClientLane(s.folder) as lane:
                t0 = time.monotonic()
                for i in range(200):
                    assert lane.call("add_ints", Tag.INT32, [i, 1], [Tag.INT32, Tag.INT32]) == i + 1
                assert time.monotonic() - t0 < 5
            out, err = attack.communicate(timeout=30)
            assert attack.returncode == 0, err
            ok, denied = map(int, out.split())
            assert ok == 0 and denied > 0, f"the other user got in {ok} times"
    finally:
        shutil.rmtree(base, ignore_errors=True)
