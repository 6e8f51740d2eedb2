"""Writes docs/RELIABILITY.md from the figures of the last stress run (tests/stress/last_run.json).

`make stress` calls it at the end of the run (tests/stress/conftest.py); by hand:
    python tests/stress/report.py [tests/stress/last_run.json] [docs/RELIABILITY.md]
The document holds no figure that is not in the results file: edit this script, never the document.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def _n(x: Any) -> str:
    return f"{x:,}" if isinstance(x, int) else str(x)


def _table(head: List[str], rows: List[List[Any]]) -> List[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_n(c) for c in row) + " |" for row in rows]
    return out + [""]


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def _fuzz(lines: List[str], s: Dict[str, Any], language: str, refused: str, names: Dict[str, str]) -> None:
    rows = []
    for key, d in s["decoders"].items():
        o = d["outcomes"]
        alloc = d["alloc"]
        worst = alloc.get("worst_peak_bytes", alloc.get("worst_bytes", 0))
        rows.append([names.get(key, key), d["frames"], o.get("ok", 0), o.get(refused, 0), o.get("escaped", 0),
                     f"{worst:,} B (of {alloc.get('sampled', 0):,} sampled)", alloc["worst_bytes_per_frame_byte"],
                     len(alloc.get("over_bound", []))])
    lines.append(f"{language}: seed {s['seed']}, {s['seconds']} s, recorded {s.get('recorded_at', '?')}.")
    lines.append("")
    lines += _table(["decoder", "frames", "decoded", f"refused ({refused})", "anything else escaped",
                     "worst allocation of one decode", "worst bytes per frame byte", "over the bound"], rows)
    for key, d in s["decoders"].items():
        for e in d["escaped"][:5]:
            lines.append(f"- {names.get(key, key)} let escape `{e['error'][:160]}` on frame `{e['frame'][:120]}`")
        for e in d["alloc"].get("over_bound", [])[:3]:
            lines.append(f"- {names.get(key, key)} allocated {e.get('peak', e.get('allocated'))} B for a "
                         f"{e['frame_bytes']}-byte frame `{e['frame'][:120]}`")
    if lines[-1] != "":
        lines.append("")


MODES = {"spin": "a pure-Python call that never returns", "sleep": "calls blocked in C for 0.3 s, back to back",
         "stream": "small calls back to back", "mega": "1 MiB calls back to back"}


def _kills(lines: List[str], k: Dict[str, Any], title: str, client: str) -> None:
    lines += [f"## {title}", "",
              f"{k['clients_killed']} client processes ({client}) in {k['batches']} batches of {k['per_batch']}, "
              "SIGKILLed while calling a real headless server: "
              + ", ".join(f"{n} {mode}" for mode, n in sorted(k["modes"].items()))
              + " (" + "; ".join(f"{mode}: {MODES[mode]}" for mode in sorted(k["modes"]) if mode in MODES)
              + "). After each batch the server must have closed every "
              "lane and removed its files, and must still answer correctly.",
              f"Recorded {k.get('recorded_at', '?')}; the server counted "
              + ", ".join(f"{v:,} {n.replace('_', ' ')}" for n, v in k.get("server_status", {}).items()) + ".",
              ""]
    rows = [[x["after"], x["fds"], x["threads"], _mib(x["rss_kib"])] for x in k["samples"]]
    lines += _table(["server, after", "descriptors", "threads", "RSS MiB"], rows)


def render(results: Dict[str, Any]) -> str:
    s = results.get("sections", {})
    m = results.get("machine", {})
    lines = [
        "# Reliability: fuzz, kill and soak figures",
        "",
        "Written by `tests/stress/report.py` from `tests/stress/last_run.json`, the figures of the last",
        "`make stress` run (`pytest -m stress tests`); never edited by hand. Each section says when it was recorded.",
        "Short versions of every run below are part of `make test`.",
        "",
        f"Machine: {m.get('cpus', '?')} CPUs, Python {m.get('python', '?')}, {m.get('mono', '?')}.",
        "",
        "## Decoders fed mutated frames",
        "",
        "Golden vectors (`tests/vectors/`), random valid frames and hand-made hostile frames (huge counts and",
        "shapes, deep nesting, many tiny rows), mutated by bit flips, byte overwrites, truncations, u16/u32/u64",
        "length fields set to huge values, insertions, deletions, duplications, splices of two frames and plain",
        "random bytes. Only the decoder's own error may escape. A sample of frames is decoded again while its",
        "allocations are measured (Python: tracemalloc peak; C#: bytes allocated by the thread, second decode);",
        "the bound is 32 bytes per byte of frame plus 64 KiB.",
        "",
    ]
    if "fuzz_python" in s:
        _fuzz(lines, s["fuzz_python"], "Python (`lesspy_kernel.wire`)", "FrameError",
              {"call": "decode_call", "value": "decode_value", "error": "decode_error",
               "reply": "decode_reply (NDARRAY_IN_REQUEST)"})
    if "fuzz_csharp" in s:
        _fuzz(lines, s["fuzz_csharp"], "C# (`LessPy.Codec`, tests/csharp/FuzzCodec.cs)", "ProtocolException",
              {"read": "Codec.Read", "read_error": "Codec.ReadError"})
    if "kill_clients" in s:
        _kills(lines, s["kill_clients"], "Clients SIGKILLed mid-call", "Python, `lesspy_kernel.client.ClientLane`")
    if "kill_csharp_clients" in s:
        _kills(lines, s["kill_csharp_clients"], "C# clients SIGKILLed mid-call",
               "C#, `LessPythonInvoke.Connect<T>`, tests/csharp/StressClient.cs")
    if "kill_server" in s:
        lines += ["## The server SIGKILLed mid-call", "",
                  "Callers (each on its own lane, 60 s timeout) blocked in a call when the server process is "
                  "SIGKILLed. Each must fail at once with `ConnectionError`.", ""]
        rows = [[r["mode"], r["callers"], "yes" if r["all_connection_error"] else "NO", r["worst_ms"],
                 "; ".join(e[:80] for e in r["errors"])] for r in s["kill_server"]["runs"]]
        lines += _table(["calls", "callers", "all ConnectionError", "slowest caller, ms after the kill",
                         "errors seen"], rows)
    if "soak" in s:
        k = s["soak"]
        lines += ["## Soak", "",
                  f"{k['calls']:,} calls (target {k.get('target', 0):,}) from {k['threads']} threads, each on its "
                  f"own lane, in {k['seconds']} s ({k['calls_per_second']:,} calls/s; measured rate before the "
                  f"run: {k.get('measured_rate', '?'):,} calls/s): "
                  + ", ".join(f"{n:,} {kind}" for kind, n in sorted(k["kinds"].items()))
                  + ". Every result carries its caller's tag and call number and was checked: "
                  f"{len(k['wrong'])} wrong results, {len(k['errors'])} failed callers. Recorded "
                  f"{k.get('recorded_at', '?')}.", ""]
        if k.get("why_fewer"):
            lines += [f"Fewer than {k.get('target', 0):,} calls: {k['why_fewer']}.", ""]
        c = k.get("server_counted")
        if c:
            lines += [f"The server counted {c['calls']:,} calls with {c['errors']:,} errors for the "
                      f"{c['client_calls']:,} calls the client made (probe included)"
                      + (f"; the extra ones are phantom requests (last error: {c['last_error']!r})"
                         if c["calls"] != c["client_calls"] else "") + ".", ""]
        samples = k["samples"]
        during = [x for x in samples if "after" not in x]
        pick = [samples[0]] + (during[:1] + during[len(during) // 2:len(during) // 2 + 1] + during[-1:]
                               if during else []) + [samples[-1]]
        rows = [[x.get("after", "during"), x.get("calls", 0), x["fds"], x["threads"], _mib(x["rss_kib"])]
                for x in pick]
        lines += ["Server figures (every sample is in the results file):", ""]
        lines += _table(["when", "calls so far", "descriptors", "threads", "RSS MiB"], rows)
    if "soak_csharp" in s:
        k = s["soak_csharp"]
        lines += ["## Soak through the C# client", "",
                  f"{k['calls']:,} calls from {k['threads']} threads sharing one C# proxy "
                  f"(`LessPythonInvoke.Connect<T>`, tests/csharp/StressClient.cs) in {k['seconds']} s "
                  f"({k['calls_per_second']:,} calls/s); one call in 100 sends and receives 1 MiB, the others are "
                  "small (a tuple, a string, an int). Every result carries its caller's tag and call number and was "
                  f"checked: {k['wrong']} wrong results, {len(k['errors'])} failed callers. Recorded "
                  f"{k.get('recorded_at', '?')}.", ""]
        during = k.get("samples", [])[:-1]
        pick = [("before", k["server_before"])] + [(f"during ({i + 1} of {len(during)})", during[i]) for i in
                                                   sorted({0, len(during) // 2, len(during) - 1}) if during] \
            + [("after, lanes closed", k["server_after"])]
        rows = [[when, x["fds"], x["threads"], _mib(x["rss_kib"])] for when, x in pick]
        if k.get("why_fewer"):
            lines += [f"Fewer than {k.get('target', 0):,} calls: {k['why_fewer']}.", ""]
        c = k.get("server_counted")
        if c:
            lines += [f"The server counted {c['calls']:,} calls with {c['errors']:,} errors for the "
                      f"{c['client_calls']:,} calls the C# client made.", ""]
        lines += _table(["server", "descriptors", "threads", "RSS MiB"], rows)
    if "allocator" in s:
        k = s["allocator"]
        lines += ["## Results made in the response mapping, kept in globals", "",
                  f"{k['calls']:,} calls from {k['threads']} threads in {k['seconds']} s, each returning `a + 1` for "
                  "a 512 KiB+ argument, which lesspy's allocator makes in the lane's response mapping; one call in "
                  "three also keeps its result in a global, so it is moved out of the mapping (`mremap`) before the "
                  "next reply, and every 50 calls the caller checks all its kept arrays and drops the older half "
                  f"(freed by a later call): {k['wrong']} wrong results or changed kept arrays, "
                  f"{len(k['errors'])} failed callers. Server after the run: {k['server']['fds']} descriptors, "
                  f"{k['server']['threads']} threads, {_mib(k['server']['rss_kib'])} MiB resident. Recorded "
                  f"{k.get('recorded_at', '?')}.", ""]
    return "\n".join(lines).rstrip() + "\n"


def write(results_path: Path, out: Path) -> None:
    out.write_text(render(json.loads(Path(results_path).read_text())))


if __name__ == "__main__":
    args = sys.argv[1:]
    write(Path(args[0]) if args else HERE / "last_run.json",
          Path(args[1]) if len(args) > 1 else ROOT / "docs" / "RELIABILITY.md")
