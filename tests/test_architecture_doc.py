"""docs/ARCHITECTURE.md stays true: every file it names exists, and every function, class or method it names is
declared where the page puts it.

A name in backticks belongs to its block (a list item, a table row or a paragraph): `A.b` must be declared in the
block's files that declare the type `A` (else in any file the page names that declares `A`), so `Codec.Read` next to
Codec.cs fails while Codec.Read.cs holds it; a plain name in one of the block's files, else in any file the page
names. The pictures (code blocks) are checked for `Type.member` and snake_case names against every file the page
names. Grep-level: a Python `def`/`class`/assignment, a C# type or member declaration at the start of a line.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ARCHITECTURE.md"
REPO_URL = "https://github.com/lesspy/lesspy/blob/main/"

SOURCE = (".py", ".cs", ".c")
PATH = re.compile(r"(?<![\w/.*-])((?:[\w.-]+/)*[\w-][\w.-]*\.(?:py|pyi|cs|c|md|txt|bin|toml|sh|png))(?![\w/-])")
IDENT = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?(?:\(\))?$")
SKIP_DIRS = {".git", ".venv", "__pycache__", "build", "dist", "node_modules"}

CS_MODIFIERS = r"(?:(?:public|internal|private|protected|static|readonly|override|sealed|unsafe|abstract|virtual|" \
               r"partial|const|async|extern|new|volatile)\s+)*"


@lru_cache(maxsize=None)
def _all_files() -> Tuple[Path, ...]:
    found: List[Path] = []
    stack = [ROOT]
    while stack:
        d = stack.pop()
        for p in d.iterdir():
            if p.is_dir():
                if p.name not in SKIP_DIRS and not p.name.startswith(".") and not p.name.endswith(".egg-info"):
                    stack.append(p)
            else:
                found.append(p)
    return tuple(found)


def resolve(name: str) -> List[Path]:
    """The repository files `name` may mean: the path from the root, else every file whose path ends with it
    (`transport/base.py`, `Lane.cs`)."""
    if name.startswith(REPO_URL):
        name = name[len(REPO_URL):]
    exact = ROOT / name
    if exact.exists():
        return [exact]
    tail = "/" + name
    return [p for p in _all_files() if ("/" + p.relative_to(ROOT).as_posix()).endswith(tail)]


def blocks(text: str) -> Tuple[List[str], List[str]]:
    """(prose blocks, code blocks) of a markdown text."""
    prose: List[str] = []
    code: List[str] = []
    current: List[str] = []
    fence: Optional[List[str]] = None

    def flush() -> None:
        if current:
            prose.append("\n".join(current))
            current.clear()

    for line in text.splitlines():
        if line.startswith("```"):
            if fence is None:
                flush()
                fence = []
            else:
                code.append("\n".join(fence))
                fence = None
            continue
        if fence is not None:
            fence.append(line)
            continue
        starts = (not line.strip() or line.startswith("#") or line.startswith("|")
                  or re.match(r"^\s{0,3}(?:[-*]|\d+\.)\s", line) is not None)
        if starts:
            flush()
        if line.strip():
            current.append(line)
            if line.startswith("#") or line.startswith("|"):
                flush()
    flush()
    return prose, code


def paths_in(text: str) -> List[str]:
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    return [m.group(1) for m in PATH.finditer(re.sub(r"\]\([^)\s]+\)", "]", text))] + links


def code_names_in(code: str) -> List[str]:
    """The names a picture shows: `Type.member` and snake_case functions (file names and links taken out)."""
    text = PATH.sub(" ", re.sub(r"https?://\S+", " ", code))
    dotted = re.findall(r"(?<![\w.-])([A-Z]\w*\.[A-Za-z_]\w*)(?![\w.(-]*\w\.)", text)
    snake = re.findall(r"(?<![\w.-])([a-z]+(?:_[a-z0-9]+)+)(?![\w.-])", text)
    return dotted + snake


def names_in(block: str) -> List[str]:
    found = []
    for token in re.findall(r"`([^`\n]+)`", block):
        if IDENT.match(token) and not PATH.fullmatch(token) and not _is_module(token):
            found.append(token[:-2] if token.endswith("()") else token)
    return found


def _is_module(token: str) -> bool:
    """A dotted Python module or package name of this repository (`lesspy_kernel.wire`)."""
    base = ROOT / token.replace(".", "/")
    return token.split(".")[0] in ("lesspy_kernel", "magics") and (base.is_dir() or base.with_suffix(".py").is_file())


@lru_cache(maxsize=None)
def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _python_declares(text: str, name: str, member: bool) -> bool:
    n = re.escape(name)
    if re.search(rf"^\s*(?:async\s+)?def\s+{n}\b|^\s*class\s+{n}\b", text, re.M):
        return True
    if member:
        return re.search(rf"^\s+{n}\s*[:=]|self\.{n}\s*(?::[^=\n]*)?=", text, re.M) is not None
    return re.search(rf"^{n}\s*[:=]", text, re.M) is not None


def _csharp_type(text: str, name: str) -> bool:
    return re.search(rf"\b(?:class|interface|struct|enum)\s+{re.escape(name)}\b", text) is not None


def _csharp_member(text: str, name: str) -> bool:
    n = re.escape(name)
    declared = re.search(rf"^\s*(?:\[[^\]\n]*\]\s*)?{CS_MODIFIERS}[\w.<>\[\],?]+(?:<[^>\n]*>)?\s+"
                         rf"(?:[\w.]+\.)?{n}\s*(?:\(|<|\{{|=|;|$)", text, re.M)
    enum_member = re.search(rf"^\s*{n}\s*(?:=[^=]|,|$)", text, re.M)
    return declared is not None or enum_member is not None


def declares(path: Path, name: str) -> bool:
    text = _text(path)
    owner, _, member = name.rpartition(".")
    if path.suffix == ".py":
        if owner:
            return re.search(rf"^\s*class\s+{re.escape(owner)}\b", text, re.M) is not None and \
                _python_declares(text, member, True)
        return _python_declares(text, member, False) or _python_declares(text, member, True)
    if path.suffix == ".cs":
        if owner:
            return _csharp_type(text, owner) and _csharp_member(text, member)
        return _csharp_type(text, member) or _csharp_member(text, member)
    if path.suffix == ".c":
        return re.search(rf"\b{re.escape(member)}\s*\(", text) is not None
    return False


def attributed(name: str, local: List[Path], everywhere: List[Path]) -> List[Path]:
    """The files `name` must be declared in: for `A.b`, the block's files that declare the type `A`, else every
    file the page names that declares it; for a plain name, the block's files when one declares it, else every
    file the page names."""
    owner, _, _ = name.rpartition(".")
    if owner:
        for scope in (local, everywhere):
            homes = [f for f in scope if declares(f, owner)]
            if homes:
                return homes
        return local or everywhere
    if any(declares(f, name) for f in local):
        return local
    return everywhere


def problems(doc: str) -> List[str]:
    """What on `doc` (markdown) is untrue of this repository."""
    out: List[str] = []
    prose, code = blocks(doc)
    named: Dict[str, List[Path]] = {}
    for part in prose + code:
        for p in paths_in(part):
            if p.startswith("http"):
                if not p.startswith(REPO_URL):
                    out.append(f"link {p} does not point at a file of this repository ({REPO_URL}...)")
                    continue
            files = resolve(p)
            if not files:
                out.append(f"{p} names no file of the repository")
            named[p] = files
    everywhere = sorted({f for files in named.values() for f in files if f.suffix in SOURCE})
    for block in prose:
        local = sorted({f for p in paths_in(block) for f in named.get(p, []) if f.suffix in SOURCE})
        for name in names_in(block):
            where = attributed(name, local, everywhere)
            if not any(declares(f, name) for f in where):
                shown = ", ".join(f.relative_to(ROOT).as_posix() for f in where[:6])
                shown += " ..." if len(where) > 6 else ""
                first = block.strip().splitlines()[0][:70]
                out.append(f"`{name}` is declared in none of {shown or 'the files the page names'} (the block "
                           f"starting {first!r})")
    for picture in code:
        for name in code_names_in(picture):
            where = attributed(name, [], everywhere)
            if not any(declares(f, name) for f in where):
                out.append(f"`{name}` (in a picture) is declared in none of the files the page names")
    return out


def test_the_architecture_doc_names_only_what_exists():
    found = problems(_text(DOC))
    assert not found, "docs/ARCHITECTURE.md is out of date:\n" + "\n".join(found)


def test_the_check_catches_a_wrong_name_and_a_missing_file():
    doc = ("1. `lesspy_kernel/callloop.py`: `CallLoop.serve_if_pending` takes it.\n"
           "2. `lesspy_kernel/callloop.py`: `CallLoop.serve_when_pending` takes it.\n"
           "3. `csharp/LessPy/Codec.Read.cs`: `Codec.Read` reads, `Codec.Raed` does not.\n"
           "4. `csharp/LessPy/Codec.cs`: `Codec.Read` is not declared here.\n"
           "5. `lesspy_kernel/transport/lane.py` is gone.\n"
           "```\n  CallLoop._serve --> Codec.WriteCall, CallLoop._serve_it,\n"
           "  write_scalar_reply (wire/encode.py), lane-N.req.mmf\n```\n")
    found = problems(doc)
    assert any("`CallLoop.serve_when_pending`" in p for p in found), found
    assert any("`Codec.Raed`" in p for p in found), found
    assert any("`Codec.Read` is declared in none of csharp/LessPy/Codec.cs" in p for p in found), found
    assert any("lesspy_kernel/transport/lane.py names no file" in p for p in found), found
    assert not any("serve_if_pending" in p for p in found), found
    assert any("`CallLoop._serve_it` (in a picture)" in p for p in found), found
    assert len(found) == 5, found
