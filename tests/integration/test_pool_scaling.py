"""Autoscaling on a real Ray: the bottleneck pool grows under load, shrinks back once idle, and a
replica scaled away leaves its state in the ledger for the next one scaled into its slot."""

from __future__ import annotations

import time

from actors.intake.samples import generate_orders
from actors.intake.sources import SourceSpec
from actors.models import StageName, StageStatus
from orchestration.supervisor import TICK_S
from tests.support import wait_until

SCALING = {
    "max_replicas": 2,
    "target_ongoing_per_replica": 4,
    "upscale_delay_s": 0.5,
    "downscale_delay_s": 2,
    "look_back_s": 1,
}


def _fresh_orders(tmp_path, count: int) -> SourceSpec:
    """Orders under ids the first run did not use (generated ids follow the index alone)."""
    path = tmp_path / "more.jsonl"
    originals = 3  # the three fixed sample orders hold certificates the first run reserved
    orders = [
        o.model_copy(update={"order_id": f"J9{i:07d}"})
        for i, o in enumerate(list(generate_orders(count + originals, seed=2))[originals:])
    ]
    path.write_text("".join(o.model_dump_json() + "\n" for o in orders), encoding="utf-8")
    return SourceSpec(path=path)


def test_the_bottleneck_pool_grows_under_load_and_shrinks_back_keeping_its_state(ledger_of, start_system, tmp_path):
    system = start_system(
        time_scale=0.01, artifacts=False, design={"replicas": 2}, production={"replicas": 1, "autoscaling": SCALING}
    )

    def production() -> int:
        return system.status(snapshots=False).replica_counts()[StageName.PRODUCTION]

    first = system.run(SourceSpec(count=600, seed=1), keep_outcomes=True)
    assert first.summary.completed == 600
    grew = [
        e
        for e in system.status(snapshots=False).scaling_events
        if e.stage is StageName.PRODUCTION and e.replicas_after == 2
    ]
    assert grew, "production never scaled up although it was the bottleneck"
    assert {o.results[StageName.PRODUCTION].replica for o in first.outcomes} == {"production-0", "production-1"}

    # Idle: back to one replica within the downscale delay (plus the look-back window and ticks), and
    # not before the pool had wanted fewer for that long: it stayed at two while the load lasted.
    idle_at = time.monotonic()
    delay = SCALING["downscale_delay_s"]
    wait_until(lambda: production() == 1, timeout_s=delay + 5, what="production back to one replica")
    shrink = next(
        e
        for e in system.status(snapshots=False).scaling_events
        if e.stage is StageName.PRODUCTION and e.replicas_after == 1
    )
    assert shrink.at_s - grew[-1].at_s >= delay - 2 * TICK_S  # the change is started up to two ticks early
    assert shrink.at_s - idle_at <= delay + SCALING["look_back_s"] + 2 * TICK_S
    done_by_1 = sum(o.results[StageName.PRODUCTION].replica == "production-1" for o in first.outcomes)
    saved = ledger_of(system).checkpoint_of("production-1")
    assert saved is not None and saved["counts"][StageStatus.OK.value] == done_by_1

    # Under load again, the replica scaled into slot 1 comes back from that checkpoint.
    assert system.run(_fresh_orders(tmp_path, 400)).summary.completed == 400
    assert any(e.replicas_after == 2 for e in system.status(snapshots=False).scaling_events if e.at_s > grew[-1].at_s)
    snapshot = next(s for s in system.status().snapshots[StageName.PRODUCTION] if s.replica == "production-1")
    assert snapshot.ok > done_by_1  # counted on from what it had done before it was scaled away
