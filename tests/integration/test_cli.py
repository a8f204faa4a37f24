"""The command line exactly as users run it, in a fresh process that starts its own local Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime

from orchestration.output import read_outcomes


def _run_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("JEWELRY_")}
    return subprocess.run(
        [sys.executable, "-m", "orchestration", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_run_200_orders_as_json_on_the_embedded_ray(tmp_path):
    out = tmp_path / "out"
    proc = _run_cli(
        "run",
        "--orders",
        "200",
        "--time-scale",
        "0.002",
        "--json",
        "--out",
        str(out),
        "--set",
        "dashboard=false",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # stdout holds exactly one JSON object
    assert (summary["orders_total"], summary["completed"], summary["failed"], summary["rejected"]) == (200, 200, 0, 0)
    assert set(summary["latency_ms"]) >= {"p50", "p95", "p99"}
    assert summary["throughput_per_s"] > 0 and summary["theoretical_limit_per_s"] == 250.0
    for stage in ("material", "design", "production", "quality", "packaging", "logistics"):
        assert summary["stages"][stage]["calls"] == 200 and summary["stages"][stage]["replicas"] == 1
        assert summary["stages"][stage]["snapshot"][f"{stage}-0"]["calls"] == 200
    assert len(read_outcomes(out / "outcomes.jsonl")) == 200
    assert (out / "rejects.jsonl").read_text() == ""
    assert json.loads((out / "summary.json").read_text())["completed"] == 200
    # and one order's story, read back from the run's ledger: six calls, each where and when it ran on
    # Ray. (Here a call lasts 1-4 ms, and an order's six calls wait behind other orders in six queues
    # of different speeds, so whether two of them overlapped is chance; test_fanout asserts the overlap
    # where it is not.)
    proc = _run_cli("trace", "J2025001", "--out", str(out), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trace = json.loads(proc.stdout)
    assert trace["status"] == "completed" and sorted(c["stage"] for c in trace["calls"]) == sorted(summary["stages"])
    at = datetime.fromisoformat
    assert all(
        at(trace["admitted_at"]) <= at(c["started_at"]) <= at(c["finished_at"]) <= at(trace["concluded_at"])
        for c in trace["calls"]
    )
    assert all(not call["node_id"].startswith("local-") for call in trace["calls"])  # real Ray nodes
    proc = _run_cli("trace", "J2025001", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0 and "stage calls on one time axis" in proc.stdout
    assert _run_cli("trace", "J1999999", "--out", str(out), cwd=tmp_path).returncode == 2


def test_a_bad_argument_exits_non_zero_with_the_reason(tmp_path):
    proc = _run_cli("run", "--replicas", "polishing=2", cwd=tmp_path)
    assert proc.returncode == 2 and "unknown stage 'polishing'" in proc.stderr
