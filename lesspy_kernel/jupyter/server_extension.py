"""The lesspy Jupyter Server extension: the sessions of this host reachable through Jupyter Server.

Enabled by jupyter-config/jupyter_server_config.d/lesspy_kernel.json (shipped in the wheel), it serves, under the
server's base_url and behind its authentication, authorisation, TLS and origin checks:

- `GET <base>lesspy/`: the named sessions of this host with their status (JSON);
- `GET <base>lesspy/<name>`: one session's status, or with an Upgrade the websocket relay to it (relay.py).

It also writes `<runtime dir>/lesspy-jpserver-<pid>.json` (the server's URL, no token) so that `%lesspy serve` in
one of its kernels can print the remote URL. Configure with `c.LessPyRelay.max_message_size = ...`.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
from typing import Any, Dict, List

from jupyter_core.utils import ensure_async
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from . import jpserver_file, sessions
from .relay import LessPyRelay, RelayHandler


class ListHandler(APIHandler):
    """`GET <base>lesspy/`: `{"sessions": [...]}`, every named session whose status answers within 1 s."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        sessions.write_json_error(self, status_code, **kwargs)

    @web.authenticated
    async def get(self) -> None:
        authorized = await ensure_async(self.authorizer.is_authorized(self, self.current_user, "read", "kernels"))
        if not authorized:
            raise web.HTTPError(403, "Jupyter Server's authorizer does not let this user read kernels")
        try:
            parent_fd = sessions.open_session_parent(sessions.sessions_parent())
            os.close(parent_fd)
        except FileNotFoundError:
            self.finish(json.dumps({"sessions": []}))
            return
        except (PermissionError, NotADirectoryError) as e:
            raise web.HTTPError(403, "%s", str(e)) from None
        loop = asyncio.get_running_loop()
        names = sessions.served_names()
        answers = await asyncio.gather(*(loop.run_in_executor(None, sessions.status_or_error,
                                                               sessions.sessions_parent() / name)
                                         for name in names))
        found: List[Dict[str, Any]] = []
        for name, status in zip(names, answers):
            if isinstance(status, dict):
                found.append({key: status.get(key) for key in
                              ("name", "pid", "mode", "module", "clients", "lanes", "calls", "errors", "uptime_s")}
                             | {"path": sessions.session_path(self.base_url, name)})
        self.finish(json.dumps({"sessions": found}))


def _write_server_file(serverapp: Any) -> None:
    pid = os.getpid()
    try:
        jpserver_file.write(pid, serverapp.connection_url, serverapp.base_url)
    except OSError as e:
        serverapp.log.warning("lesspy: cannot write %s: %s", jpserver_file.path_for(pid), e)
        return
    atexit.register(jpserver_file.remove, pid)


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register the handlers under base_url."""
    relay = LessPyRelay(parent=serverapp)
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", [
        (url_path_join(base, "lesspy", "?"), ListHandler),
        (url_path_join(base, "lesspy", "(.+)"), RelayHandler, {"relay": relay}),
    ])
    serverapp.log.info("lesspy: sessions of this host served at %s", url_path_join(base, "lesspy/"))


async def _start_jupyter_server_extension(serverapp: Any) -> None:
    """Once the server listens (its port is known): write the file that tells kernels its URL."""
    _write_server_file(serverapp)
