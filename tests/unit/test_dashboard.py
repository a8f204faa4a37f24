"""The Grafana dashboard queries exactly the metrics the actors export, and shows each of them."""

import json
import re
from pathlib import Path

from actors.telemetry import ALL_METRICS

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "jewelry_fanout_grafana_dashboard.json"


def _queried() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    names = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names |= set(re.findall(r"ray_(jewelry_\w+?)(?:_bucket|_count|_sum)?\{", target["expr"]))
    return names


def test_every_panel_queries_a_metric_we_export():
    assert _queried() <= set(ALL_METRICS)


def test_every_metric_we_export_has_a_panel():
    assert set(ALL_METRICS) <= _queried()


def test_metric_names_are_valid_for_ray():
    assert all(re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name) for name in ALL_METRICS)


def test_tallied_counts_reach_the_counter_at_flush_and_only_once():
    from actors.telemetry import Tally

    class Recorder:  # stands in for ray.util.metrics.Counter: records what it is handed
        def __init__(self):
            self.calls = []

        def inc(self, value, tags):
            self.calls.append((value, tags))

    counter = Recorder()
    tally = Tally(counter)
    for status in ["completed"] * 3 + ["failed"]:
        tally.inc(status=status)
    assert counter.calls == []
    tally.flush()
    assert sorted(counter.calls, key=str) == [(1, {"status": "failed"}), (3, {"status": "completed"})]
    tally.flush()
    assert len(counter.calls) == 2
