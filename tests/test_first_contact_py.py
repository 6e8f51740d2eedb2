"""First contact, the Python side's messages: a module that fails to import shows its traceback and line (the CLI,
with and without --debug, and C#'s Initialize exception), a folder given as a module, a crashed session's status,
`stub -o` into a new folder, the stub's hints, `%lesspy` help, status after stop, and lesspy's logging kept off the
root logger of the module it serves."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import textwrap
from pathlib import Path

from conftest import compile_csharp, run_mono
from kernels import kernel
from lesspy_kernel.client import ClientLane
from lesspy_kernel.namespaces import ModuleNamespace, load_module
from lesspy_kernel.wire import Tag
from servers import wait_for
from test_cli import Served, lesspy

BROKEN = """\
import os


def helper():
    return undefined_name


VALUE = helper()
"""


def _broken(tmp_path: Path) -> Path:
    path = tmp_path / "broken_mod.py"
    path.write_text(BROKEN)
    return path


# ------------------------------------------------------------------------------------------------ import errors


def test_an_import_error_shows_the_module_traceback_with_its_line_in_the_cli(tmp_path):
    module = _broken(tmp_path)
    for args in (["serve", "--module", module, "--work-folder", tmp_path / "w"],
                 ["serve", "--module", module, "--work-folder", tmp_path / "w", "--debug"],
                 ["stub", module]):
        p = lesspy(*args)
        assert p.returncode == 2, p
        err = p.stderr
        assert "cannot import" in err and "NameError: name 'undefined_name' is not defined (broken_mod.py line 5)" \
            in err, err
        assert f'File "{module}", line 8, in <module>' in err and f'File "{module}", line 5, in helper' in err, err
        assert "return undefined_name" in err, err
        if "--debug" not in args:    # lesspy's and importlib's own frames only with --debug
            assert "namespaces.py" not in err and "<frozen" not in err and "stubgen.py" not in err, err
        else:
            assert "namespaces.py" in err, err
    assert not (tmp_path / "w").exists()


def test_a_syntax_error_and_a_top_level_file_not_found_say_cannot_import(tmp_path):
    syntax = tmp_path / "syntax_mod.py"
    syntax.write_text("def f(:\n    pass\n")
    p = lesspy("stub", syntax)
    assert p.returncode == 2 and "SyntaxError" in p.stderr and "syntax_mod.py, line 1" in p.stderr, p
    assert "^" in p.stderr, p
    opens = tmp_path / "opens_mod.py"
    opens.write_text("open('missing-data.txt')\n")
    p = lesspy("serve", "--module", opens, "--work-folder", tmp_path / "w")
    assert p.returncode == 2 and "cannot import" in p.stderr and "missing-data.txt" in p.stderr, p
    assert "no Python module" not in p.stderr and "(opens_mod.py line 1)" in p.stderr, p


def test_csharp_initialize_shows_the_import_traceback_with_its_line(csharp_bin, tmp_path):
    d = tmp_path / "app"
    d.mkdir()
    shutil.copy(csharp_bin / "LessPy.dll", d)
    src = d / "BrokenImport.cs"
    src.write_text(textwrap.dedent("""
        using System;
        using LessPy;
        public interface IAdd { [PythonImport] int add_ints(int a, int b); }
        static class Program
        {
            static int Main(string[] a)
            {
                try { LessPythonInvoke.Initialize<IAdd>(a[0], a[1], debug: a.Length > 2); return 1; }
                catch (Exception e) { Console.WriteLine("FAILED " + e.GetType().Name + ": " + e.Message); return 0; }
            }
        }
        """))
    exe = compile_csharp(d, [src], "BrokenImport.exe")
    module = _broken(tmp_path)
    for extra in ((), ("debug",)):
        p = run_mono(exe, sys.executable, module, *extra)
        out = p.stdout
        assert p.returncode == 0 and "FAILED" in out, out + p.stderr
        assert "(broken_mod.py line 5)" in out and f'File "{module}", line 5, in helper' in out, out
        assert "return undefined_name" in out, out


# ------------------------------------------------------------------------------------------------ CLI messages


def test_a_folder_given_as_the_module_is_a_folder_not_missing(tmp_path):
    folder = tmp_path / "pkg.py"
    folder.mkdir()
    for args in (["serve", "--module", folder, "--work-folder", tmp_path / "w"], ["stub", folder]):
        p = lesspy(*args)
        assert p.returncode == 2 and f"{folder} is a folder, not a Python module" in p.stderr, p
        assert "no Python module at" not in p.stderr, p


def test_stub_output_into_a_folder_that_does_not_exist_creates_it(tmp_path):
    module = tmp_path / "api_mod.py"
    module.write_text("def add(a: int, b: int) -> int:\n    return a + b\n")
    out = tmp_path / "gen" / "cs" / "IAdd.cs"
    p = lesspy("stub", module, "-o", out)
    assert p.returncode == 0, p
    assert "public interface IAdd" in out.read_text()


def test_status_and_stop_of_a_crashed_session_say_its_server_ended(tmp_path):
    with Served(tmp_path / "w") as s:
        pid = s.proc.pid
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait(10)
    assert (tmp_path / "w" / "notify.port").exists()
    for command in ("status", "stop"):
        p = lesspy(command, tmp_path / "w", timeout=30)
        assert p.returncode == 1, p
        assert f"the server that served it (pid {pid}) has ended without removing its files" in p.stderr, p
        assert "ConnectionRefusedError" not in p.stderr and "Errno" not in p.stderr, p


def test_the_imported_function_message_names_the_module_once(tmp_path):
    module = tmp_path / "imports_mod.py"
    module.write_text("from os.path import join\n\ndef own(a: int) -> int:\n    return a\n")
    ns = ModuleNamespace(load_module(str(module)))
    why = ns.refusal("join", ns._get("join"))
    assert why is not None and why.count(str(module)) == 1 and why.count("module imports_mod") == 1, why
    assert "imported from posixpath, not defined there" in why and "lesspy_kernel.export(join)" in why, why


def test_the_stub_hints_for_a_generator_and_for_nothing_to_export(tmp_path):
    module = tmp_path / "gen_mod.py"
    module.write_text("def numbers(n):\n    yield n\n\ndef plain(n):\n    return n\n")
    p = lesspy("stub", module)
    assert p.returncode == 0, p
    assert "e.g. def numbers(n: int) -> Iterator[int]" in p.stdout and "e.g. def plain(n: int) -> int" in p.stdout, p
    empty = tmp_path / "empty_mod.py"
    empty.write_text("import os\n")
    p = lesspy("stub", empty)
    assert p.returncode == 0 and "// no functions to export yet: define one with type hints" in p.stdout, p


# ------------------------------------------------------------------------------------------------ logging

ROOT_LOGGER_MODULE = """\
import logging

logging.getLogger().setLevel(logging.DEBUG)      # the module's own choice: must not turn on lesspy's call lines


def add_ints(a: int, b: int) -> int:
    return a + b


def root_handlers(a: int, b: int) -> int:
    return len(logging.getLogger().handlers)
"""


def _call_twice(folder: Path) -> int:
    with ClientLane(folder) as lane:
        assert lane.call("add_ints", Tag.INT32, [40, 2], [Tag.INT32, Tag.INT32]) == 42
        return lane.call("root_handlers", Tag.INT32, [0, 0], [Tag.INT32, Tag.INT32])


def test_serving_leaves_the_root_logger_to_the_module(tmp_path):
    module = tmp_path / "root_logger_mod.py"
    module.write_text(ROOT_LOGGER_MODULE)
    with Served(tmp_path / "w", module=module) as s:
        assert _call_twice(s.folder) == 0, "lesspy serve added a handler to the root logger"
        s.proc.send_signal(signal.SIGINT)
        assert s.proc.wait(15) == 0, s.output()
        out = s.output()
    assert "lesspy INFO lesspy serving" in out, out
    assert "call add_ints" not in out and "DEBUG" not in out, out


def test_debug_and_the_log_file_still_log_the_calls(tmp_path):
    module = tmp_path / "root_logger_mod.py"
    module.write_text(ROOT_LOGGER_MODULE)
    log_file = tmp_path / "server.log"
    with Served(tmp_path / "w", "--debug", "--log-file", str(log_file), module=module) as s:
        assert _call_twice(s.folder) == 0
        wait_for(lambda: "call root_handlers" in log_file.read_text(), what="the call's debug line in the log")
        s.proc.send_signal(signal.SIGINT)
        assert s.proc.wait(15) == 0, s.output()
    text = log_file.read_text()
    assert "lesspy DEBUG call add_ints(2 args)" in text and "lesspy INFO lesspy server stopped" in text, text
    assert os.stat(log_file).st_mode & 0o077 == 0


# ------------------------------------------------------------------------------------------------ %lesspy


def test_magic_help_status_after_stop_and_stub_hints_in_a_real_kernel(tmp_path):
    with kernel(tmp_path) as k:
        k.run("%load_ext lesspy_kernel")
        help_text = k.run("%lesspy serve --help")
        assert help_text.startswith("%lesspy serve [--name NAME]") and "::" not in help_text, help_text
        out = k.run("%lesspy stub")
        assert "// no functions to export yet" in out and "the notebook defines no function C# may call yet" in out, \
            out
        k.run("def add(a: int, b: int) -> int:\n    return a + b\n\ndef count(n):\n    yield n")
        out = k.run("%lesspy stub")
        assert "e.g. def count(n: int) -> Iterator[int]" in out and "no functions to export" not in out, out
        out = k.run("%lesspy serve --name firstcontact")
        assert "Connect<IMyApi>" in out and "exported: add" in out, out
        k.run("%lesspy stop")
        out = k.run("%lesspy status")
        assert "stopped (run %lesspy serve to serve again)" in out, out
        assert "Connect<" not in out and "exported" not in out and "add" not in out, out
