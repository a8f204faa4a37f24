"""Application metrics, exported by Ray's metrics agent to Prometheus as `ray_jewelry_*`.

Defined once here so that the Dispatcher, the Producer, the Grafana dashboard and the tests
agree on names and tags. Outside Ray (unit tests) `ray.util.metrics` records nothing, so the
actors use these unconditionally. Tags are bounded: stage, replica, status, field, shard.
"""

from __future__ import annotations

from collections import Counter as Counts

from ray.util.metrics import Counter, Gauge, Histogram

PREFIX = "jewelry_"
LATENCY_BUCKETS_MS: list[float] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000]

ORDERS = PREFIX + "orders_total"
ORDERS_IN_FLIGHT = PREFIX + "orders_in_flight"
ORDER_LATENCY = PREFIX + "order_latency_ms"
STAGE_LATENCY = PREFIX + "stage_call_latency_ms"
STAGE_RESULTS = PREFIX + "stage_results_total"
STAGE_ONGOING = PREFIX + "stage_ongoing_calls"
STAGE_RETRIES = PREFIX + "stage_retries_total"
COMPENSATIONS = PREFIX + "compensations_total"
REJECTED_RECORDS = PREFIX + "rejected_records_total"
HTTP_ANSWERS = PREFIX + "http_answers_total"
HTTP_QUEUED = PREFIX + "http_queued_orders"
BREAKER_STATE = PREFIX + "breaker_state"
BREAKER_TRANSITIONS = PREFIX + "breaker_transitions_total"
SCHEDULED = PREFIX + "scheduled_orders"

ALL_METRICS = (
    ORDERS,
    ORDERS_IN_FLIGHT,
    ORDER_LATENCY,
    STAGE_LATENCY,
    STAGE_RESULTS,
    STAGE_ONGOING,
    STAGE_RETRIES,
    COMPENSATIONS,
    REJECTED_RECORDS,
    HTTP_ANSWERS,
    HTTP_QUEUED,
    BREAKER_STATE,
    BREAKER_TRANSITIONS,
    SCHEDULED,
)


class Tally:
    """Counts kept in memory and added to a Ray `Counter` at `flush`: the Dispatcher counts seven
    events per order, and a Ray metric call per event is a visible share of its CPU at zero wait."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._counts: Counts[tuple[tuple[str, str], ...]] = Counts()

    def inc(self, count: int = 1, **tags: str) -> None:
        self._counts[tuple(tags.items())] += count

    def flush(self) -> None:
        for tags, count in self._counts.items():
            self._counter.inc(count, tags=dict(tags))
        self._counts.clear()


class DispatchMetrics:
    """What the Dispatcher sees: orders, their latency, and every stage call it makes."""

    def __init__(self) -> None:
        self.orders = Tally(Counter(ORDERS, description="Orders by terminal status", tag_keys=("status", "shard")))
        self.in_flight = Gauge(
            ORDERS_IN_FLIGHT,
            description="Orders admitted and not yet finished, by Dispatcher shard",
            tag_keys=("shard",),
        )
        self.order_latency = Histogram(
            ORDER_LATENCY, description="End-to-end order latency at the dispatcher (ms)", boundaries=LATENCY_BUCKETS_MS
        )
        self.stage_latency = Histogram(
            STAGE_LATENCY,
            description="Latency of one call to a stage replica (a batch of orders), send to answer (ms)",
            boundaries=LATENCY_BUCKETS_MS,
            tag_keys=("stage", "replica"),
        )
        self.stage_results = Tally(
            Counter(STAGE_RESULTS, description="Stage call results by status", tag_keys=("stage", "status"))
        )
        self.stage_ongoing = Gauge(
            STAGE_ONGOING,
            description="Calls outstanding on a stage's replicas (queue depth)",
            tag_keys=("stage", "replica"),
        )
        self.retries = Counter(STAGE_RETRIES, description="Stage calls retried after an error", tag_keys=("stage",))
        self.compensations = Counter(
            COMPENSATIONS, description="Stage work undone for failed orders", tag_keys=("stage",)
        )
        self.breaker_state = Gauge(
            BREAKER_STATE,
            description="A stage's circuit breaker, by shard: 0 closed, 1 half-open, 2 open",
            tag_keys=("stage", "shard"),
        )
        self.breaker_transitions = Counter(
            BREAKER_TRANSITIONS,
            description="Circuit breaker transitions, by the state entered",
            tag_keys=("stage", "state"),
        )

    def flush(self) -> None:
        """Hand the tallied counts to Ray: once a second, and whenever the Dispatcher falls idle."""
        self.orders.flush()
        self.stage_results.flush()


class SourceMetrics:
    """What the Producer sees: records that never became orders, and its answers to orders sent over
    HTTP (busy ones are its backpressure), with how many accepted orders wait for admission."""

    def __init__(self) -> None:
        self.rejects = Counter(
            REJECTED_RECORDS, description="Input records rejected, by first bad field", tag_keys=("field",)
        )
        self.http_answers = Counter(
            HTTP_ANSWERS, description="Orders sent over HTTP, by the Producer's answer", tag_keys=("verdict",)
        )
        self.http_queued = Gauge(HTTP_QUEUED, description="Orders accepted over HTTP waiting for admission")
        self.scheduled = Gauge(SCHEDULED, description="Scheduled orders waiting for their time (not_before)")
