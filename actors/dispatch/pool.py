"""A stage's replicas as the Dispatcher sees them: pick the least loaded, count what each does.

Ray's `ActorPool` allows one call per actor and blocks on results, which would serialise a
stage; here any number of calls can be outstanding on a replica and the next call goes to the
replica with the fewest outstanding (ties to the one that has done the least), so a slow replica
stops receiving work instead of collecting a queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actors.errors import MembershipError
from actors.models import StageName
from actors.models.messages import ReplicaLoad


@dataclass
class Replica:
    name: str
    handle: Any
    index: int
    node_id: str | None = None
    ongoing: int = 0
    calls: int = 0
    errors: int = 0
    latency_s: float = 0.0
    alive: bool = True
    draining: bool = False


class ReplicaPool:
    def __init__(self, stage: StageName, replicas: dict[str, Any]) -> None:
        if not replicas:
            raise ValueError(f"stage {stage} needs at least one replica")
        self.stage = stage
        self._replicas = [Replica(name, handle, _index(name, i)) for i, (name, handle) in enumerate(replicas.items())]

    def __len__(self) -> int:
        return len(self._replicas)

    @property
    def ongoing(self) -> int:
        return sum(r.ongoing for r in self._replicas)

    @property
    def alive(self) -> int:
        return sum(r.alive for r in self._replicas)

    def mark_dead(self, replica: Replica) -> None:
        """A replica that died for good gets no more calls (ActorPool keeps routing to it, #50313)."""
        replica.alive = False

    def replace(self, name: str, handle: Any) -> None:
        """A new actor under a dead replica's name: it takes calls again (its state is the ledger's)."""
        replica = self.named(name)
        if replica is None:
            raise MembershipError(f"{self.stage} has no replica named {name!r}")
        replica.handle, replica.alive, replica.node_id = handle, True, None

    def add(self, name: str, handle: Any) -> None:
        """A replica the pool scaled up to; a name it already has takes calls again under `handle`."""
        replica = self.named(name)
        if replica is None:
            self._replicas.append(Replica(name, handle, _index(name, len(self._replicas))))
        else:
            replica.draining = False
            self.replace(name, handle)

    def drain(self, name: str) -> Replica:
        """Stop giving the replica new orders; `remove` it once its `ongoing` is back to zero."""
        replica = self.named(name)
        if replica is None:
            raise MembershipError(f"{self.stage} has no replica named {name!r}")
        if sum(1 for r in self._replicas if r.alive and not r.draining and r is not replica) == 0:
            raise MembershipError(f"{name} is the last live {self.stage} replica: a pool keeps at least one")
        replica.draining = True
        return replica

    def remove(self, name: str) -> None:
        self._replicas = [r for r in self._replicas if r.name != name]

    def named(self, name: str) -> Replica | None:
        return next((r for r in self._replicas if r.name == name), None)

    def acquire(self, avoid: Replica | None = None) -> Replica:
        """The least-loaded live replica (other than `avoid`), counted against it until `release`.
        With no live replica left it still returns one, whose call fails fast as an error result."""
        live = ([r for r in self._replicas if r.alive and not r.draining]
                or [r for r in self._replicas if r.alive] or self._replicas)
        candidates = [r for r in live if r is not avoid] or live
        replica = min(candidates, key=lambda r: (r.ongoing, r.calls, r.index))
        replica.ongoing += 1
        replica.calls += 1
        return replica

    def release(self, replica: Replica, latency_s: float, *, error: bool, node_id: str | None = None) -> None:
        replica.ongoing -= 1
        replica.latency_s += latency_s
        replica.errors += int(error)
        if node_id:
            replica.node_id = node_id

    def loads(self) -> list[ReplicaLoad]:
        return [
            ReplicaLoad(
                replica=r.name,
                index=r.index,
                node_id=r.node_id,
                ongoing=r.ongoing,
                calls=r.calls,
                errors=r.errors,
                mean_latency_ms=round(1000 * r.latency_s / r.calls, 3) if r.calls else 0.0,
                alive=r.alive,
                draining=r.draining,
            )
            for r in self._replicas
        ]


def _index(name: str, default: int) -> int:
    """A replica's slot, from its name (`production-2`): ties go to the lowest, as created."""
    _, _, tail = name.rpartition("-")
    return int(tail) if tail.isdigit() else default
