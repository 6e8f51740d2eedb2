"""`lesspy`, the command line (`python -m lesspy_kernel` is the same program).

    lesspy serve --module exporting_module.py [--work-folder lesspy_work | --name NAME]   serve a module until stopped
    lesspy stub exporting_module.py -o IMyApi.cs                            the C# interface from its type hints
    lesspy status FOLDER|NAME                                               is a server there? pid, version, calls
    lesspy stop [--force] FOLDER|NAME                                       ask that server to stop
    lesspy csharp --out DIR                                                 write LessPy's C# sources (no clone needed)

Exit codes: 0 done; 1 failed (no server answered, a file could not be written, the server failed);
2 usage (bad options, a module that does not exist or does not import, a folder another server serves).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, List, Optional

from . import __version__

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

_UNITS = {"": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024**2, "MB": 1024**2, "MIB": 1024**2,
          "G": 1024**3, "GB": 1024**3, "GIB": 1024**3}


class CommandError(Exception):
    """A command could not do its work; `code` is the exit code, the message is printed as is."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def parse_size(text: str) -> int:
    """'16M', '256MiB', '1G' or a plain byte count."""
    t = str(text).strip().upper()
    digits = t.rstrip("KMGIB")
    unit = t[len(digits):]
    if not digits.isdigit() or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 16777216, 64M or 1G")
    return int(digits) * _UNITS[unit]


def resolve_folder(text: str) -> Path:
    """A work folder path, or a session name (`%lesspy serve --name NAME`) resolved like the C# client does
    (docs/PROTOCOL.md 1): an argument with a path separator (`./prod`, `/srv/wf`) is a folder; a bare NAME is
    the session `<jupyter runtime dir>/lesspy/NAME` when that exists, else the folder ./NAME when that is a
    directory (`lesspy status lesspy_work`), else the session (which then says nothing serves it). A folder of
    someone else's in the current directory never hides one of your sessions."""
    from .workfolder import session_folder

    if os.sep in text or (os.altsep and os.altsep in text) or text in (".", ".."):
        return Path(text).absolute()
    try:
        session = session_folder(text)
    except ValueError as e:     # not a usable session name
        raise CommandError(f"lesspy: {e}", EXIT_USAGE) from None
    if not os.path.lexists(session) and Path(text).is_dir():
        return Path(text).absolute()
    return session


def _no_server(command: str, folder: Path, e: Exception) -> CommandError:
    if not folder.is_dir():
        return CommandError(f"lesspy {command}: nothing serves {folder}: there is no such folder (a bare NAME is "
                            "the session <jupyter runtime dir>/lesspy/NAME, or else the folder ./NAME when there "
                            "is no such session; `jupyter --runtime-dir` shows the runtime dir; give a folder as "
                            "./NAME or a full path)")
    if isinstance(e, (ConnectionRefusedError, FileNotFoundError)):
        gone = _ended_server(folder)
        if gone is not None:
            return CommandError(f"lesspy {command}: no lesspy server answers in {folder}: the server that served "
                                f"it (pid {gone}) has ended without removing its files (it crashed or was "
                                "killed). Serving again in this folder replaces them")
        if isinstance(e, ConnectionRefusedError):
            return CommandError(f"lesspy {command}: no lesspy server answers in {folder}: nothing listens on "
                                "its notify socket (the server has ended)")
    return CommandError(f"lesspy {command}: no lesspy server answers in {folder}: {type(e).__name__}: {e}")


def _ended_server(folder: Path) -> Optional[int]:
    """The pid python.pid names in `folder` when that process has ended, else None."""
    from .workfolder import PID_FILE, pid_alive, read_private

    try:
        pid = int(read_private(folder / PID_FILE).decode("ascii").strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and not pid_alive(pid) else None


def import_failure(prefix: str, module_path: str, e: BaseException, debug: bool = False) -> CommandError:
    """What the module's top level raised, with the traceback of the module's own lines (the file and line
    that failed; a SyntaxError's caret): the CLI prints it, and C#'s Initialize shows it in its exception.
    `debug` keeps every frame, lesspy's and importlib's too."""
    import traceback

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frames = traceback.extract_tb(e.__traceback__)
    if not debug:
        frames = traceback.StackSummary.from_list(
            [f for f in frames if not f.filename.startswith(("<frozen ", package))])
    where = f" ({os.path.basename(frames[-1].filename)} line {frames[-1].lineno})" if frames else ""
    if isinstance(e, SyntaxError):
        where = ""                               # its message names the file and line
    lines = ["Traceback (most recent call last):\n"] + frames.format() if frames else []
    lines += traceback.format_exception_only(type(e), e)
    return CommandError(f"{prefix}: cannot import {module_path}: {type(e).__name__}: {e}{where}\n"
                        + "".join(lines).rstrip(), EXIT_USAGE)


def _load(module_path: str, debug: bool = False) -> Any:
    from .namespaces import load_module

    _check_module(module_path)
    try:
        return load_module(module_path)
    except BaseException as e:  # SystemExit or anything the module's top level raises (FileNotFoundError too)
        if isinstance(e, KeyboardInterrupt):
            raise
        raise import_failure("lesspy", module_path, e, debug) from None


def _check_module(module_path: str) -> None:
    from .namespaces import module_file

    try:
        module_file(module_path)
    except FileNotFoundError as e:
        raise CommandError(f"lesspy: {e}", EXIT_USAGE) from None


# ------------------------------------------------------------------------------------------------ serve


def _open_log(path: str, missing_ok: bool = False, shown: Optional[str] = None) -> Optional[int]:
    """Open (or create, 0600) the --log-file before serving, never through a symbolic link, and only a regular
    file of the current user: one of ours open to others is made 0600; another user's file (pre-created in a
    shared directory such as /tmp to read the log), a FIFO or a device is refused (opened O_NONBLOCK: a FIFO
    nobody reads does not block the start)."""
    import errno
    import stat

    from .workfolder import check_private

    where, path = path, shown or path            # `where` is opened (maybe /proc/self/fd/N/...), `path` is shown
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    for name in ("O_NOFOLLOW", "O_CLOEXEC", "O_NONBLOCK"):
        flags |= getattr(os, name, 0)
    try:
        fd = os.open(where, flags, 0o600)
    except OSError as e:
        if missing_ok and e.errno == errno.ENOENT:    # in the work folder, which serving creates: opened then
            return None
        if e.errno == errno.ELOOP:
            why = "it is a symbolic link (lesspy never writes through one)"
        elif e.errno == errno.ENXIO:
            why = "it is a named pipe (FIFO) that nobody reads, not a regular file"
        else:
            why = e.strerror or str(e)
        raise CommandError(f"lesspy: cannot use --log-file {path}: {why}: remove it or choose another file",
                           EXIT_USAGE) from None
    try:
        st = os.fstat(fd)
        if hasattr(os, "getuid") and stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and \
                stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, 0o600)                 # ours: what it logs is nobody else's
        check_private(fd, path)
        if hasattr(os, "O_NONBLOCK"):
            import fcntl

            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except OSError as e:
        os.close(fd)
        raise CommandError(f"lesspy: refusing --log-file {path}: {e} (or choose another log file)",
                           EXIT_USAGE) from None
    return fd


def _redirect_output(fd: int) -> None:
    """Send stdout/stderr (the log, and what called functions print) to the log file for good (`fd`, from
    `_open_log`; closed here).

    The C# side reads our pipes only until we are ready; with keep-alive we outlive it, and a write
    to a pipe nobody reads would block or fail the next call.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def _default_signals(ours: Any) -> None:
    """In a forked child: SIGTERM and SIGINT back to Python's defaults where they are still the server's."""
    for sig, default in ((signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.default_int_handler)):
        try:
            if signal.getsignal(sig) is ours:
                signal.signal(sig, default)
        except (ValueError, OSError):
            pass


class _CountedOutput:
    """sys.stdout / sys.stderr of a server with --log-file: what called functions print is counted, so the log
    is rotated as it grows (LogFile.count), not only when the watchdog looks. Writes straight to the file
    descriptor (os.write, C code) are seen by the watchdog only (server.WATCH_INTERVAL)."""

    def __init__(self, stream: Any, logfile: Any) -> None:
        self._stream = stream
        self._logfile = logfile

    def write(self, text: str) -> int:
        n = self._stream.write(text)
        self._logfile.count(len(text))
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _log_to_stderr(debug: bool) -> None:
    """lesspy's log lines (its own logger, lesspy_kernel) to stderr, which --log-file redirects. The root logger
    stays the served module's: no handler added there, and a module that sets it to DEBUG does not turn on
    lesspy's per-call lines (only --debug does)."""
    log = logging.getLogger("lesspy_kernel")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s lesspy %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False


def serve(args: argparse.Namespace) -> int:
    """Serve a module headless. By hand: until stopped (Ctrl-C, SIGTERM, `lesspy stop`)."""
    from .namespaces import ModuleNamespace
    from .server import Server

    _log_to_stderr(args.debug)
    if args.name is not None:
        from .workfolder import session_folder
        try:
            args.work_folder = str(session_folder(args.name))
        except ValueError as e:     # not a usable session name
            raise CommandError(f"lesspy: {e}", EXIT_USAGE) from None
    module = _load(args.module, args.debug)
    # refused before serving; one in the work folder (Initialize's) is opened through the checked folder once open
    in_folder = bool(args.log_file) and Path(args.log_file).absolute().parent == Path(args.work_folder).absolute()
    log_fd = _open_log(args.log_file, missing_ok=True) if args.log_file and not in_folder else None
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    if args.keep_alive and hasattr(os, "setsid"):
        # Initialize(keepAlive: true): outlive the app that started us; its Ctrl-C or closed terminal signals
        # its whole process group. (A server started by hand stays in the terminal's group: Ctrl-C stops it.)
        try:
            os.setsid()
        except OSError:
            pass
    server = Server(ModuleNamespace(module, only), Path(args.work_folder).absolute(), capacity=args.capacity,
                    exit_when_idle=args.exit_when_idle, parent_pid=args.parent_pid, max_clients=args.max_clients,
                    lock_held=args.lock_held, log_file=args.log_file, log_cap=args.log_max_bytes)
    try:
        server.open()
    except (OSError, ValueError) as e:
        raise CommandError(f"lesspy: cannot serve {args.work_folder}: {e}", EXIT_USAGE) from None

    def on_signal(signum: int, frame: Any) -> None:
        server.stop(timeout=0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    if hasattr(os, "register_at_fork"):
        # a child forked by a served function (a multiprocessing pool) dies of SIGTERM and gets KeyboardInterrupt
        # from SIGINT like any Python process, instead of asking its copy of the server to stop: Pool.terminate
        # (what `with Pool() as p:` ends with) waited forever for workers that did not die
        os.register_at_fork(after_in_child=lambda: _default_signals(on_signal))
    until = "its last client leaves" if args.exit_when_idle else "stopped (Ctrl-C, or `lesspy stop FOLDER`)"
    print(f"lesspy: serving {module.__name__} in {server.folder.path} on {server.address} until {until}",
          flush=True)
    if args.log_file and log_fd is None:
        try:
            log_fd = _open_log(str(server.folder.file(Path(args.log_file).name)) if in_folder else args.log_file,
                               shown=args.log_file)
        except CommandError:
            server.stop(timeout=0)
            server.serve_forever()               # stopped at once: removes the files it published
            raise
    if log_fd is not None:
        _redirect_output(log_fd)
        sys.stdout = _CountedOutput(sys.stdout, server.logfile)      # type: ignore[assignment]
        sys.stderr = _CountedOutput(sys.stderr, server.logfile)      # type: ignore[assignment]
    server.serve_forever()
    # the files are gone; a call stuck in C code must not keep the process alive (lane threads are daemons,
    # but interpreter shutdown would still wait for the GIL they hold)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_OK)


# ------------------------------------------------------------------------------------------------ stub


def module_stub(module_path: str, interface: str = "IMyApi", namespace: Optional[str] = None,
                client: bool = False) -> str:
    """The C# interface for what `lesspy serve --module` exports from a module (the stub generator's entry point)."""
    from .stubgen import stub_for_module

    _check_module(module_path)
    try:
        return stub_for_module(module_path, interface, namespace, client)
    except BaseException as e:  # a bad interface or namespace name, or whatever the module's top level raises
        if isinstance(e, KeyboardInterrupt):
            raise
        if not _raised_by_module(e, module_path):
            raise CommandError(f"lesspy stub: cannot stub {module_path}: {type(e).__name__}: {e}",
                               EXIT_USAGE) from None
        raise import_failure("lesspy stub", module_path, e) from None


def _raised_by_module(e: BaseException, module_path: str) -> bool:
    """Whether the module's own code is in `e`'s traceback (not only the stub generator's)."""
    import traceback

    file = os.path.abspath(module_path)
    if isinstance(e, SyntaxError) and e.filename == file:
        return True
    return any(f.filename == file for f in traceback.extract_tb(e.__traceback__))


def stub(args: argparse.Namespace) -> int:
    interface = args.interface
    if interface is None:  # -o IMyApi.cs names the interface IMyApi
        stem = Path(args.output).stem if args.output else ""
        interface = stem if stem.isidentifier() and stem[:1].isupper() else "IMyApi"
        if args.client and interface == stem and not (stem[1:2].isupper() and stem[0] == "I"):
            interface = "I" + stem                  # --client -o Api.cs: interface IApi, class Api
    code = module_stub(args.module, interface, args.namespace, args.client)
    if not args.output or args.output == "-":
        sys.stdout.write(code)
        return EXIT_OK
    try:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(code, encoding="utf-8")
    except OSError as e:
        raise CommandError(f"lesspy stub: cannot write {args.output}: {e}") from None
    if args.client:
        from .stubgen import client_name

        print(f"lesspy: wrote {interface} and its client class {client_name(interface)} to {args.output}")
    else:
        print(f"lesspy: wrote {interface} to {args.output}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------ status, stop


def status(args: argparse.Namespace) -> int:
    from . import client

    folder = resolve_folder(args.folder)
    try:
        info = client.status(folder)
    except Exception as e:  # whatever the reason, the answer is "no server answered": say why
        raise _no_server("status", folder, e) from None
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return EXIT_OK
    print(f"lesspy server in {info.get('folder', folder)}: alive")
    for key in ("pid", "version", "protocol", "mode", "module", "clients", "lanes", "max_clients", "calls",
                "errors", "uptime_s"):
        if key in info:
            print(f"  {key:<12}{info[key]}")
    return EXIT_OK


def stop(args: argparse.Namespace) -> int:
    from . import client
    from .transport.handshake import HandshakeError
    from .wire.handshake import Result

    folder = resolve_folder(args.folder)
    try:
        client.stop(folder)
    except HandshakeError as e:
        if e.result != Result.IN_USE:
            raise _no_server("stop", folder, e) from None
        if not args.force:
            raise CommandError(f"lesspy stop: refused: {e}.\n  To stop it anyway (their calls will fail): "
                               f"lesspy stop --force {args.folder}") from None
        pid = _force_stop(folder)
        print(f"lesspy: stopped the server in {folder} (pid {pid}) with SIGTERM although other clients used it")
        return EXIT_OK
    except Exception as e:
        raise _no_server("stop", folder, e) from None
    print(f"lesspy: stopped the server in {folder}")
    return EXIT_OK


def _force_stop(folder: Path, timeout: float = 10.0) -> int:
    """`lesspy stop --force`: SIGTERM the folder's server, after checking the pid is that server's (the one
    its authenticated status answer names, and python.pid names) and a process of the current user."""
    import time

    from . import client
    from .workfolder import PID_FILE, pid_alive, read_private

    try:
        info = client.status(folder)
        pid = int(info["pid"])
        recorded = int(read_private(folder / PID_FILE).decode("ascii").strip())
    except Exception as e:
        raise _no_server("stop", folder, e) from None
    if info.get("mode") != "headless":
        raise CommandError(f"lesspy stop --force: the server in {folder} runs inside a notebook kernel (pid {pid}); "
                           "a signal would end the kernel: stop it there with `%lesspy stop`, or restart the kernel")
    if pid != recorded or pid <= 0:
        raise CommandError(f"lesspy stop --force: the server in {folder} says it is pid {pid} but python.pid says "
                           f"{recorded}: not signalling either; look at `lesspy status {folder}`")
    if not _owned_by_me(pid):
        raise CommandError(f"lesspy stop --force: pid {pid} is not a process of yours: not signalling it")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return pid
    except OSError as e:
        raise CommandError(f"lesspy stop --force: cannot signal pid {pid}: {e}") from None
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            raise CommandError(f"lesspy stop --force: pid {pid} is still running {timeout:.0f} s after SIGTERM "
                               f"(a call that does not stop?): kill it with `kill -9 {pid}`")
        time.sleep(0.02)
    return pid


def _owned_by_me(pid: int) -> bool:
    """Whether process `pid` runs as the current user (its real uid, from /proc on Linux). Elsewhere signal 0,
    which a non-root user can send only to its own processes."""
    if not hasattr(os, "getuid"):
        return True          # Windows: TerminateProcess needs rights over the process anyway
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1]) == os.getuid()
    except OSError:
        pass
    if os.getuid() == 0:
        return False         # root could signal anyone: without /proc there is no telling
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


# ------------------------------------------------------------------------------------------------ csharp


def csharp(args: argparse.Namespace) -> int:
    out = Path(args.out)
    from .csharp_export import ExportError, build_dll, compile_ahead, export_csharp

    try:
        out.mkdir(parents=True, exist_ok=True)
        written = export_csharp(out)
    except OSError as e:
        raise CommandError(f"lesspy csharp: cannot write to {out}: {e}") from None
    except ExportError as e:
        raise CommandError(str(e)) from None
    print(f"lesspy: wrote LessPy {__version__}'s C# sources ({len(written) - 1} files and VERSION) to {out}")
    if args.build:
        try:
            dll = build_dll(out, written)
        except ExportError as e:
            raise CommandError(str(e)) from None
        aot = compile_ahead(dll)
        if aot:
            print(f"lesspy: LessPy.dll is JIT-compiled at run time ({aot})")
        print(f"lesspy: built {dll}")
    else:
        print(f"  reference {out / 'LessPy.csproj'} (dotnet), or build with Mono: "
              f"mcs -target:library -unsafe -optimize+ -out:LessPy.dll {out}/*.cs  (or: lesspy csharp --build)")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------ main


def build_parser(prog: str = "lesspy") -> argparse.ArgumentParser:
    from .logfile import DEFAULT_LOG_CAP
    from .server import DEFAULT_CAPACITY, DEFAULT_MAX_CLIENTS

    parser = argparse.ArgumentParser(
        prog=prog, description="lesspy: serve Python functions to a C# app through shared memory.",
        epilog="Exit codes: 0 done, 1 failed, 2 usage (bad options, a module that does not import, "
               "a folder another server serves).")
    parser.add_argument("--version", action="version", version=f"lesspy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("serve", help="serve a module's functions headless, until stopped",
                       description="Serve a module's public functions (those it defines, not those it imports). "
                                   "Started by hand it serves until stopped (Ctrl-C, SIGTERM, `lesspy stop`).")
    p.add_argument("--module", required=True, help="path of the .py file whose public functions are exported")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--work-folder", default="lesspy_work", help="folder for the mappings, pid, port and key "
                                                                    "(default: lesspy_work)")
    where.add_argument("--name", help="serve as the named session NAME: the work folder <jupyter runtime "
                                      "dir>/lesspy/NAME, as %%lesspy serve --name does (C#: Connect<T>(\"NAME\"), or "
                                      "by URL through that host's Jupyter Server)")
    p.add_argument("--capacity", type=parse_size, default=DEFAULT_CAPACITY,
                   help="starting size of each mapping, e.g. 16M (default) or 256M")
    life = p.add_mutually_exclusive_group()
    life.add_argument("--keep-alive", action="store_true",
                      help="serve until stopped, in a session of its own so the starting app's Ctrl-C or "
                           "closed terminal does not stop it (what Initialize(keepAlive: true) passes)")
    life.add_argument("--exit-when-idle", action="store_true",
                      help="stop when the last client has left")
    p.add_argument("--parent-pid", type=int,
                   help="also stop once this process has ended and no client is connected (what "
                        "Initialize(keepAlive: false) passes, with the app's pid)")
    p.add_argument("--only", help="comma-separated function names: export only these")
    p.add_argument("--log-file", help="after start-up, write all output here (capped, rotated to FILE.1)")
    p.add_argument("--log-max-bytes", type=parse_size, default=DEFAULT_LOG_CAP,
                   help="rotate the log file to FILE.1 past this size (default 10M)")
    p.add_argument("--max-clients", type=int, default=DEFAULT_MAX_CLIENTS,
                   help=f"how many clients (apps) may connect at once (default: {DEFAULT_MAX_CLIENTS})")
    p.add_argument("--lock-held", action="store_true", help=argparse.SUPPRESS)  # the starter holds lesspy.lock
    p.add_argument("--debug", action="store_true", help="log every call")
    p.set_defaults(run=serve)

    p = sub.add_parser("stub", help="write the C# interface for a module's functions",
                       description="Write a C# interface with one [PythonImport] method per exported function, "
                                   "typed from its hints.")
    p.add_argument("module", help="path of the .py file")
    p.add_argument("-o", "--output", help="the .cs file to write (default: standard output); "
                                          "its name is the interface's unless --interface is given")
    p.add_argument("--interface", help="the interface's name (default: from -o, else IMyApi)")
    p.add_argument("--namespace", help="a C# namespace to put it in")
    p.add_argument("--client", action="store_true",
                   help="also write a sealed class implementing the interface with no run-time code generation "
                        "(Unity IL2CPP, iOS, NativeAOT, Mono full-AOT); Initialize and Connect use it")
    p.set_defaults(run=stub)

    p = sub.add_parser("status", help="is a server serving this folder? pid, version, clients, calls",
                       description="Ask the server of a work folder (or a named notebook session) how it is. "
                                   "Exit code 0 when one answers, 1 when none does.")
    p.add_argument("folder", metavar="FOLDER", help="a work folder path, or a session name (%%lesspy serve --name)")
    p.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    p.set_defaults(run=status)

    p = sub.add_parser("stop", help="stop the server of a folder",
                       description="Ask the server of a work folder (or a named session) to stop. A server that "
                                   "other clients are using refuses (they keep their lanes); --force stops it "
                                   "anyway. Exit code 0 when it stopped, 1 when it refused or no server answered.")
    p.add_argument("folder", metavar="FOLDER", help="a work folder path, or a session name")
    p.add_argument("--force", action="store_true",
                   help="stop it even while other clients use it (SIGTERM to its pid, after checking it is "
                        "that folder's server and yours); their calls fail")
    p.set_defaults(run=stop)

    p = sub.add_parser("csharp", help="write LessPy's C# sources (and LessPy.csproj) into a folder",
                       description="Write the C# client library's sources, shipped inside this package, so you "
                                   "can reference LessPy.csproj or compile them with mcs without a clone.")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write into (created if missing)")
    p.add_argument("--build", action="store_true", help="also compile LessPy.dll there with Mono's mcs")
    p.set_defaults(run=csharp)
    return parser


def main(argv: Optional[List[str]] = None, prog: Optional[str] = None) -> int:
    """Run one command; returns its exit code (argparse exits with 2 itself on a usage error)."""
    args = build_parser(prog or "lesspy").parse_args(argv)
    try:
        return int(args.run(args))
    except CommandError as e:
        print(str(e), file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return EXIT_FAILURE
