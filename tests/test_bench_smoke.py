"""`benchmarks/run.py --quick`: the benchmark harness runs end to end against this checkout (tiny sizes, no peers)
and reports every case with a figure or the reason it was skipped. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(240)
def test_quick_bench_reports_every_case(tmp_path, csharp_bin):
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--no-peers",
                           "--json", str(out), "--bin", str(csharp_bin)],
                          capture_output=True, text=True, timeout=230, cwd=str(tmp_path))
    assert proc.returncode == 0, f"run.py --quick failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    data = json.loads(out.read_text())
    rows = {r["id"]: r for r in data["rows"]}
    expected = {"floor_rtt_unix", "floor_rtt_tcp", "floor_spin", "floor_spin_unpinned", "floor_cs_copy_64MiB",
                "floor_py_copy_64MiB", "floor_py_add_map_to_map", "floor_cs_copy_1MiB", "floor_py_copy_1MiB",
                "floor_jupyter_msg", "floor_import_numpy", "noop", "add_ints", "big_natural", "big_result_array",
                "big_inplace", "echo_1MiB", "live_noop", "connect_first_call", "cold_initialize", "threads_8",
                "idle_cpu_cs", "idle_cpu_py", "pinned_noop", "pinned_add_ints", "rss_growth_cs", "rss_growth_py", "pythonnet_add_ints",
                "pythonnet_big", "kg_add_ints", "kg_big", "lpi_published", "remote_echo_small", "remote_frames_direct",
                "remote_echo_big", "remote_frames_direct_big", "remote_noop", "remote_add_ints", "remote_big",
                "remote_connect_warm", "remote_relayed_noop", "remote_relayed_big", "jupyter_ws_kernel_info"}
    assert expected <= set(rows), f"rows missing: {expected - set(rows)}"
    for rid, r in rows.items():
        has_figure = r.get("median_us") is not None or r.get("value") is not None
        assert has_figure or r.get("skip"), f"{rid} has neither a figure nor a skip reason: {r}"
    # what this checkout can always measure is measured, not skipped
    for rid in ("floor_rtt_unix", "floor_rtt_tcp", "floor_py_add_map_to_map", "noop", "add_ints", "big_natural",
                "echo_1MiB", "live_noop", "connect_first_call", "cold_initialize", "threads_8", "idle_cpu_py",
                "remote_echo_small", "remote_noop", "remote_echo_big", "remote_big", "jupyter_ws_kernel_info"):
        assert "skip" not in rows[rid], f"{rid} was skipped: {rows[rid]['skip']}"
    assert rows["lpi_published"]["quoted"] is True
    assert rows["remote_noop"]["floor_us"] == rows["remote_echo_small"]["median_us"]   # the echo, same run
    assert rows["pythonnet_big"]["skip"] == "not run: --no-peers given"
    meta = data["meta"]
    assert meta["machine"]["cores"] >= 1 and meta["versions"]["python"] and meta["versions"]["mono"]
