"""The %lesspy magics: serve the notebook's functions to a running C# app, and look at what it sent.

Configure in ipython_config.py or with %config, e.g.::

    c.LessPyMagics.capacity = 256 * 1024 * 1024
    %config LessPyMagics.history_budget = 64 * 1024 * 1024     # 0: record calls without their payloads
    %config LessPyMagics.history_records_budget = 8 * 1024 * 1024   # the records themselves (names, errors)
    %config LessPyMagics.max_clients = 4
"""

from __future__ import annotations

import atexit
import html
import inspect
import os
import textwrap
from pathlib import Path
from typing import Any, Optional

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Bool, Int, Unicode

from ..cli import parse_size
from ..executors import DirectExecutor
from ..wire.handshake import Mode
from ..hooks import add_thread_start, remove_thread_start
from ..jupyter.celloutput import forget_thread_parent
from ..jupyter.history import DEFAULT_RECORDS_BUDGET, CallHistory, current_history, set_current_history
from ..jupyter.jpserver_file import remote_url
from ..jupyter.kernel_executor import KernelExecutor
from ..namespaces import DictNamespace
from ..server import Server
from ..stubgen import csharp_stub
from ..workfolder import session_folder


class ServerStatus:
    """What `%lesspy serve` and `%lesspy status` show: plain text, or HTML in JupyterLab."""

    def __init__(self, server: Optional[Server], connect_arg: str, interface: str,
                 remote_url: Optional[str] = None) -> None:
        self.server = server
        literal = '@"' + connect_arg.replace('"', '""') + '"' if "\\" in connect_arg else f'"{connect_arg}"'
        self.connect_line = f"var api = LessPythonInvoke.Connect<{interface}>({literal});" if server else ""
        # the way in through the Jupyter Server that runs this kernel (its lesspy extension), without the token
        self.remote_line = (f'var api = LessPythonInvoke.Connect<{interface}>("{remote_url}");  // token: '
                            "JUPYTER_TOKEN or ?token=") if server and remote_url else ""

    def rows(self) -> list:
        s = self.server
        if s is None:
            return [("state", "not serving: run %lesspy serve")]
        if not s.running:                    # no C# line nor exported functions: nothing can connect or call
            st = s.status()
            return [("state", "stopped (run %lesspy serve to serve again)"),
                    ("folder", f"{s.folder.path} (no longer served)"),
                    ("calls", f"{st['calls']} served, {st['errors']} errors")]
        mode = {Mode.NOTEBOOK: "main thread, between cells", Mode.NOTEBOOK_THREADED: "threaded (server thread)",
                Mode.HEADLESS: "direct"}.get(s.mode, str(s.mode))
        st = s.status()
        pids = ", ".join(str(c["pid"]) for c in st["client_list"])
        client = (f"{st['clients']} connected" + (f" (pid {pids})" if pids else "")
                  + f", at most {st['max_clients']}; {st['clients_seen']} so far, {st['refused']} refused")
        calls = f"{st['calls']} served, {st['errors']} errors" + \
            (f" (last: {_clip(st['last_error'], 200)})" if st["last_error"] else "")
        mappings = f"{st['lanes']} lanes, each starting at {s.capacity:,} bytes a mapping (grown on demand)"
        ns = s.namespace
        exported = ", ".join(ns.names()) or "nothing yet: define a function in a cell"
        return [
            ("state", "serving" if s.running else "stopped"),
            ("folder", str(s.folder.path)),
            ("mode", mode),
            ("client", client),
            ("calls", calls),
            ("mappings", mappings),
            ("exported", _clip(exported, 300)),
            ("C#", self.connect_line),
        ] + ([("remote", self.remote_line)] if self.remote_line else [])

    def __repr__(self) -> str:
        return "\n".join(f"{k:>9}: {v}" for k, v in self.rows())

    def _repr_html_(self) -> str:
        cells = "".join(f"<tr><th style='text-align:right'>{html.escape(k)}</th>"
                        f"<td style='text-align:left'><code>{html.escape(str(v))}</code></td></tr>"
                        for k, v in self.rows())
        return f"<table><caption style='text-align:left'><b>lesspy</b></caption>{cells}</table>"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _parse(magic: Any, rest: str) -> Any:
    """A sub-command's arguments, parsed by IPython (`parse_argstring`); None after printing --help.

    IPython splits the line keeping the quotes of a quoted argument: they are taken off a whole value, as IPython's
    own magics do, so `--folder "/my notebooks/work"` names the folder without them."""
    parser = magic.parser
    if "-h" in rest.split() or "--help" in rest.split():
        print(_help_text(parser.format_help()))
        return None
    try:
        args = parse_argstring(magic, rest)
    except ValueError as e:                 # an unclosed quote
        raise UsageError(f"{parser.prog}: {e} (quote arguments like a shell: --name \"my session\")") from None
    for key, value in vars(args).items():
        if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            setattr(args, key, value[1:-1])
    return args


def _help_text(text: str) -> str:
    """A sub-command's --help without the reStructuredText `::` IPython's magic_arguments puts before the usage
    (meant for docstrings), the usage lines dedented."""
    if text.startswith("::"):
        usage, sep, rest = text[2:].lstrip("\n").partition("\n\n")
        text = textwrap.dedent(usage) + sep + rest
    return text.rstrip()


def _names(text: Optional[str]) -> Optional[list]:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


@magics_class
class LessPyMagics(Magics):
    """%lesspy serve | stop | status | calls | stub."""

    capacity = Int(16 * 1024 * 1024, help="Starting size in bytes of each lane's request and response mappings "
                                          "(they grow on demand).").tag(config=True)
    history_budget = Int(256 * 1024 * 1024, help="Bytes of recorded payloads (arrays, bytes, strings, lists, "
                                                 "...) kept for %lesspy calls; the oldest are summarised first. "
                                                 "0 keeps none and copies nothing.").tag(config=True)
    history_records_budget = Int(DEFAULT_RECORDS_BUDGET,
                                 help="Bytes the records of %lesspy calls may take besides their payloads (function "
                                      "names, error messages, tracebacks, summaries, small values: an estimate); "
                                      "past it the oldest records are forgotten. Also at most 10,000 records."
                                 ).tag(config=True)
    default_name = Unicode("default", help="Session name used by %lesspy serve without --name/--folder; "
                                           "C# connects with Connect<T>(name).").tag(config=True)
    threaded = Bool(False, help="Run calls on the server thread instead of the kernel's main thread "
                                "(answers while a cell blocks; runs concurrently with cells).").tag(config=True)
    interface = Unicode("IMyApi", help="Interface name shown in the C# Connect line and used by "
                                      "%lesspy stub.").tag(config=True)
    max_clients = Int(8, help="How many C# processes may be connected at once; one more is refused at once, "
                              "with a message naming the limit.").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.server: Optional[Server] = None
        self.connect_arg = ""
        self.remote_url: Optional[str] = None
        self.history = CallHistory(budget=self.history_budget, records_budget=self.history_records_budget)
        set_current_history(self.history)
        self.observe(self._budget_changed, names="history_budget")
        self.observe(self._records_budget_changed, names="history_records_budget")
        atexit.register(self.stop_server)

    @property
    def _user_ns(self) -> dict:
        if self.shell is None:
            raise UsageError("%lesspy needs an IPython shell")
        return self.shell.user_ns

    def _budget_changed(self, change: dict) -> None:
        self.history.budget = change["new"]

    def _records_budget_changed(self, change: dict) -> None:
        self.history.records_budget = change["new"]

    @line_magic
    def lesspy(self, line: str) -> Any:
        """Serve notebook functions to a C# app, and inspect its calls.

        %lesspy serve [--name NAME | --folder PATH] [--capacity SIZE] [--threaded] [--only f,g]
                      [--export f,g] [--max-clients N]
            start serving (C#: LessPythonInvoke.Connect<IMyApi>("NAME"))
        %lesspy stop                  stop serving
        %lesspy status                folder, clients, calls, errors, mappings, mode, exported functions
        %lesspy calls [-n N]          the last N calls with their arguments and results
        %lesspy stub [--interface IMyApi] [--namespace NS] [--client] [-o FILE.cs]
                                      the C# interface for the notebook's functions, from type hints
        %lesspy SUBCOMMAND --help     the options of one sub-command

        C# may call the functions the notebook's cells define. Anything else (an imported function, a
        callable object) only when exported explicitly: `lesspy_kernel.export(fn)` in a cell (also a
        decorator), or `%lesspy serve --export name1,name2`. Classes, modules and _private names never.
        """
        command, _, rest = line.strip().partition(" ")
        if command in ("", "help", "-h", "--help"):
            print(inspect.cleandoc(getattr(type(self), "lesspy").__doc__ or ""))
            return None
        handler = {"serve": self._serve, "stop": self._stop, "status": self._status, "calls": self._calls,
                   "stub": self._stub}.get(command)
        if handler is None:
            raise UsageError(f"%lesspy {command}: expected one of serve, stop, status, calls, stub "
                             "(%lesspy help lists them)")
        return handler(rest)

    @magic_arguments(name="lesspy serve")
    @argument("--name", help="session name: the folder is <jupyter runtime dir>/lesspy/NAME")
    @argument("--folder", help="explicit work folder path")
    @argument("--capacity", help="size of each mapping, e.g. 64M (default: LessPyMagics.capacity)")
    @argument("--threaded", action="store_true", help="run calls on the server thread, even during a cell")
    @argument("--only", help="comma-separated names: only these functions may be called")
    @argument("--export", help="comma-separated names to export although the notebook did not define them "
                               "(e.g. imported functions); also lesspy_kernel.export(fn) in a cell")
    @argument("--max-clients", type=int, default=None,
              help="C# processes connected at once (default: LessPyMagics.max_clients)")
    def _serve(self, rest: str) -> None:
        args = _parse(self._serve, rest)
        if args is None:
            return
        if args.name and args.folder:
            raise UsageError("give --name or --folder, not both")
        if self.server is not None and self.server.running:
            raise UsageError(f"already serving {self.server.folder.path}: %lesspy stop first")
        try:
            capacity = parse_size(args.capacity) if args.capacity else self.capacity
        except Exception as e:
            raise UsageError(str(e)) from None
        if args.folder:
            folder = Path(args.folder).expanduser().absolute()
            self.connect_arg = str(folder)
        else:
            name = args.name or self.default_name
            try:
                folder = session_folder(name)
            except ValueError as e:
                raise UsageError(str(e)) from None
            self.connect_arg = name
        max_clients = self.max_clients if args.max_clients is None else args.max_clients
        if max_clients < 1:
            raise UsageError(f"--max-clients must be at least 1, not {max_clients}")
        namespace = DictNamespace(self._user_ns, _names(args.only), export=_names(args.export))
        kernel = getattr(self.shell, "kernel", None)
        threaded = args.threaded or self.threaded
        executor = KernelExecutor(kernel, threaded) if kernel is not None else DirectExecutor(Mode.NOTEBOOK_THREADED)
        server = Server(namespace, folder, executor=executor, capacity=capacity,
                        max_clients=max_clients)
        server.observers.append(self.history.observe)
        add_thread_start(forget_thread_parent)      # before the server starts its threads
        try:
            server.start()
        except (OSError, ValueError, RuntimeError) as e:
            remove_thread_start(forget_thread_parent)
            raise UsageError(f"cannot serve {folder}: {e}") from None
        self.server = server
        # a named session is reachable through the Jupyter Server that started this kernel (if it has lesspy's
        # extension): that server wrote its URL for its kernels to find
        self.remote_url = remote_url(self.connect_arg) if not args.folder else None
        display(ServerStatus(server, self.connect_arg, self.interface, self.remote_url))

    def _stop(self, rest: str) -> None:
        if self.server is None or not self.server.running:
            print("lesspy: not serving")
            return
        folder = self.server.folder.path
        self.stop_server()
        print(f"lesspy: stopped serving {folder}")

    def stop_server(self) -> None:
        """Stop serving and remove the work folder (also runs at kernel shutdown and on unload)."""
        if self.server is not None:
            self.server.stop()
        remove_thread_start(forget_thread_parent)

    def _status(self, rest: str) -> ServerStatus:
        return ServerStatus(self.server, self.connect_arg, self.interface, self.remote_url)

    @magic_arguments(name="lesspy calls")
    @argument("-n", type=int, default=None, help="show only the last N calls (0 shows none)")
    def _calls(self, rest: str) -> Any:
        args = _parse(self._calls, rest)
        if args is None:
            return None
        if args.n is not None and args.n < 0:
            raise UsageError(f"-n must be 0 or more, not {args.n}")
        return self.history.records(args.n)

    @magic_arguments(name="lesspy stub")
    @argument("--interface", default=None, help="C# interface name (default: LessPyMagics.interface)")
    @argument("--namespace", default=None, help="C# namespace to wrap the interface in")
    @argument("-o", "--output", default=None, help="write to this .cs file instead of printing")
    @argument("--client", action="store_true",
              help="also write the sealed class implementing the interface with no run-time code generation "
                   "(IL2CPP, iOS, NativeAOT, Mono full-AOT)")
    def _stub(self, rest: str) -> None:
        args = _parse(self._stub, rest)
        if args is None:
            return
        ns = self.server.namespace if self.server is not None and self.server.running else \
            DictNamespace(self._user_ns)
        functions = {name: self._user_ns[name] for name in ns.names()}
        try:
            code = csharp_stub(functions, interface=args.interface or self.interface, namespace=args.namespace,
                               client=args.client)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if args.output:
            Path(args.output).write_text(code, encoding="utf-8")
            print(f"lesspy: wrote {len(functions)} function(s) to {os.path.abspath(args.output)}")
        else:
            print(code)
        if not functions:
            print("lesspy: the notebook defines no function C# may call yet: define one in a cell, with type "
                  "hints (def add(a: int, b: int) -> int), then run %lesspy stub again")


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(LessPyMagics)


def unload_ipython_extension(ipython: Any) -> None:
    magics = ipython.magics_manager.registry.get("LessPyMagics")
    if magics is not None:
        magics.stop_server()
        atexit.unregister(magics.stop_server)
        magics.history.clear()                    # lesspy_kernel.calls() is empty after unloading
        if current_history() is magics.history:
            set_current_history(None)
        ipython.magics_manager.magics["line"].pop("lesspy", None)
        ipython.magics_manager.registry.pop("LessPyMagics", None)
        if magics in ipython.configurables:
            ipython.configurables.remove(magics)
