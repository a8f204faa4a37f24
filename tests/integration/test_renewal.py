"""A parked system renewed with new settings: the same actor processes, constructed again, with the
new business rules, policies and a ledger of their own (what the suite's `start_system` relies on)."""

from __future__ import annotations

import pytest

from actors.intake.sources import SourceSpec
from actors.models import StageName, StageStatus
from orchestration.system import FanoutSystem
from tests.integration.parked import actor_pids


def test_a_renewed_system_runs_on_the_same_processes_with_the_new_settings_and_ledger(
    settings_for, ray_session, tmp_path
):
    first = FanoutSystem.start(settings_for(out_dir=str(tmp_path / "first")))
    try:
        before = first.run(SourceSpec(count=60), keep_outcomes=True)
        assert before.summary.completed == 60
        pids = actor_pids(first)
        first.park()
        with pytest.raises(ValueError, match="the same replicas and shards"):
            first.renewed(settings_for(production={"replicas": 2}))
        system = first.renewed(settings_for(out_dir=str(tmp_path / "second"), quality={"defect_rate": 1.0}))
    except BaseException:
        first.shutdown()
        raise
    try:
        assert actor_pids(system) == pids and system.settings.namespace == first.settings.namespace
        after = system.run(SourceSpec(count=60), keep_outcomes=True)
        # Its own ledger: the same order ids are new orders, not answers from the first ledger.
        assert after.summary.from_ledger == 0 and after.summary.failed == 60
        assert all(o.results[StageName.QUALITY].status is StageStatus.BUSINESS_FAILURE for o in after.outcomes)
        assert (system.settings.out_dir / "ledger.sqlite3").exists()
        shard = system.status(snapshots=False).dispatchers[0]
        assert shard.orders_done == 60  # counted from zero again
        packaging = system.status().snapshots[StageName.PACKAGING][0]
        assert packaging.state["serials_issued"] == 60  # its stage state came from the new ledger
    finally:
        system.shutdown()
