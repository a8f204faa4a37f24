"""In-process stand-ins that unit tests use instead of Ray and of the wall clock.

Each looks like the thing it replaces from the caller's side: `LocalHandle` like a stage actor's
handle, `DispatcherHandle` like the Dispatcher's, `FakeReplica` like the send function a batcher is
given, `FakeClock` like the clock a stage paces itself by, `ManualClock` like the `time.time` or
`time.monotonic` a breaker, a rate limiter or a schedule is given, `FakeTimers` like the event loop's
`call_later` that a batcher's timeouts use, `DeadHandle` like the handle of an actor gone for good.
Time moves only when a test says so.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import pickle
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any


class LocalHandle:
    """Looks like a stage replica's handle: `handle.process_encoded.remote(orders)` returns an
    awaitable, and the orders and the answer cross by value, pickled as Ray pickles them. `calls`
    counts orders sent, `batches` the calls that carried them; a `gate` (an `asyncio.Event`) holds
    every answer until it is set."""

    def __init__(self, stage: Any, gate: asyncio.Event | None = None) -> None:
        self.stage, self.gate, self.calls, self.batches = stage, gate, 0, []
        self.process_encoded = self
        self.compensate = LocalMethod(stage.compensate)

    def options(self, **_: Any) -> LocalHandle:
        return self

    def remote(self, orders: list[Any]) -> Any:
        orders = pickle.loads(pickle.dumps(orders))
        self.calls += len(orders)
        self.batches.append([order.order_id for order in orders])

        async def call() -> Any:
            if self.gate is not None:
                await self.gate.wait()
            return pickle.loads(pickle.dumps(self.stage.process_encoded(orders)))

        return call()


class LocalMethod:
    """`handle.method.options(...).remote(*args)` for a plain bound method."""

    def __init__(self, method: Callable[..., Any]) -> None:
        self.method = method

    def options(self, **_: Any) -> LocalMethod:
        return self

    def remote(self, *args: Any) -> Any:
        async def call() -> Any:
            return self.method(*args)

        return call()


class DispatcherHandle:
    """`handle.process_encoded.remote(orders)` on a plain Dispatcher, as the Producer calls it; each
    call waits for `open` and is recorded, and the first `failing` calls raise as a dead actor would."""

    def __init__(self, dispatcher: Any, failing: int = 0) -> None:
        self.dispatcher, self.failing = dispatcher, failing
        self.process_encoded = self
        self.open = asyncio.Event()
        self.batches: list[list[Any]] = []
        self.outstanding = self.most_outstanding = 0

    def remote(self, orders: Any) -> Any:
        orders = pickle.loads(pickle.dumps(orders))  # as Ray would carry them
        self.batches.append(list(orders))
        fail = len(self.batches) <= self.failing

        async def call() -> Any:
            self.outstanding += 1
            self.most_outstanding = max(self.most_outstanding, self.outstanding)
            try:
                await self.open.wait()
                if fail:
                    raise RuntimeError("The actor died unexpectedly before finishing this task.")
                return pickle.loads(pickle.dumps(await self.dispatcher.process_encoded(orders)))
            finally:
                self.outstanding -= 1

        return call()


class FakeReplica:
    """A batcher's `send`: answers batches only when told to, and remembers what it was sent."""

    def __init__(self) -> None:
        self.sent: list[list[str]] = []
        self.running: list[int] = []  # per call: how many calls were still unanswered when it was sent
        self.gates: list[asyncio.Future[Any]] = []

    def send(self, orders: list[Any]) -> Any:
        self.sent.append([o.order_id for o in orders])
        self.running.append(sum(1 for gate in self.gates if not gate.done()))
        gate = asyncio.get_running_loop().create_future()
        self.gates.append(gate)

        async def answer() -> list[str]:
            outcome = await gate
            if isinstance(outcome, Exception):
                raise outcome
            return [f"done {o.order_id}" for o in orders]

        return answer()

    def release(self, index: int, outcome: Any = None) -> None:
        self.gates[index].set_result(outcome)


class FakeClock:
    """A stage's clock (`actors.clock.Clock`) that moves only by `sleep` and `advance`."""

    EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __init__(self) -> None:
        self.now_s = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now_s += seconds

    def utcnow(self) -> datetime:
        return self.EPOCH + timedelta(seconds=self.now_s)


class ManualClock:
    """A clock function (`clock()` → seconds) that reads `now`, which the test sets or advances."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeTimers:
    """A batcher's timer source (`call_later(delay, callback)`) whose timers fire on `advance`."""

    def __init__(self) -> None:
        self.now_s = 0.0
        self._due: list[tuple[float, int, _Timer]] = []
        self._sequence = itertools.count()

    def call_later(self, delay_s: float, callback: Callable[..., Any], *args: Any) -> _Timer:
        timer = _Timer(callback, args)
        heapq.heappush(self._due, (self.now_s + delay_s, next(self._sequence), timer))
        return timer

    def advance(self, seconds: float) -> None:
        self.now_s += seconds
        while self._due and self._due[0][0] <= self.now_s:
            _, _, timer = heapq.heappop(self._due)
            timer.fire()


class _Timer:
    def __init__(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._callback, self._args, self.cancelled = callback, args, False

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        if not self.cancelled:
            self._callback(*self._args)


class DeadHandle:
    """Looks like the handle of an actor that died for good: every call fails with Ray's own
    `ActorDiedError`, as a call to it would."""

    def __init__(self) -> None:
        self.process_encoded = self
        self.calls = 0

    def options(self, **_: Any) -> DeadHandle:
        return self

    def remote(self, orders: list[Any]) -> Any:
        from ray.exceptions import ActorDiedError

        self.calls += len(pickle.loads(pickle.dumps(orders)))

        async def call() -> Any:
            raise ActorDiedError()

        return call()


def local_stage_handles(
    ledger: Any = None, gates: dict[str, asyncio.Event] | None = None, closing: Callable[[Any], Any] = lambda x: x
) -> dict[Any, dict[str, Any]]:
    """One real replica of every stage (time scale 0, on `ledger` if given) behind a `LocalHandle`:
    the pools a plain Dispatcher is given in unit tests. Each replica is handed to `closing` (the
    test's fixture, which closes its store connection at the end)."""
    from actors.models import STAGES
    from actors.stages import STAGE_CLASSES, STAGE_CONFIGS, ReplicaContext

    gates = gates or {}
    return {
        stage: {
            f"{stage}-0": LocalHandle(
                closing(
                    STAGE_CLASSES[stage](
                        STAGE_CONFIGS[stage](), ReplicaContext(f"{stage}-0", time_scale=0, ledger=ledger)
                    )
                ),
                gates.get(stage),
            )
        }
        for stage in STAGES
    }
