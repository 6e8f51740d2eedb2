"""The named sessions of this host as the relay sees them: a name checked and turned into its folder (with the
trust checks of workfolder.py), a session's status, and the FRAMES connection the relay opens. Blocking calls
here run off the IOLoop (the handlers use a thread executor)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

from tornado import web
from tornado.escape import url_escape
from jupyter_server.utils import url_path_join

from .. import client
from ..transport.handshake import HandshakeError
from ..transport.stream_lane import HANDOFF_NEEDS_UNIX
from ..wire.handshake import Purpose, Result
from ..workfolder import (PORT_FILE, SESSIONS, folder_base, jupyter_runtime_dir, open_folder,
                          open_session_parent, session_folder)

STATUS_TIMEOUT = 1.0        # seconds a session's status may take (the listing asks every session at once)
GONE = 4404
REFUSED = 4503


def write_json_error(handler: web.RequestHandler, status_code: int, **kwargs: Any) -> None:
    """An error as JSON `{"message", "reason"}` with the whole message (an HTTPError's text goes in its args, so
    that a '%' in a path cannot upset tornado's log line)."""
    handler.set_header("Content-Type", "application/json")
    message = handler._reason
    exc = kwargs.get("exc_info", (None, None, None))[1]
    if isinstance(exc, web.HTTPError) and exc.log_message:
        message = exc.log_message % exc.args if exc.args else exc.log_message
    handler.finish(json.dumps({"message": message, "reason": handler._reason}))


def sessions_parent() -> Path:
    return jupyter_runtime_dir() / SESSIONS


def session_path(base_url: str, name: str) -> str:
    return url_path_join(base_url, "lesspy", url_escape(name, plus=False))


def check_name(name: str) -> Path:
    """The folder of session `name`; HTTP 400 for anything but a plain name (workfolder.session_folder's rule,
    and no control characters)."""
    try:
        if any(ord(c) < 32 or c == "\x7f" for c in name):
            raise ValueError(f"a session name is a plain name such as 'demo', not {name!r}")
        return session_folder(name)
    except ValueError as e:
        raise web.HTTPError(400, "%s", str(e)) from None


def served_names() -> List[str]:
    """The names under <runtime dir>/lesspy/ whose folder holds a notify.port (no server is asked)."""
    try:
        entries = sorted(os.listdir(sessions_parent()))
    except OSError:
        return []
    return [n for n in entries if os.path.lexists(sessions_parent() / n / PORT_FILE)]


def not_served(name: str) -> web.HTTPError:
    names = served_names()
    here = f"sessions here: {', '.join(names)}" if names else "no session is served here"
    return web.HTTPError(404, "%s", f"no lesspy session named {name!r} is served on this host ({here}); start one "
                                    f"with %lesspy serve --name {name}")


def served_folder(name: str) -> Path:
    """The folder of session `name` after the trust checks (ours, private, not a symlink, its session.name); HTTP
    400 (bad name), 403 (a check failed: its text) or 404 (nothing serves it)."""
    folder = check_name(name)
    parent = folder.parent
    if not os.path.lexists(parent):
        raise not_served(name)
    try:
        parent_fd = open_session_parent(parent)
    except (PermissionError, NotADirectoryError) as e:
        raise web.HTTPError(403, "%s", str(e)) from None
    except FileNotFoundError:
        raise not_served(name) from None
    try:
        try:
            fd = open_folder(folder, parent_fd=parent_fd)
        except FileNotFoundError:
            raise not_served(name) from None
        except (PermissionError, NotADirectoryError) as e:
            raise web.HTTPError(403, "%s", str(e)) from None
        try:
            if not os.path.lexists(folder_base(folder, fd) / PORT_FILE):
                raise not_served(name)
        finally:
            if fd is not None:
                os.close(fd)
    finally:
        os.close(parent_fd)
    return folder


def status_or_error(folder: Path, timeout: float = STATUS_TIMEOUT) -> Union[Dict[str, Any], web.HTTPError]:
    """The session's status JSON (mode spelled as the listing spells it), or the HTTP error that says why not."""
    try:
        status = client.status(folder, timeout=timeout)
    except FileNotFoundError as e:
        if not os.path.lexists(folder / PORT_FILE):         # stopped meanwhile
            return not_served(folder.name)
        return web.HTTPError(503, "%s", f"the lesspy session {folder.name!r} does not answer: its server has gone "
                                        f"without cleaning up ({e})")
    except PermissionError as e:
        return web.HTTPError(403, "%s", str(e))
    except Exception as e:      # noqa: BLE001 - whatever answers there, the listing and the server go on
        return web.HTTPError(503, "%s", f"the lesspy session {folder.name!r} does not answer: {_why(e)}")
    if not isinstance(status, dict):
        return web.HTTPError(503, "%s", f"the lesspy session {folder.name!r} answered a status that is not an object")
    status["mode"] = str(status.get("mode", "")).replace("_", "-")
    status["name"] = folder.name
    return status


def _why(e: BaseException) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "nothing listens on its socket (its server ended without cleaning up)"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return str(e) or "it did not answer in time (stopped in a debugger, or a call holds the GIL)"
    return f"{type(e).__name__}: {e}"


def open_lane(folder: Path, client_id: int, timeout: float, hand_off: bool = False) -> client.FramesConnection:
    """Connect to the session of `folder` with purpose FRAMES, or WEBSOCKET when the websocket will be handed
    over (blocking: the handler runs it in an executor)."""
    if hand_off:
        try:
            return client.open_frames(folder, client_id=client_id, timeout=timeout, purpose=Purpose.WEBSOCKET)
        except HandshakeError as e:
            if e.result != Result.BUSY or HANDOFF_NEEDS_UNIX not in str(e):
                raise
        # a session on a TCP notify socket takes no descriptor: relayed (the FRAMES socket says so: not AF_UNIX)
    return client.open_frames(folder, client_id=client_id, timeout=timeout)


def connect_failure(name: str, e: BaseException) -> Tuple[int, str]:
    """The close code and reason for a FRAMES connection that failed."""
    if isinstance(e, (FileNotFoundError, ConnectionRefusedError)):
        return GONE, f"lesspy session {name!r} is not served any more"
    if isinstance(e, HandshakeError):
        if e.result == Result.BUSY:
            return REFUSED, f"lesspy session {name!r} is busy: {e}"
        if "unknown connection purpose" in str(e):
            # (a close reason holds 123 bytes)
            return REFUSED, f"lesspy session {name!r} runs an older lesspy_kernel: restart its kernel after upgrading"
        return REFUSED, f"lesspy session {name!r} refused the relay: {e}"
    if isinstance(e, (asyncio.TimeoutError, socket.timeout, TimeoutError)):
        return REFUSED, f"lesspy session {name!r} does not answer"
    if isinstance(e, PermissionError):
        return REFUSED, f"lesspy session {name!r}: {e}"
    return REFUSED, f"lesspy session {name!r}: {type(e).__name__}: {e}"
