"""A parked system renewed with new settings: the same actor processes, constructed again, with the
new business rules, policies and a ledger of their own, a pool of another size resized (what the
suite's `start_system` relies on)."""

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
        with pytest.raises(ValueError, match="the Ray options its actors were created with"):
            first.renewed(settings_for(production={"num_cpus": 0.2}))
        system = first.renewed(
            settings_for(out_dir=str(tmp_path / "second"), quality={"defect_rate": 1.0}, material={"replicas": 2})
        )
    except BaseException:
        first.shutdown()
        raise
    try:
        renewed_pids = actor_pids(system)
        assert renewed_pids is not None and system.settings.namespace == first.settings.namespace
        # The same processes, and one more: the second material replica, started for this pool size.
        assert {name: renewed_pids[name] for name in pids} == pids and set(renewed_pids) - set(pids) == {"material-1"}
        after = system.run(SourceSpec(count=60), keep_outcomes=True)
        # Its own ledger: the same order ids are new orders, not answers from the first ledger.
        assert after.summary.from_ledger == 0 and after.summary.failed == 60
        assert all(o.results[StageName.QUALITY].status is StageStatus.BUSINESS_FAILURE for o in after.outcomes)
        assert (system.settings.out_dir / "ledger.sqlite3").exists()
        shard = system.status(snapshots=False).dispatchers[0]
        assert shard.orders_done == 60  # counted from zero again
        snapshots = system.status().snapshots
        assert snapshots[StageName.PACKAGING][0].state["serials_issued"] == 60  # its state came from the new ledger
        assert sorted(s.replica for s in snapshots[StageName.MATERIAL]) == ["material-0", "material-1"]
        assert all(s.calls > 0 for s in snapshots[StageName.MATERIAL])  # both replicas take calls

        # Smaller again: the replica past the new size is stopped, the others kept.
        system.park()
        third = system.renewed(settings_for(out_dir=str(tmp_path / "third")))
        system = third
        assert actor_pids(third) == pids
        assert third.run(SourceSpec(count=20)).summary.completed == 20
    finally:
        system.shutdown()
