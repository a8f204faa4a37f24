"""A real run over 1,000 generated malformed records: nothing crashes it, nothing is lost."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings

from actors.intake.sources import SourceSpec
from orchestration.output import read_outcomes
from tests.malformed import order_file_lines


@settings(
    max_examples=1,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(lines=order_file_lines(count=1200))
def test_a_run_over_malformed_records_reports_every_one_and_completes_the_rest(start_system, store, tmp_path, lines):
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join(line.replace("\n", " ") for line in lines) + "\n", encoding="utf-8")
    system = start_system(ledger=store)
    result = system.run(SourceSpec(path=path), out_dir=tmp_path / "out")
    outcomes = read_outcomes(result.files.outcomes_path)
    rejects = [json.loads(line) for line in result.files.rejects_path.read_text(encoding="utf-8").splitlines()]
    summary = result.summary
    assert summary.lost == 0 and result.source_error is None
    assert len(outcomes) + len(rejects) == summary.orders_total == 1200
    assert len(rejects) >= 1000 - 50  # a mutation can leave a record valid; every malformed one is here
    assert all(o.status == "completed" for o in outcomes)
    assert {f"J2030{i:06d}" for i in range(0, 1200, 6)} <= {o.order_id for o in outcomes}
    assert all(r["errors"] and r["line"] >= 1 and r["message"] for r in rejects)
