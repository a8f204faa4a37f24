"""The front door's backend finds the Producer again after the actor behind its handle died for good
and a new one took the name (a system restarted while Serve stayed up, as with `serve deploy`)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import ray

from actors.ledger import LedgerSpec
from orchestration.http.api import Unavailable
from orchestration.http.backend import FrontDoorConfig, RayBackend


@ray.remote(num_cpus=0)
class StandInProducer:
    """Answers as the Producer does, with which incarnation it is."""

    def __init__(self, incarnation: int) -> None:
        self.incarnation = incarnation

    async def accept_orders(self, submissions: list) -> list:
        return [self.incarnation]


def test_a_producer_that_died_for_good_is_looked_up_again(ray_session, tmp_path):
    namespace = f"backend-{uuid.uuid4().hex[:8]}"
    config = FrontDoorConfig(namespace=namespace, ledger=LedgerSpec(path=tmp_path / "ledger.sqlite3"), dispatchers=1)
    backend = RayBackend(config)
    first = StandInProducer.options(name="producer", namespace=namespace).remote(1)

    async def scenario() -> list:
        answers = [await backend.accept([])]
        ray.kill(first, no_restart=True)
        with pytest.raises(Unavailable):  # the old handle: said once, as 503 and Retry-After
            while True:
                await backend.accept([])
        second = StandInProducer.options(name="producer", namespace=namespace).remote(2)
        answers.append(await backend.accept([]))
        ray.kill(second)
        return answers

    assert asyncio.run(scenario()) == [[1], [2]]
