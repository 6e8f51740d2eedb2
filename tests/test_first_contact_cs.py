"""What a newcomer's C# app is told (issue 20, items 4-6): a Python exception's Message without its type, a wrong
Connect name answered with the sessions served, a capitalised [PythonImport] name answered with its snake_case
form, an enum result named as the enum, and float16 / complex NdArray data read in C#.

One real Mono program (tests/csharp/FirstContactClient.cs) against one real headless server, a named session.
"""

from __future__ import annotations

import os
import sys
import textwrap

import pytest

from conftest import ROOT, compile_csharp, csharp_checks, run_mono
from servers import Headless

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="named sessions as laid out on Linux")

MODULE = textwrap.dedent('''
    import datetime

    import numpy as np


    def add_ints(a: int, b: int) -> int:
        return a + b


    def raises(message: str) -> None:
        raise ValueError(message)


    def raises_empty() -> None:
        raise KeyError()


    def level_of(n: int) -> int:
        return n


    def every_half() -> np.ndarray:
        """All 65536 float16 bit patterns (zeros, subnormals, infinities, NaNs with their payloads)."""
        return np.arange(65536, dtype=np.uint16).view(np.float16).reshape(256, 256)


    def every_half_as_float32_bits() -> np.ndarray:
        return np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32).view(np.uint32)


    def complexes(double: bool) -> np.ndarray:
        return np.array([[1 + 2j, -3.5 - 0.25j], [0j, 1e30 - 1e-30j]], dtype=np.complex128 if double else np.complex64)


    def float32s() -> np.ndarray:
        return np.arange(3, dtype=np.float32)


    def microseconds(t: datetime.timedelta) -> int:
        return (t.days * 86400 + t.seconds) * 1000000 + t.microseconds
''')


@pytest.fixture(scope="module")
def first_contact_client(csharp_bin):
    return compile_csharp(csharp_bin, [ROOT / "tests" / "csharp" / "FirstContactClient.cs"], "FirstContactClient.exe",
                          extra=["-r:System.Numerics"])


def test_first_contact_messages_and_ndarray_helpers(first_contact_client, tmp_path, monkeypatch):
    runtime = tmp_path / "runtime"
    (runtime / "lesspy").mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    module = tmp_path / "first_contact.py"
    module.write_text(MODULE)
    # a session whose server is gone: its files stay, it is not listed as served
    stale = runtime / "lesspy" / "fc_stale"
    stale.mkdir(mode=0o700)
    for name, text in (("python.pid", "999999999"), ("notify.port", "unix")):
        (stale / name).write_text(text)
        (stale / name).chmod(0o600)
    nothing_served = tmp_path / "empty_runtime"
    nothing_served.mkdir()
    with Headless(runtime / "lesspy" / "fc_alpha", module) as server:
        proc = run_mono(first_contact_client, "fc_alpha", nothing_served, env={"JUPYTER_RUNTIME_DIR": str(runtime)})
        assert server.proc.poll() is None
    csharp_checks(proc, "python_exception_message", "python_exception_without_message", "connect_lists_sessions",
                  "connect_stale_session_lists_sessions", "connect_nothing_served", "not_found_snake_case",
                  "not_found_snake_name_no_hint", "enum_result_named", "nullable_enum_result_named", "half_every_pattern",
                  "half_wrong_dtype", "complex128", "complex64", "complex_wrong_dtype", "timespan_truncated",
                  "initialize_module_is_a_folder")
