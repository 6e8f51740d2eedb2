"""`python -m lesspy_kernel serve`: the headless server, as the C# `LessPythonInvoke.Initialize<T>` starts it."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import List, Optional

from .namespaces import ModuleNamespace, load_module
from .server import DEFAULT_CAPACITY, Server

_UNITS = {"": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024**2, "MB": 1024**2, "MIB": 1024**2,
          "G": 1024**3, "GB": 1024**3, "GIB": 1024**3}


def parse_size(text: str) -> int:
    """'16M', '256MiB', '1G' or a plain byte count."""
    t = str(text).strip().upper()
    digits = t.rstrip("KMGIB")
    unit = t[len(digits):]
    if not digits.isdigit() or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 16777216, 64M or 1G")
    return int(digits) * _UNITS[unit]


def _redirect_output(path: str) -> None:
    """Send stdout/stderr (the log, and what called functions print) to the log file for good.

    The C# side reads our pipes only until we are ready; with keep-alive we outlive it, and a write
    to a pipe nobody reads would block or fail the next call.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s lesspy %(levelname)s %(message)s", stream=sys.stderr)
    try:
        module = load_module(args.module)
    except Exception as e:
        print(f"lesspy: cannot import {args.module}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    if args.keep_alive and hasattr(os, "setsid"):
        # outlive the app that started us: its Ctrl-C or closed terminal signals its whole process group
        try:
            os.setsid()
        except OSError:
            pass
    server = Server(ModuleNamespace(module, only), Path(args.work_folder).absolute(), capacity=args.capacity,
                    keep_alive=args.keep_alive, parent_pid=args.parent_pid, max_clients=args.max_clients,
                    lock_held=args.lock_held, log_file=args.log_file, log_cap=args.log_max_bytes)
    try:
        server.open()
    except (OSError, ValueError) as e:
        print(f"lesspy: cannot serve {args.work_folder}: {e}", file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: server.stop(timeout=0))
    print(f"lesspy: serving {module.__name__} in {server.folder.path} on {server.address}", flush=True)
    if args.log_file:
        _redirect_output(args.log_file)
    server.serve_forever()
    # the files are gone; a call stuck in C code must not keep the process alive (lane threads are daemons,
    # but interpreter shutdown would still wait for the GIL they hold)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lesspy_kernel",
                                     description="Serve a Python module's functions to a C# LessPy client.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="serve a module headless (what LessPythonInvoke.Initialize starts)")
    p.add_argument("--module", required=True, help="path of the .py file whose public functions are exported")
    p.add_argument("--work-folder", default="lesspy_work", help="folder for req.mmf, resp.mmf, pid, port, key")
    p.add_argument("--capacity", type=parse_size, default=DEFAULT_CAPACITY,
                   help="size of each mapping, e.g. 16M (default) or 256M")
    p.add_argument("--keep-alive", action="store_true",
                   help="keep serving after the client disconnects (the next client reuses this server)")
    p.add_argument("--only", help="comma-separated function names: export only these")
    p.add_argument("--parent-pid", type=int, help="stop when this process exits (set by the C# client)")
    p.add_argument("--log-file", help="after start-up, write all output here (capped, rotated to FILE.1)")
    p.add_argument("--log-max-bytes", type=parse_size, default=10 * 1024 * 1024,
                   help="rotate the log file to FILE.1 past this size (default 10M)")
    p.add_argument("--max-clients", type=int, default=8, help="how many clients (apps) may connect at once")
    p.add_argument("--lock-held", action="store_true", help=argparse.SUPPRESS)  # the starter holds lesspy.lock
    p.add_argument("--debug", action="store_true", help="log every call")
    args = parser.parse_args(argv)
    return serve(args)
