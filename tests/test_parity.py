"""What Python and C# must agree on, checked across the two languages.

The constants are read from the C# declarations themselves (every csharp/LessPy/*.cs, each found by its type's
name and its member's name, whichever file holds it) and compared with the Python values; a difference fails
naming both sides. The behaviour both sides share (the growth rule, record-field matching, name conversions)
is checked by running both on the same vectors: tests/csharp/Parity.cs, compiled with the LessPy sources so it
reaches their internal functions, prints what C# makes of them.
"""

from __future__ import annotations

import errno
import inspect
import re
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest

from conftest import ROOT, run_mono
from lesspy_kernel import client, server, stubgen, wire, workfolder
from lesspy_kernel.transport import mapping
from lesspy_kernel.wire import handshake

CS_SOURCES = ROOT / "csharp" / "LessPy"
NAMES = ROOT / "tests" / "vectors" / "names.txt"


# ------------------------------------------------------------------------------------------ reading C# declarations

_BLANKED = re.compile(r'//[^\n]*|/\*.*?\*/|@"(?:[^"]|"")*"|"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)\'', re.S)
_TYPE = re.compile(r"\b(?:class|struct|enum|interface)\s+(\w+)[^;{]*\{")
_CONST = re.compile(r"\b(?:const|static\s+readonly)\s+[\w.<>\[\],? ]+?\s+(\w+\s*=.*?);", re.S)
_CASTS = re.compile(r"\((?:long|ulong|int|uint|short|ushort|byte|sbyte)\)")
_NUMBER = re.compile(r"\b(0[xX][0-9a-fA-F]+|\d+)(?:UL|ul|L|l|U|u)?\b")


def _blank(text: str) -> str:
    """`text` with its comments and the insides of its string and char literals turned into spaces (same offsets),
    so braces and keywords are found only in code."""
    def spaces(m: re.Match) -> str:
        s = m.group(0)
        if s.startswith("/"):
            return re.sub(r"[^\n]", " ", s)
        return s[0] + " " * (len(s) - 2) + s[-1]
    return _BLANKED.sub(spaces, text)


def _split_top(text: str) -> List[str]:
    """`text` split at the commas outside brackets and literals (`A = 1, B = 2` -> two parts)."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(_blank(text)):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


class CSharp:
    """The enums, constants and static readonly fields of the C# sources, by type name and member name."""

    def __init__(self, folder: Path) -> None:
        self.bodies: Dict[str, str] = {}                  # type -> the source text between its braces
        self.exprs: Dict[Tuple[str, str], str] = {}       # (type, member) -> its initializer's text
        self.enums: Dict[str, Dict[str, int]] = {}
        self.files: Dict[str, str] = {}                   # type -> the file that declares it (for messages)
        for path in sorted(folder.glob("*.cs")):
            self._read(path)

    def _read(self, path: Path) -> None:
        text = path.read_text("utf-8")
        code = _blank(text)
        spans = []                                        # (start, end, name) of each type's body
        for m in _TYPE.finditer(code):
            depth, i = 1, m.end()
            while depth:
                depth += {"{": 1, "}": -1}.get(code[i], 0)
                i += 1
            spans.append((m.end(), i - 1, m.group(1)))
            # a partial type's parts may lie in several files: its body is all of them
            self.bodies[m.group(1)] = self.bodies.get(m.group(1), "") + text[m.end():i - 1]
            self.files[m.group(1)] = ", ".join(filter(None, (self.files.get(m.group(1)), path.name)))

        def owner(pos: int) -> str:
            inner = [s for s in spans if s[0] <= pos < s[1]]
            return min(inner, key=lambda s: s[1] - s[0])[2] if inner else ""

        for m in _CONST.finditer(code):
            typ = owner(m.start())
            decl = text[m.start(1):m.end(1)]
            for part in _split_top(decl):
                name, _, expr = part.partition("=")
                self.exprs[(typ, name.strip())] = expr.strip()
        for m in re.finditer(r"\benum\s+(\w+)[^{]*\{", code):
            body = code[m.end():code.index("}", m.end())]
            members, value = {}, -1
            for part in body.split(","):
                part = re.sub(r"\[[^\]]*\]", "", part).strip()
                if not part:
                    continue
                name, _, expr = part.partition("=")
                value = int(expr.strip(), 0) if expr.strip() else value + 1
                members[name.strip()] = value
            self.enums[m.group(1)] = members

    def where(self, typ: str, member: str = "") -> str:
        return f"C# {typ}{'.' + member if member else ''} ({self.files.get(typ, 'no such type in csharp/LessPy')})"

    def enum(self, typ: str) -> Dict[str, int]:
        assert typ in self.enums, f"no enum {typ} in csharp/LessPy/*.cs"
        return self.enums[typ]

    def value(self, typ: str, member: str) -> Any:
        """The member's value: an int, a str, a Fraction (a Stopwatch tick count, in seconds), a list."""
        assert (typ, member) in self.exprs, f"no constant {self.where(typ, member)}"
        expr = self.exprs[(typ, member)]
        if expr.startswith("{"):
            return [self._eval(part, typ) for part in _split_top(expr.strip("{} ")) if part.strip()]
        return self._eval(expr, typ)

    def _eval(self, expr: str, typ: str) -> Any:
        scope: Dict[str, Any] = {"_ticks": Fraction(1), "_seconds": Fraction}

        def literal(m: re.Match) -> str:
            key = f"_lit{len(scope)}"
            scope[key] = m.group(0)[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            return key
        expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)\'', literal, expr)
        expr = _CASTS.sub("", expr).replace("Stopwatch.Frequency", "_ticks").replace("TimeSpan.FromSeconds", "_seconds")
        expr = expr.replace("int.MaxValue", str(2**31 - 1))
        expr = _NUMBER.sub(lambda m: str(int(m.group(1), 0)), expr)
        for ref in set(re.findall(r"\b([A-Za-z_]\w*(?:\.\w+)?)\b", expr)) - set(scope):
            owner, _, name = ref.rpartition(".")
            key = f"_ref{len(scope)}"
            scope[key] = self.value(owner or typ, name)
            expr = re.sub(rf"\b{re.escape(ref)}\b", key, expr)
        result = eval(expr, {"__builtins__": {}}, scope)       # noqa: S307 - our own sources, names replaced above
        return int(result) if isinstance(result, Fraction) and result.denominator == 1 and "_ticks" not in expr \
            else result


@pytest.fixture(scope="module")
def cs() -> CSharp:
    return CSharp(CS_SOURCES)


def _same(python: Any, csharp: Any, what: str, cs_where: str) -> None:
    assert python == csharp, f"{what}: Python has {python!r}, {cs_where} has {csharp!r}"


def _key(name: str) -> str:
    return name.replace("_", "").lower()


def _same_enum(cs: CSharp, cs_type: str, python: Dict[str, int], what: str, renamed: Dict[str, str] = {}) -> None:
    """Every Python member has a C# member of the same name (PascalCase, or as `renamed` says) and value, and
    C# has no other member."""
    theirs = cs.enum(cs_type)
    by_key = {_key(n): n for n in theirs}
    for name, value in python.items():
        cs_name = renamed.get(name) or by_key.get(_key(name))
        assert cs_name in theirs, f"{what} {name} = {value} (Python) has no member in {cs.where(cs_type)}"
        _same(value, theirs[cs_name], f"{what} {name}", cs.where(cs_type, cs_name))
    matched = {renamed.get(n) or by_key.get(_key(n)) for n in python}
    extra = sorted(set(theirs) - matched)
    assert not extra, f"{cs.where(cs_type)} has {extra}, which Python's {what} lacks"


# ------------------------------------------------------------------------------------------------- the constants

def test_value_tags(cs):
    _same_enum(cs, "Tag", {t.name: int(t) for t in wire.Tag}, "tag")


def test_error_kinds(cs):
    _same_enum(cs, "ErrorKind", {k.name: int(k) for k in wire.ErrorKind}, "error kind")


def test_statuses(cs):
    _same_enum(cs, "FrameStatus", {"OK": wire.STATUS_OK, "ERROR": wire.STATUS_ERROR, "END": wire.STATUS_END},
               "frame status", {"OK": "Value"})
    _same_enum(cs, "RequestStatus", {"CALL": wire.REQUEST_CALL, "NEXT": wire.REQUEST_NEXT,
                                     "CLOSE": wire.REQUEST_CLOSE, "STREAM": wire.REQUEST_STREAM}, "request status")


def test_dtypes(cs):
    table = re.findall(r'new DType\(\s*(\d+)\s*,\s*"(\w+)"\s*,\s*(\d+)', cs.bodies["DType"])
    theirs = {name: (int(code), int(size)) for code, name, size in table}
    ours = {name: (code, np.dtype(name).itemsize) for name, code in wire.DTYPE_CODES.items()}
    for name in sorted(set(ours) | set(theirs)):
        _same(ours.get(name), theirs.get(name), f"dtype {name} (code, item size)", cs.where("DType", "ByCode"))


def _fields(layout: struct.Struct, names: List[str]) -> Dict[str, Tuple[int, int]]:
    """Each field's (offset, size) in a little-endian struct, from the struct's own format; `names` name its fields
    in order, one each."""
    assert layout.format.startswith("<"), layout.format
    codes = re.findall(r"\d*[a-zA-Z]", layout.format[1:])
    assert len(codes) == len(names), f"{layout.format} has {len(codes)} fields, named {names}"
    fields, fmt = {}, "<"
    for name, code in zip(names, codes):
        fields[name] = (struct.calcsize(fmt), struct.calcsize("<" + code))
        fmt += code
    return fields


def _header_offsets() -> Dict[str, int]:
    """Each field's offset in the mapping header, from the Python header struct's own layout."""
    names = ["magic", "version", "header_size", "capacity", "sequence", "length", "status", "waiting", "session",
             "cancel", "flags"]
    return {name: offset for name, (offset, _) in _fields(wire.HEADER, names).items()}


def test_header_layout(cs):
    _same(wire.HEADER_SIZE, wire.HEADER.size, "the header struct's size", "HEADER_SIZE (Python)")
    _same(wire.HEADER_SIZE, cs.value("Wire", "HeaderSize"), "header size", cs.where("Wire", "HeaderSize"))
    offsets = _header_offsets()
    named = {"version": wire.VERSION_OFFSET, "capacity": wire.CAPACITY_OFFSET, "sequence": wire.SEQUENCE_OFFSET,
             "length": wire.LENGTH_OFFSET, "status": wire.STATUS_OFFSET, "waiting": wire.WAITING_OFFSET,
             "session": wire.SESSION_OFFSET, "cancel": wire.CANCEL_OFFSET, "flags": wire.FLAGS_OFFSET}
    for field, offset in named.items():
        _same(offsets[field], offset, f"the {field} offset", "Python's HEADER struct")
    for field, offset in offsets.items():
        member = "Off" + stubgen.pascal_case(field)
        _same(offset, cs.value("Wire", member), f"the {field} offset", cs.where("Wire", member))
    _same(wire.FLAG_REPLY_IN_REQUEST, cs.value("Wire", "FlagReplyInRequest"), "flag reply-in-request",
          cs.where("Wire", "FlagReplyInRequest"))
    _same(mapping.MAX_PAYLOAD, cs.value("Wire", "MaxPayload"), "the largest payload", cs.where("Wire", "MaxPayload"))


def _magics(sources: str) -> Tuple[set, set]:
    """The four letters C# compares a header's first bytes with (`h[0] != 'L' || h[1] != 'P' ...`), and those it
    writes (`a[0] = (byte)'L'; ...`), wherever in the sources that is done."""
    checked = re.findall("".join(rf"\w+\[{i}\] != '(.)'[^']*?" for i in range(4)), sources)
    written = re.findall("".join(rf"\w+\[{i}\] = \(byte\)'(.)';\s*" for i in range(4)), sources)
    return {"".join(m) for m in checked}, {"".join(m) for m in written}


def test_version_and_magics(cs):
    _same(wire.PROTOCOL_VERSION, cs.value("Wire", "Version"), "protocol version", cs.where("Wire", "Version"))
    checked, written = _magics("".join(p.read_text("utf-8") for p in sorted(CS_SOURCES.glob("*.cs"))))
    magics = {wire.MAPPING_MAGIC.decode(), handshake.MAGIC.decode()}
    _same(magics, checked, "the magics a reader checks (mapping, hello)", "the magics C# checks")
    _same({handshake.MAGIC.decode()}, written, "the magic a client writes (answer)", "the magics C# writes")


def test_handshake(cs):
    _same_enum(cs, "ServerMode", {m.name: int(m) for m in handshake.Mode}, "server mode")
    _same_enum(cs, "Purpose", {p.name: int(p) for p in handshake.Purpose}, "purpose", {"LANE": "OpenLane"})
    _same_enum(cs, "HandshakeResult", {r.name: int(r) for r in handshake.Result}, "handshake result",
               {"BAD_VERSION": "UnsupportedVersion"})


# the handshake's messages: the C# prefix of their Wire constants, the Python struct, its fields' names in order
HANDSHAKE_MESSAGES = [("Hello", handshake.HELLO, ["magic", "version", "mode", "session", "nonce"]),
                      ("Answer", handshake.ANSWER, ["magic", "version", "purpose", "pid", "client_id", "mac"]),
                      ("Result", handshake.RESULT, ["result", "message_length"])]


def test_handshake_layout(cs):
    """Every field of the hello, the answer and the result sits where Python's structs put it: C# Wire has
    <Message>Size and <Message>Off<Field> for each; the nonce, the HMAC and an accepted lane's id have their sizes."""
    fields = {}
    for message, layout, names in HANDSHAKE_MESSAGES:
        member = message + "Size"
        _same(layout.size, cs.value("Wire", member), f"the {message.lower()}'s size", cs.where("Wire", member))
        fields[message] = _fields(layout, names)
        for name, (offset, _) in fields[message].items():
            member = message + "Off" + stubgen.pascal_case(name)
            _same(offset, cs.value("Wire", member), f"the {message.lower()}'s {name} offset", cs.where("Wire", member))
    for size, member in ((fields["Hello"]["nonce"][1], "NonceSize"), (fields["Answer"]["mac"][1], "MacSize"),
                         (handshake.LANE_ID.size, "LaneIdSize")):
        _same(size, cs.value("Wire", member), member, cs.where("Wire", member))
    _same(handshake.ANSWER_HEAD.format, handshake.ANSWER.format[:len(handshake.ANSWER_HEAD.format)],
          "the answer's head", "Python's ANSWER struct")


def test_notify_bytes(cs):
    for python, member in ((handshake.CALL, "NotifyCall"), (handshake.SHUTDOWN, "NotifyShutdown"),
                           (handshake.REPLY, "NotifyReply")):
        _same(python[0], cs.value("Wire", member), f"notify byte {member}", cs.where("Wire", member))


def test_work_folder_files(cs):
    pairs = [(workfolder.PID_FILE, "WorkFolder", "PidFile"), (workfolder.PORT_FILE, "WorkFolder", "PortFile"),
             (workfolder.KEY_FILE, "WorkFolder", "KeyFile"), (workfolder.LOG_FILE, "WorkFolder", "LogFile"),
             (workfolder.MODULE_FILE, "WorkFolder", "ModuleFile"),
             (workfolder.SESSION_NAME_FILE, "WorkFolder", "SessionNameFile"),
             (workfolder.SESSIONS, "WorkFolder", "Sessions"), (workfolder.SOCKET_FILE, "Wire", "SocketFile"),
             (workfolder.LOCK_FILE, "Wire", "LockFile"), (workfolder.UNIX, "Wire", "UnixPortText")]
    for python, typ, member in pairs:
        _same(python, cs.value(typ, member), f"work folder file {member}", cs.where(typ, member))
    folder = workfolder.WorkFolder("/nonexistent")
    for which, member in (("req", "LaneRequestSuffix"), ("resp", "LaneResponseSuffix")):
        prefix = re.search(r'LaneFile\([^)]*\)\s*\{\s*return\s+"([^"]*)"', cs.bodies["Wire"])
        csharp = (prefix.group(1) if prefix else "?") + "7" + cs.value("Wire", member)
        _same(folder.lane_file(7, which).name, csharp, f"lane 7's {which} file", cs.where("Wire", "LaneFile"))
    # what a client removes from a stale folder: the server's files and the first version's mappings
    removed = set(cs.value("WorkFolder", "ServerFiles"))
    _same(set(workfolder.SERVER_FILES + workfolder.LEGACY_FILES), removed, "a stale folder's server files",
          cs.where("WorkFolder", "ServerFiles"))


def test_wait_timings(cs):
    """The reference client waits as the C# client does: spin, then yield, then block."""
    wait = inspect.signature(client.ClientLane.wait).parameters
    for python, member in ((wait["spin"].default, "SpinTicks"), (wait["yield_for"].default, "YieldTicks")):
        _same(round(python * 1e6, 3), round(float(cs.value("WaitTimings", member)) * 1e6, 3),
              f"the client's wait.{'spin' if member == 'SpinTicks' else 'yield_for'} (µs)", cs.where("WaitTimings", member))


def test_limits(cs):
    for python, typ, member, what in ((wire.MAX_NAME_BYTES, "Codec", "MaxNameBytes", "function name bytes"),
                                      (wire.MAX_NDIM, "Codec", "MaxDims", "ndarray dimensions"),
                                      (wire.MAX_DEPTH, "Codec", "MaxDepth", "nesting depth"),
                                      (wire.MAX_DATETIME_TICKS, "Codec", "MaxDateTimeTicks", "DateTime ticks"),
                                      (server.MAX_LANES_PER_CLIENT, "Channel", "DefaultMaxLanes", "lanes per client"),
                                      (mapping.MIN_CAPACITY, "Mapping", "MinCapacity", "the smallest lane file"),
                                      (server.DEFAULT_CAPACITY, "Mapping", "DefaultCapacity", "a lane file's default size"),
                                      (wire.NDARRAY_ALIGN, "Wire", "NdArrayAlign", "the NDARRAY data alignment"),
                                      (wire.MAX_TUPLE, "Codec", "MaxTuple", "tuple items"),
                                      (wire.MAX_FIELDS, "Codec", "MaxFields", "record fields")):
        _same(python, cs.value(typ, member), what, cs.where(typ, member))
    # a ValueTuple's own limit is why a TUPLE has at most MAX_TUPLE items: C# knows a ValueTuple of each size
    tuples = re.findall(r"typeof\(ValueTuple<,*>\)", cs.exprs[("WireType", "TupleDefinitions")])
    _same(wire.MAX_TUPLE, len(tuples), "tuple items", cs.where("WireType", "TupleDefinitions"))


def test_errno_values(cs):
    """The errno values C# names (Posix) are this Linux's."""
    names = [name for typ, name in cs.exprs if typ == "Posix" and re.fullmatch(r"E[A-Z]+", name)]
    assert {"EINTR", "EAGAIN", "ENOSPC"} <= set(names), names
    for name in names:
        _same(getattr(errno, name), cs.value("Posix", name), f"errno {name}", cs.where("Posix", name))


# ---------------------------------------------------------------------------------- behaviour, run in both languages

@pytest.fixture(scope="module")
def ask_csharp(tmp_path_factory):
    """Asks Parity.cs (compiled with the LessPy sources) the questions given: ["grow 4096", "key Name", ...] ->
    its answers, in order."""
    out = tmp_path_factory.mktemp("parity")
    exe = out / "Parity.exe"
    sources = sorted(map(str, CS_SOURCES.glob("*.cs"))) + [str(ROOT / "tests" / "csharp" / "Parity.cs")]
    proc = subprocess.run(["mcs", "-unsafe", "-optimize+", "-nologo", f"-out:{exe}", *sources],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"mcs failed:\n{proc.stdout}\n{proc.stderr}"

    def ask(questions: List[str]) -> List[str]:
        (out / "questions.txt").write_text("\n".join(questions) + "\n", "utf-8")
        run = run_mono(exe, out / "questions.txt", out / "answers.txt")
        assert run.returncode == 0, run.stdout + run.stderr
        lines = (out / "answers.txt").read_text("utf-8").splitlines()
        assert [line.split("\t")[0] for line in lines] == questions
        return [line.split("\t", 1)[1] for line in lines]
    return ask


GROWTH_PAYLOADS = [0, 1, 4032, 4033, 4096, 8128, 8129, 65536, 2**20 - 64, 2**20 - 63, 3_000_000, 2**30,
                   mapping.MAX_PAYLOAD - 1, mapping.MAX_PAYLOAD]


def test_growth_rule(ask_csharp):
    """PROTOCOL.md section 2: a grown file is the smallest power of two holding header + payload (and at least the
    smallest capacity), whatever its size was, in both languages."""
    theirs = ask_csharp([f"grow {p}" for p in GROWTH_PAYLOADS])
    for payload, csharp in zip(GROWTH_PAYLOADS, theirs):
        ours = mapping.grown_size(payload)
        _same(ours, int(csharp), f"the file size for a payload of {payload} bytes", "C# Mapping.GrownSize")
        need = max(wire.HEADER_SIZE + payload, mapping.MIN_CAPACITY)
        assert ours & (ours - 1) == 0 and ours >= need and ours // 2 < need, (payload, ours)


def _names() -> List[List[str]]:
    lines = NAMES.read_text("utf-8").splitlines()
    return [line.split() for line in lines if line and not line.startswith("#")]


def test_name_conversions(ask_csharp):
    """A stub's property (Python pascal_case) comes back from C# (WireType.SnakeCase) as the field's own name, or
    one with the same key."""
    rows = _names()
    assert rows and all(len(row) in (2, 3) for row in rows), "tests/vectors/names.txt: 'snake Pascal [wire]' lines"
    theirs = ask_csharp([f"snake {row[1]}" for row in rows])
    for row, csharp in zip(rows, theirs):
        snake, pascal, sent = row[0], row[1], row[-1] if len(row) == 3 else row[0]
        _same(pascal, stubgen.pascal_case(snake), f"the C# name of {snake!r}", "stubgen.pascal_case")
        _same(sent, csharp, f"the wire name of {pascal!r} (names.txt)", "C# WireType.SnakeCase")
        _same(wire.field_key(snake), wire.field_key(sent), f"the key of {snake!r} and of {sent!r}", "field_key")
    assert len({row[0] for row in rows}) == len(rows), "a name is listed twice"


# names whose case differs between Unicode's and ASCII's rules: every one keeps its non-ASCII letters as they are
KEY_NAMES = ["MaxValue", "max_value", "HTTP_Code", "İd", "ıd", "Straße", "STRASSE", "ΣΑΣ", "σας", "ǅx", "Ωmega",
             "K_elvin", "ﬁle", "Ärger", "ärger", "_x_", "x__y"]


def test_field_keys(ask_csharp):
    """Record fields match by the same key in both languages: underscores and ASCII case do not count, any other
    character is compared as it is."""
    names = KEY_NAMES + sorted({name for row in _names() for name in row})
    theirs = ask_csharp([f"key {name}" for name in names])
    for name, csharp in zip(names, theirs):
        _same(wire.field_key(name), csharp, f"the key of {name!r}", "C# WireType.Key")
        expected = "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in name if c != "_")
        _same(expected, wire.field_key(name), f"the key of {name!r} by the rule", "field_key")


# the environments Jupyter's runtime dir is found from: each variable that decides it, an empty one (unset for
# both), and none (HOME's ~/.local/share); later rules' variables are set too, to show the earlier one wins
RUNTIME_ENVIRONMENTS = [
    {"JUPYTER_RUNTIME_DIR": "/r/runtime", "JUPYTER_DATA_DIR": "/r/data", "XDG_DATA_HOME": "/r/xdg", "HOME": "/r/home"},
    {"JUPYTER_DATA_DIR": "/r/data", "XDG_DATA_HOME": "/r/xdg", "HOME": "/r/home"},
    {"XDG_DATA_HOME": "/r/xdg", "HOME": "/r/home"},
    {"HOME": "/r/home"},
    {"JUPYTER_RUNTIME_DIR": "", "JUPYTER_DATA_DIR": "", "XDG_DATA_HOME": "", "HOME": "/r/home"},
]


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="the Linux rules (XDG_DATA_HOME); C# and Python "
                    "branch on the platform alike")
def test_jupyter_runtime_dir(ask_csharp, monkeypatch):
    """A named session's folder is found in the same runtime dir by both languages (workfolder.jupyter_runtime_dir,
    C# WorkFolder.JupyterRuntimeDir), whichever variables are set."""
    questions = ["runtime " + " ".join(f"{k}={v}" for k, v in env.items()) for env in RUNTIME_ENVIRONMENTS]
    theirs = ask_csharp(questions)
    for env, csharp in zip(RUNTIME_ENVIRONMENTS, theirs):
        for name in ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "XDG_DATA_HOME", "HOME"):
            if name in env:
                monkeypatch.setenv(name, env[name])
            else:
                monkeypatch.delenv(name, raising=False)
        ours = workfolder.jupyter_runtime_dir()
        _same(str(ours), csharp, f"the runtime dir with {env}", "C# WorkFolder.JupyterRuntimeDir")
