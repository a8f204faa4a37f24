"""The human views: a run's summary, a running system's status, one order's trace."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console
from rich.table import Table

from actors.models import StageName, StageStatus
from actors.models.breakers import BreakerSnapshot, BreakerState
from actors.models.messages import DispatcherStats, ReplicaLoad, SystemStatus
from actors.models.runs import RunRecord
from orchestration.output import RunFiles
from orchestration.report import RunSummary
from orchestration.trace import OrderTrace


def render_summary(console: Console, summary: RunSummary, files: RunFiles | None) -> None:
    overview = Table(title="Orders", show_header=False, title_justify="left")
    overview.add_column(style="bold")
    overview.add_column(justify="right")
    overview.add_row("total records", str(summary.orders_total))
    overview.add_row("[green]completed", str(summary.completed))
    overview.add_row("[yellow]failed", str(summary.failed))
    overview.add_row("[red]rejected", str(summary.rejected))
    if summary.dead_lettered:
        overview.add_row("[magenta]dead-lettered (replay them)", str(summary.dead_lettered))
    if summary.cancelled:
        overview.add_row("cancelled before they were due", str(summary.cancelled))
    if summary.scheduled:
        overview.add_row("[cyan]scheduled, not due yet (kept in the ledger)", str(summary.scheduled))
    if summary.lost:
        overview.add_row("[red bold]lost", str(summary.lost))
    if summary.unfinished:
        overview.add_row("[red]unfinished (run the same command again)", str(summary.unfinished))
    if summary.not_started:
        overview.add_row("[yellow]not started (interrupted)", str(summary.not_started))
    if summary.from_ledger:
        overview.add_row("of which done in an earlier run", str(summary.from_ledger))
    if summary.from_ledger and not summary.throughput_per_s:
        overview.add_row("throughput", "— (all done earlier; another --out starts anew)")
    else:
        limit = (
            f" (limit {summary.theoretical_limit_per_s:.1f}/s, {summary.efficiency:.0%})" if summary.efficiency else ""
        )
        overview.add_row("throughput", f"{summary.throughput_per_s:.1f} orders/s{limit}")
        lat = summary.latency_ms
        overview.add_row("latency p50 / p95 / p99", f"{lat.p50:.0f} / {lat.p95:.0f} / {lat.p99:.0f} ms")
    overview.add_row("wall time", f"{summary.wall_s:.1f} s")
    console.print(overview)

    stages = Table(title="Stages", title_justify="left")
    for column in ("stage", "calls", "ok", "declined", "errors", "p50 ms", "p95 ms", "replica load"):
        stages.add_column(column, justify="left" if column in ("stage", "replica load") else "right")
    for name, stage in summary.stages.items():
        load = "  ".join(f"{replica.rsplit('-', 1)[-1]}:{calls}" for replica, calls in stage.replica_calls.items())
        stages.add_row(
            f"{name} ×{stage.replicas}",
            str(stage.calls),
            str(stage.ok),
            str(stage.business_failures),
            str(stage.errors),
            f"{stage.time_ms.p50:.1f}",
            f"{stage.time_ms.p95:.1f}",
            load,
        )
    console.print(stages)

    if summary.failure_reasons:
        reasons = Table(title="Why orders did not complete", title_justify="left")
        reasons.add_column("reason")
        reasons.add_column("orders", justify="right")
        for reason, count in list(summary.failure_reasons.items())[:10]:
            reasons.add_row(reason, str(count))
        console.print(reasons)
    if files is not None:
        console.print(f"outcomes: {files.outcomes_path}\nrejects:  {files.rejects_path}")


def breaker_line(shards: list[DispatcherStats]) -> str:
    """`circuit breakers: all closed`, or each stage not closed with its worst shard's state."""
    worst: dict[str, BreakerSnapshot] = {}
    for shard in shards:
        for snap in shard.breakers:
            if snap.stage not in worst or snap.state.level > worst[snap.stage].state.level:
                worst[snap.stage] = snap
    troubled = [snap for snap in worst.values() if snap.state is not BreakerState.CLOSED]
    if not troubled:
        return "circuit breakers: all closed"
    parts = []
    for snap in troubled:
        rate = f"{snap.failure_rate:g}% of {snap.calls} calls failed" if snap.failure_rate is not None else "trials"
        wait = f", trial calls in {snap.retry_after_s:.1f} s" if snap.state is BreakerState.OPEN else ""
        parts.append(f"{snap.stage} {snap.state.value.upper()} ({rate}{wait}; {snap.refused} refused)")
    return "circuit breakers: " + "; ".join(parts)


def render_status(console: Console, status: SystemStatus) -> None:
    shards = status.dispatchers
    by_status = {name: sum(shard.by_status.get(name, 0) for shard in shards) for name in shards[0].by_status}
    head = (
        f"namespace {status.namespace}: {sum(s.in_flight for s in shards)} order(s) in flight, "
        f"{sum(s.waiting for s in shards)} waiting, "
    )
    head += ", ".join(f"{count} {name}" for name, count in by_status.items())
    if status.producer:
        p = status.producer
        head += f"\nproducer: {p['read']}/{p['expected_records']} record(s) read from {p['source']}, "
        head += f"{p['accepted']} accepted" + (", serving" if p["serving"] else "")
        if isinstance(http := p.get("http"), dict):
            answers = ", ".join(f"{count} {verdict}" for verdict, count in sorted(http["answers"].items()))
            head += (
                f"\nover HTTP: {http['queued']}/{http['max_queued']} queued for admission; answered {answers or 'none'}"
            )
        if isinstance(scheduled := p.get("scheduled"), dict) and scheduled["waiting"]:
            head += f"\nscheduled: {scheduled['waiting']} waiting for their time, next due {scheduled['next_due']}"
    head += "\n" + breaker_line(shards)
    console.print(head)
    if len(shards) > 1:
        table = Table(title="Dispatcher shards", title_justify="left")
        for column in ("shard", "in flight", "waiting", "done", "members"):
            table.add_column(column, justify="left" if column == "shard" else "right")
        for shard in shards:
            table.add_row(
                f"dispatcher-{shard.shard}",
                str(shard.in_flight),
                str(shard.waiting),
                str(shard.orders_done),
                f"v{shard.members_version}",
            )
        console.print(table)
    table = Table(
        title="Replicas" + (" (calls summed over the shards)" if len(shards) > 1 else ""), title_justify="left"
    )
    # "ms/order" is the replica's own time per order; "wait+call ms" what an order's attempt took as the
    # shard saw it (its wait for a batch included), which a backlog makes far longer than the stage.
    columns = (
        "replica",
        "node",
        "orders (waiting)",
        "calls",
        "errors",
        "ms/order",
        "mean batch",
        "wait+call ms",
        "ok",
        "declined",
        "replays",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("replica", "node") else "right")
    for stage, loads in merged_loads(shards).items():
        snapshots = {snap.replica: snap for snap in status.snapshots.get(stage, [])}
        for load in loads:
            snap = snapshots.get(load.replica)
            label = (
                f"{load.replica} (dead)"
                if not load.alive
                else f"{load.replica} (draining)"
                if load.draining
                else load.replica
            )
            table.add_row(
                label,
                (load.node_id or "-")[:12],
                f"{load.ongoing} ({load.queued})",
                str(load.calls),
                str(load.errors),
                f"{load.per_order_ms:.2f}" if load.per_order_ms is not None else "-",
                f"{load.mean_batch:.1f}" if load.mean_batch is not None else "-",
                f"{load.mean_latency_ms:.1f}",
                str(snap.ok if snap else "-"),
                str(snap.business_failures if snap else "-"),
                str(snap.replays if snap else "-"),
            )
    console.print(table)


def merged_loads(shards: list[DispatcherStats]) -> dict[StageName, list[ReplicaLoad]]:
    """Each replica's load over every shard: counts summed, latency weighted by calls, dead if any
    shard found it dead."""
    merged: dict[StageName, dict[str, ReplicaLoad]] = {}
    for shard in shards:
        for stage, loads in shard.stages.items():
            into = merged.setdefault(stage, {})
            for load in loads:
                have = into.get(load.replica)
                if have is None:
                    into[load.replica] = load
                    continue
                calls = have.calls + load.calls
                latency = (
                    (have.mean_latency_ms * have.calls + load.mean_latency_ms * load.calls) / calls if calls else 0.0
                )
                into[load.replica] = have.model_copy(
                    update={
                        "ongoing": have.ongoing + load.ongoing,
                        "calls": calls,
                        "errors": have.errors + load.errors,
                        "queued": have.queued + load.queued,
                        "calls_in_flight": have.calls_in_flight + load.calls_in_flight,
                        "mean_latency_ms": round(latency, 3),
                        "per_order_ms": _mean_of(have.per_order_ms, load.per_order_ms),
                        "batch_calls": have.batch_calls + load.batch_calls,
                        "orders_sent": have.orders_sent + load.orders_sent,
                        "alive": have.alive and load.alive,
                        "node_id": have.node_id or load.node_id,
                    }
                )
    return {stage: list(loads.values()) for stage, loads in merged.items()}


def _mean_of(*values: float | None) -> float | None:
    """The mean of the shards' estimates of one replica's time per order (each measured the same replica)."""
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 3) if known else None


LANE_WIDTH = 50


def render_runs(console: Console, runs: list[RunRecord]) -> None:
    if not runs:
        console.print("no runs recorded in this ledger")
        return
    table = Table(title="Runs", title_justify="left")
    for column in ("run", "namespace", "source", "started", "ended", "state", "admitted", "by status", "pending"):
        table.add_column(column, justify="right" if column in ("admitted", "pending") else "left")
    for run in runs:
        ended = f"{run.ended_at:%Y-%m-%d %H:%M:%S} ({run.ending})" if run.ended_at is not None else "—"
        state = {"going": "[green]going", "abandoned": "[red]abandoned"}.get(run.state.value, run.state.value)
        table.add_row(
            run.run_id,
            run.namespace,
            run.source,
            f"{run.started_at:%Y-%m-%d %H:%M:%S}",
            ended,
            state,
            str(run.admitted),
            ", ".join(f"{count} {status}" for status, count in run.by_status.items()) or "—",
            str(run.pending),
        )
    console.print(table)
    if any(run.state.value == "abandoned" for run in runs):
        console.print("abandoned: its driver stopped without ending it; the same command resumes its orders")


def render_trace(console: Console, trace: OrderTrace) -> None:
    """The six stages as lanes on one time axis, admission to conclusion, then the order's events."""
    t0, span_s = trace.admitted_at, max((trace.concluded_at - trace.admitted_at).total_seconds(), 1e-6)

    def at(moment: datetime) -> float:
        return (moment - t0).total_seconds() * 1000

    console.print(
        f"[bold]{trace.order_id}[/bold]: {trace.status}"
        + (f" ({trace.reason})" if trace.reason else "")
        + f", {trace.latency_ms:.1f} ms from admission to conclusion"
    )
    table = Table(title=f"stage calls on one time axis: 0 to {span_s * 1000:.1f} ms", title_justify="left")
    for column in ("stage", "replica", "node", "attempts", "start ms", "end ms"):
        table.add_column(
            column, justify="right" if column in ("attempts", "start ms", "end ms") else "left", no_wrap=True
        )
    table.add_column("lane", no_wrap=True, min_width=LANE_WIDTH)
    table.add_column("result")
    for call in trace.calls:
        first = int(LANE_WIDTH * at(call.started_at) / 1000 / span_s)
        last = max(first + 1, round(LANE_WIDTH * at(call.finished_at) / 1000 / span_s))
        lane = "·" * first + "█" * (last - first) + "·" * max(0, LANE_WIDTH - last)
        style = (
            "green"
            if call.status is StageStatus.OK
            else "yellow"
            if call.status is StageStatus.BUSINESS_FAILURE
            else "red"
        )
        result = (
            call.status.value + (f": {call.reason}" if call.reason else "") + (" (replayed)" if call.replayed else "")
        )
        table.add_row(
            call.stage.value,
            call.replica,
            call.node_id[:10],
            str(call.attempts),
            f"{at(call.started_at):.1f}",
            f"{at(call.finished_at):.1f}",
            f"[{style}]{lane[:LANE_WIDTH]}[/{style}]",
            result,
        )
    console.print(table)
    if trace.all_six_overlap_ms > 0:
        console.print(f"the six stages overlapped: all six were running at once for {trace.all_six_overlap_ms:.1f} ms")
    else:
        plural = "s were" if trace.peak_concurrent != 1 else " was"
        console.print(f"at most {trace.peak_concurrent} stage call{plural} running at once")
    for event in trace.events:
        console.print(f"  {at(event.at):>9.1f} ms  {event.what}")
