"""docs/CSHARP.md's records, dictionaries, dates, Guids and enums example, run as written: its Python block served
headless, its C# block compiled with mcs into a program that calls it and prints what the comments promise."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from conftest import ROOT, compile_csharp, run_mono

TITLE = "## Records, dictionaries, dates, Guids and enums"


def blocks() -> tuple[str, str]:
    """The section's Python block and C# block."""
    text = (ROOT / "docs" / "CSHARP.md").read_text(encoding="utf-8")
    start = text.index(f"\n{TITLE}\n")
    section = text[start:text.index("\n## ", start + 1)]
    python = re.search(r"^```python\n(.*?)^```", section, re.M | re.S)
    csharp = re.search(r"^```csharp\n(.*?)^```", section, re.M | re.S)
    assert python and csharp, "the section needs a python and a csharp block"
    return python.group(1), csharp.group(1)


def test_the_types_example_compiles_and_does_what_its_comments_say(csharp_bin, tmp_path):
    python, csharp = blocks()
    module = tmp_path / "shop.py"
    module.write_text(python, encoding="utf-8")
    # the block declares types, then shows calls on `api`: the calls go inside a Main that opens `api`
    declarations, calls = csharp.split("\nvar order", 1)
    program = (
        "using System;\nusing System.Collections.Generic;\nusing LessPy;\n" + declarations + "\n"
        "public static class App\n{\n    public static int Main(string[] args)\n    {\n"
        "        using (IShop api = LessPythonInvoke.Initialize<IShop>(\"\", args[0], keepAlive: false))\n"
        "        {\nvar order" + calls +
        "            Console.WriteLine(\"same id \" + (next.Id == order.Id));\n"
        "            Console.WriteLine(\"next \" + next.Placed.ToString(\"yyyy-MM-dd HH:mm\") + \" \" + next.Placed.Kind"
        " + \" \" + next.Color + \" \" + next.MaxValue);\n"
        "            Console.WriteLine(\"sums \" + sums[\"sum\"] + \" \" + sums[\"count\"]);\n"
        "            Console.WriteLine(\"later \" + t.Kind + \" \" + (t > DateTime.UtcNow.AddMinutes(80)));\n"
        "            Console.WriteLine(\"id \" + (id != Guid.Empty) + \" shade \" + c);\n"
        "        }\n        return 0;\n    }\n}\n")
    source = tmp_path / "Types.cs"
    source.write_text(program, encoding="utf-8")
    exe = compile_csharp(csharp_bin, [source], "CsharpMdTypes.exe")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    run = run_mono(exe, module, env=env, cwd=str(tmp_path), timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "same id True" in out, out
    assert "next 2026-02-01 09:30 Utc Green 5" in out, out
    assert "sums 6.5 2" in out, out
    assert "later Utc True" in out, out
    assert "id True shade Green" in out, out
