"""The relay behind a real JupyterHub (docs/SECURITY.md): a hub with the dummy authenticator and the simple local
spawner, configurable-http-proxy in front, two users' single-user servers (this venv's python, so they load lesspy's
extension) and a headless named session in each server's runtime dir. Through the hub's public URL a valid hub API
token works; an expired token and another user's token are refused and run nothing (a call that would create a file
was sent and the file is not there); and how long the single-user server trusts the hub's earlier answer about a
token (HubOAuth.cache_max_age).

Skipped, with the reason, without jupyterhub or without node/npm to install configurable-http-proxy once into
~/.cache/lesspy/chp."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, List, Optional, Tuple

import pytest
import websocket

from jupyter_servers import HeadlessSession, RelayClient, free_port, http_json, wait_for
from lesspy_kernel.coerce import encode_call
from lesspy_kernel.wire import Tag
from lesspy_kernel.wire.message import message_header

pytestmark = pytest.mark.timeout(180)

pytest.importorskip("jupyterhub", reason="jupyterhub is not installed (the `test` extra has it)")

CHP_HOME = Path.home() / ".cache" / "lesspy" / "chp"
CHP = CHP_HOME / "node_modules" / ".bin" / "configurable-http-proxy"
SESSION = "hubbed"
MODULE = '''
def add(a, b):
    return a + b
def touch(path):
    open(path, "w").close()
    return path
'''


def _proxy_command() -> Path:
    """configurable-http-proxy, installed with npm into CHP_HOME the first time."""
    if CHP.exists():
        return CHP
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm are not available to install configurable-http-proxy")
    CHP_HOME.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["npm", "install", "--prefix", str(CHP_HOME), "configurable-http-proxy"], check=True,
                       capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"configurable-http-proxy could not be installed with npm: {e}")
    if not CHP.exists():
        pytest.skip(f"npm did not install configurable-http-proxy at {CHP}")
    return CHP


def _stop_pid(pid: int, command: str, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL, the process `pid` if it still runs `command` (a pid the hub's shutdown freed may have
    been reused by another process by now)."""
    def gone() -> bool:
        try:
            if command not in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace"):
                return True
            return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
        except OSError:
            return True
    if gone():
        return
    os.kill(pid, signal.SIGTERM)
    try:
        wait_for(gone, timeout, f"pid {pid} to stop")
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)


class Hub:
    """`python -m jupyterhub` on 127.0.0.1 in a folder of its own, with an admin service token for its REST API."""

    def __init__(self, tmp: Path, users: Tuple[str, ...], uncached: Tuple[str, ...] = ()) -> None:
        self.tmp = tmp
        self.port, self.hub_port, self.api_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.admin_token = os.urandom(16).hex()
        self.server_pids: List[int] = []
        self.ready_after = 0.0              # seconds from starting the hub to the session being served
        for user in users:
            (self.runtime(user)).mkdir(parents=True, exist_ok=True)
        singleuser = [sys.executable, "-m", "jupyterhub.singleuser"]
        if os.getuid() == 0:
            singleuser.append("--allow-root")
        config = f"""
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {self.port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {self.hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.api_port}"
c.ConfigurableHTTPProxy.command = [{str(_proxy_command())!r}]
c.ConfigurableHTTPProxy.pid_file = {str(tmp / 'proxy.pid')!r}
c.JupyterHub.db_url = "sqlite:///{tmp / 'hub.sqlite'}"
c.JupyterHub.cookie_secret_file = {str(tmp / 'cookie_secret')!r}
c.JupyterHub.pid_file = {str(tmp / 'hub.pid')!r}
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = {set(users)!r}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {str(tmp / 'home' / '{username}')!r}
c.Spawner.cmd = {singleuser!r}
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.Spawner.environment = {{
    "JUPYTER_RUNTIME_DIR": lambda spawner: {str(tmp / 'runtime')!r} + "/" + spawner.user.name,
    "JUPYTER_CONFIG_DIR": lambda spawner: {str(tmp / 'config')!r} + "/" + spawner.user.name,
}}
c.JupyterHub.services = [{{"name": "lesspy-test-admin", "api_token": {self.admin_token!r}}}]
c.JupyterHub.load_roles = [{{"name": "lesspy-test-admin", "services": ["lesspy-test-admin"],
                             "scopes": ["admin:users", "admin:servers", "tokens", "read:hub"]}}]
"""
        for user in users:
            (tmp / "config" / user).mkdir(parents=True, exist_ok=True)
            if user in uncached:                    # keeps the hub's answer about a token 1 s (0 is forever)
                (tmp / "config" / user / "jupyter_server_config.py").write_text("c.HubOAuth.cache_max_age = 1\n")
        (tmp / "jupyterhub_config.py").write_text(config)
        env = dict(os.environ)
        for key in ("JUPYTER_TOKEN", "JUPYTERHUB_API_TOKEN", "CONFIGPROXY_AUTH_TOKEN"):
            env.pop(key, None)
        self.log = tmp / "hub.log"
        self._log = open(self.log, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(tmp / "jupyterhub_config.py")],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=str(tmp))
        try:
            wait_for(lambda: self._answers() or self.proc.poll() is not None, 60, "the hub to answer")
            assert self.proc.poll() is None, self.output()
        except BaseException:
            self.stop()
            raise

    def runtime(self, user: str) -> Path:
        return self.tmp / "runtime" / user

    def output(self) -> str:
        self._log.flush()
        return self.log.read_text(errors="replace")

    def _answers(self) -> bool:
        try:
            return self.api("GET", "info")[0] == 200
        except (OSError, ValueError):
            return False

    def request(self, method: str, path: str, token: Optional[str], body: Any = None,
                timeout: float = 30) -> Tuple[int, Any]:
        """(status, JSON or text) of `method <hub public URL><path>`."""
        return http_json(method, self.url + path, body, token, timeout=timeout)

    def api(self, method: str, path: str, body: Any = None) -> Tuple[int, Any]:
        return self.request(method, "hub/api/" + path, self.admin_token, body)

    def spawn(self, user: str) -> int:
        """Create `user`, start their single-user server; its pid (from its runtime file)."""
        status, answer = self.api("POST", f"users/{user}")
        assert status in (201, 409), (status, answer)
        status, answer = self.api("POST", f"users/{user}/server")
        assert status in (201, 202), (status, answer)
        wait_for(lambda: (self.api("GET", f"users/{user}")[1].get("servers", {}).get("", {}).get("ready")
                          or self.proc.poll() is not None), 60, f"{user}'s server to be ready")
        assert self.proc.poll() is None, self.output()
        files = wait_for(lambda: list(self.runtime(user).glob("jpserver-*.json")), 10, f"{user}'s server file")
        pid = int(files[0].name[len("jpserver-"):-len(".json")])
        self.server_pids.append(pid)
        return pid

    def token(self, user: str, **body: Any) -> str:
        status, answer = self.api("POST", f"users/{user}/tokens", dict(body, note="lesspy test"))
        assert status == 201, (status, answer)
        return answer["token"]

    def stop(self) -> None:
        """The hub by its pid (it stops the proxy and the servers it spawned); then whatever of those is left."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        pid_file = self.tmp / "proxy.pid"
        if pid_file.exists():
            try:
                _stop_pid(int(pid_file.read_text().strip()), "configurable-http-proxy")
            except (ValueError, ProcessLookupError):
                pass
        for pid in self.server_pids:
            try:
                _stop_pid(pid, "jupyterhub.singleuser")
            except ProcessLookupError:
                pass
        self._log.close()


class _UserEnv:
    """What HeadlessSession needs of a server: its folder for logs and the environment of its user."""

    def __init__(self, tmp: Path, runtime: Path) -> None:
        self.tmp = tmp
        self.env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(runtime))


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hub")
    module = tmp / "hubbed_module.py"
    module.write_text(MODULE)
    started = time.monotonic()
    h = Hub(tmp, ("alice", "bob"), uncached=("bob",))
    sessions: List[HeadlessSession] = []
    try:
        h.spawn("alice")
        h.spawn("bob")
        for user in ("alice", "bob"):
            sessions.append(HeadlessSession(_UserEnv(tmp, h.runtime(user)),       # type: ignore[arg-type]
                                            h.runtime(user) / "lesspy" / SESSION, module))
        h.ready_after = time.monotonic() - started
        yield h
    finally:
        for s in sessions:
            s.stop()
        h.stop()


def _relay_url(hub: Hub, user: str) -> str:
    return "ws" + hub.url[len("http"):] + f"user/{user}/lesspy/{SESSION}"


def _refused(hub: Hub, user: str, token: str, tmp_path: Path) -> Tuple[int, Any]:
    """Open the relay with `token` and, should it be accepted, send a call that creates a file; the HTTP status and
    the answer. The file must not exist afterwards."""
    target = tmp_path / "ran"
    status, answer = 101, None
    try:
        with RelayClient(_relay_url(hub, user), token=token, timeout=15) as ws:
            call = encode_call("touch", Tag.STRING, [str(target)], [Tag.STRING])
            ws.send(message_header(1, len(call), 0, ws.session) + call)
            time.sleep(0.5)
    except websocket.WebSocketBadStatusException as e:
        status, answer = e.status_code, json.loads(e.resp_body or b"null")
    time.sleep(0.3)                                  # the time anything that slipped through would need to run
    assert not target.exists()
    return status, answer


def test_a_valid_hub_token_calls_the_users_session(hub, tmp_path):
    token = hub.token("alice")
    with RelayClient(_relay_url(hub, "alice"), token=token, timeout=15) as ws:
        assert ws.call("add", Tag.INT64, [2, 3], [Tag.INT64, Tag.INT64], timeout=15) == 5
        target = tmp_path / "ran"
        assert ws.call("touch", Tag.STRING, [str(target)], [Tag.STRING], timeout=15) == str(target)
    assert target.exists()                          # the side effect the refusals below check for
    print(f"hub + proxy + two single-user servers + a session ready in {hub.ready_after:.1f} s")


def test_an_expired_hub_token_is_refused_and_nothing_runs(hub, tmp_path):
    token = hub.token("alice", expires_in=1)
    time.sleep(2.5)
    assert hub.request("GET", "hub/api/user", token)[0] in (401, 403)        # the hub itself agrees it expired
    status, answer = _refused(hub, "alice", token, tmp_path)
    assert status == 403 and answer["message"], (status, answer)


def test_another_hub_users_token_is_refused_and_nothing_runs(hub, tmp_path):
    token = hub.token("bob")
    assert hub.request("GET", "hub/api/user", token)[1]["name"] == "bob"       # a valid token, of bob
    status, answer = _refused(hub, "alice", token, tmp_path)
    assert status == 403 and answer["message"], (status, answer)


def _call_then_expire(hub: Hub, user: str) -> str:
    """A token of `user` used through the relay while valid, then left to expire."""
    token = hub.token(user, expires_in=2)
    with RelayClient(_relay_url(hub, user), token=token, timeout=15) as ws:
        assert ws.call("add", Tag.INT64, [2, 3], [Tag.INT64, Tag.INT64], timeout=15) == 5
    time.sleep(3)
    assert hub.request("GET", "hub/api/user", token)[0] in (401, 403)
    return token


def test_a_token_used_before_it_expired_is_refused_when_the_server_caches_hub_answers_briefly(hub, tmp_path):
    """With `c.HubOAuth.cache_max_age = 1` in the single-user server's config (bob's here) the expiry holds within
    a second."""
    token = _call_then_expire(hub, "bob")
    status, answer = _refused(hub, "bob", token, tmp_path)
    assert status == 403 and answer["message"], (status, answer)


def test_by_default_a_token_used_before_it_expired_still_works_from_the_hubs_cache(hub, tmp_path):
    """JupyterHub's single-user server caches the hub's answer about a token for HubOAuth.cache_max_age (300 s by
    default): within that time a token that expired after being used still reaches the session (alice's server
    runs with the default). docs/SECURITY.md tells deployments to lower it; this test notices if that changes."""
    token = _call_then_expire(hub, "alice")
    with RelayClient(_relay_url(hub, "alice"), token=token, timeout=15) as ws:
        assert ws.call("add", Tag.INT64, [1, 1], [Tag.INT64, Tag.INT64], timeout=15) == 2
