"""The Producer's view of the stages' circuit breakers, merged over the Dispatcher shards.

The shards hold the breakers and hold their own admissions on them (`actors.dispatch.breaker_room`);
the Producer only needs to know which stage is open, to refuse new orders over HTTP at once (503,
naming the stage) rather than queue orders that would wait behind it. It asks every shard a few
times a second; a shard that does not answer (restarting) keeps its last word.
"""

from __future__ import annotations

import asyncio
from typing import Any

from loguru import logger

from actors.models.breakers import BreakerSnapshot, BreakerState
from actors.runtime import cancel_soon

LOOK_EVERY_S = 0.5


class BreakerWatch:
    def __init__(self, shards: list[Any], every_s: float = LOOK_EVERY_S) -> None:
        self._shards = shards
        self._every_s = every_s
        self._by_shard: dict[int, list[BreakerSnapshot]] = {}
        self._task: asyncio.Task[None] | None = None
        self.log = logger.bind(stage="producer")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    def open_stages(self) -> list[BreakerSnapshot]:
        """The stages whose breaker is open in some shard (the one with the longest wait left, each)."""
        worst: dict[str, BreakerSnapshot] = {}
        for snapshots in self._by_shard.values():
            for snap in snapshots:
                if snap.state is BreakerState.OPEN and snap.retry_after_s >= worst.get(snap.stage, snap).retry_after_s:
                    worst[snap.stage] = snap
        return list(worst.values())

    def take(self, shard: int, snapshots: list[BreakerSnapshot]) -> None:
        self._by_shard[shard] = snapshots

    def stop(self) -> None:
        """Stop watching; callable from any thread (the loop's, or a control call's)."""
        if self._task is not None:
            cancel_soon(self._task)
            self._task = None

    async def look(self) -> None:
        """Ask every shard once."""
        answers = await asyncio.gather(*(shard.breakers.remote() for shard in self._shards), return_exceptions=True)
        for shard, answer in enumerate(answers):
            if isinstance(answer, list):
                self.take(shard, answer)

    async def _watch(self) -> None:
        while True:
            try:
                await self.look()
            except Exception as error:  # noqa: BLE001 - the view goes stale, the Producer goes on
                self.log.debug("breakers not read: {}", error)
            await asyncio.sleep(self._every_s)
