"""docs/benchmarks.png from benchmarks/results.json (run by benchmarks/run.py with .venv-bench's matplotlib).

    python plot.py results.json out.png

Four panels, each case beside its floor (measured in the same run) and its peers: small calls, big arrays,
remote calls through Jupyter Server, start-up (the first three on log scales). Skipped cases are named with
"skipped"; quoted figures are hatched.
"""

from __future__ import annotations

import json
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"floor": "#9e9e9e", "lesspy": "#1f77b4", "peer": "#d62728"}


def by_id(rows):
    return {r["id"]: r for r in rows}


def panel(ax, title, items, rows, log=True):
    labels, values, colors, hatches = [], [], [], []
    for rid, label in items:
        if rid.startswith("floor_of:"):          # the composite floor of a lesspy case, as the table states it
            r = rows.get(rid.split(":", 1)[1])
            if r is None or r.get("floor_us") is None:
                continue
            r = {"section": "floor", "median_us": r["floor_us"]}
        else:
            r = rows.get(rid)
        if r is None:
            continue
        val = r.get("median_us")
        if val is None:
            labels.append(f"{label} (skipped)")
            values.append(0)
        else:
            labels.append(label + (" [quoted]" if r.get("quoted") else ""))
            values.append(val)
        colors.append(COLORS[r["section"]])
        hatches.append("//" if r.get("quoted") else "")
    y = list(range(len(labels)))[::-1]
    bars = ax.barh(y, [v if v else float("nan") for v in values], color=colors)
    for b, h in zip(bars, hatches):
        b.set_hatch(h)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_xscale("log")
        ax.set_xlabel("median, µs (log scale)", fontsize=8)
    else:
        ax.set_xlabel("median, µs", fontsize=8)
    for yi, v in zip(y, values):
        if v:
            text = f"{v / 1e6:.2f} s" if v >= 1e6 else f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.1f} µs"
            ax.text(v, yi, " " + text, va="center", fontsize=7)
    ax.grid(axis="x", alpha=0.3)
    shown = [v for v in values if v]
    if shown:
        ax.set_xlim(min(shown) / 2 if log else 0, max(shown) * (6 if log else 1.25))


def main(src, out):
    data = json.load(open(src))
    rows = by_id(data["rows"])
    meta = data["meta"]
    n = meta["sizes"]["n"]
    kg_n = meta["sizes"]["kg_n"]
    fig, axes = plt.subplots(4, 1, figsize=(10, 15), gridspec_kw={"height_ratios": [9, 9, 10, 4]})
    panel(axes[0], "small calls (C# -> Python and back)", [
        ("floor_spin", "floor: spin on a shared word (2 CPUs)"),
        ("floor_rtt_unix", "floor: 1-byte Unix socket round trip"),
        ("floor_rtt_tcp", "floor: 1-byte TCP round trip"),
        ("noop", "lesspy: no-op, headless"),
        ("add_ints", "lesspy: add_ints(2, 40)"),
        ("pinned_noop", "lesspy: no-op, C# and Python pinned to 2 CPUs"),
        ("live_noop", "lesspy: no-op into a live kernel"),
        ("floor_jupyter_msg", "floor: Jupyter messaging round trip"),
        ("pythonnet_add_ints", "pythonnet (in-process): add_ints"),
        ("kg_add_ints", "Kernel Gateway HTTP: add_ints"),
    ], rows)
    panel(axes[1], f"{n}x{n} float32 + 1 and a 1 MiB echo", [
        ("floor_cs_copy_64MiB", "floor: C# copy into a mapping"),
        ("floor_py_add_map_to_map", "floor: np.add map->map"),
        ("floor_of:big_natural", "floor: copy in + np.add + round trip"),
        ("big_natural", "lesspy: return a + 1"),
        ("big_result_array", "lesspy: into result_array()"),
        ("floor_of:big_inplace", "floor: np.add + lesspy no-op call"),
        ("big_inplace", "lesspy: request filled in place"),
        ("pythonnet_big", "pythonnet: copy in, + 1, copy out"),
        ("lpi_published", "original LessPythonInvoke 4096²"),
        ("kg_big", f"Kernel Gateway: {kg_n}² as base64 JSON"),
        ("floor_cs_copy_1MiB", "floor: C# copy 1 MiB"),
        ("floor_of:echo_1MiB", "floor: 2 copies of 1 MiB + round trip"),
        ("echo_1MiB", "lesspy: 1 MiB float64 echo"),
    ], rows)
    panel(axes[2], "remote: by URL through Jupyter Server (websocket), next to its echo and Jupyter's own", [
        ("remote_echo_small", "floor: websocket echo, small message"),
        ("remote_frames_direct", "no-op straight to the session (Unix socket)"),
        ("remote_noop", "lesspy remote: no-op"),
        ("remote_add_ints", "lesspy remote: add_ints(2, 40)"),
        ("remote_relayed_noop", "lesspy remote: no-op, relayed (as for https)"),
        ("jupyter_ws_kernel_info", "Jupyter Server kernel channels: kernel_info"),
        ("kg_add_ints", "Kernel Gateway HTTP: add_ints"),
        ("remote_echo_big", f"floor: websocket echo of a {n}² call's bytes"),
        ("remote_frames_direct_big", f"{n}² a + 1 straight to the session"),
        ("remote_big", f"lesspy remote: {n}² return a + 1"),
        ("remote_relayed_big", f"lesspy remote: {n}² return a + 1, relayed"),
        ("kg_big", f"Kernel Gateway: {kg_n}² as base64 JSON"),
    ], rows)
    panel(axes[3], "start-up", [
        ("floor_import_numpy", "floor: python -c 'import numpy'"),
        ("cold_initialize", "lesspy: cold Initialize to first result"),
        ("connect_first_call", "lesspy: Connect + first call"),
    ], rows, log=False)
    from matplotlib.patches import Patch
    fig.legend(handles=[Patch(color=COLORS["floor"], label="floor, measured in this run"),
                        Patch(color=COLORS["lesspy"], label="lesspy"),
                        Patch(color=COLORS["peer"], label="peer (hatched: quoted, not measured)")],
               loc="lower center", ncol=3, fontsize=8, frameon=False)
    v = dict(meta["versions"])
    mono = re.search(r"version (\S+)", v.get("mono", ""))
    v["mono"] = f"Mono {mono.group(1)}" if mono else v.get("mono", "Mono ?")
    fig.suptitle(f"lesspy, {meta['date']}: {meta['machine']['cpu']}, {meta['machine']['cores']} cores\n"
                 f"Python {v['python']}, numpy {v['numpy']}, lesspy {v['lesspy']}, {v['mono']}"
                 + (f", pythonnet {v['pythonnet']}" if "pythonnet" in v else "")
                 + (f", kernel gateway {v['jupyter_kernel_gateway']}" if "jupyter_kernel_gateway" in v else "")
                 + (f"\nmachine busy with other work (load average {meta['load_average_before'][0]} on "
                    f"{meta['machine']['cores']} cores): compare ratios, not times" if meta.get("busy_warning") else ""),
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
