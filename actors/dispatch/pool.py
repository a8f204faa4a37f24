"""A stage's replicas as one Dispatcher shard sees them: pick the least loaded, count what each does.

Ray's `ActorPool` allows one call per actor and blocks on results, which would serialise a
stage; here any number of calls can be outstanding on a replica and the next call goes to the
replica with the fewest outstanding (ties to the one that has done the least), so a slow replica
stops receiving work instead of collecting a queue.

Who the members are is not decided here: the supervisor owns membership and pushes versioned
lists (`apply`). The pool only stops routing to a replica it found dead (`mark_dead`) until a list
names a new actor for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actors.errors import MembershipError
from actors.models import StageName
from actors.models.messages import PoolMember, PoolMembers, ReplicaLoad


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
    epoch: int = 0  # the supervisor's replacements in the slot (`PoolMember.epoch`)


class ReplicaPool:
    def __init__(self, stage: StageName, replicas: Mapping[str, Any]) -> None:
        self.stage = stage
        self.version = 0
        self._replicas = [Replica(name, handle, _index(name, i)) for i, (name, handle) in enumerate(replicas.items())]

    def __len__(self) -> int:
        return len(self._replicas)

    @property
    def ongoing(self) -> int:
        return sum(r.ongoing for r in self._replicas)

    @property
    def alive(self) -> int:
        return sum(r.alive for r in self._replicas)

    def apply(self, members: PoolMembers) -> bool:
        """Take the supervisor's member list if it is newer than the last one; True if it was.

        A member the pool knows keeps its counters; one under a new actor (a replacement) takes calls
        again; one no longer listed leaves (the supervisor lists a replica as draining, and drops it
        only once every shard has drained it)."""
        if members.version <= self.version:
            return False
        known = {r.name: r for r in self._replicas}
        self._replicas = [self._member(known.get(member.name), member) for member in members.members]
        self.version = members.version
        return True

    @staticmethod
    def _member(replica: Replica | None, member: PoolMember) -> Replica:
        if replica is None:
            return Replica(member.name, member.handle, member.index, draining=member.draining, epoch=member.epoch)
        if not same_actor(replica.handle, member.handle) or replica.epoch != member.epoch:
            replica.handle, replica.alive, replica.node_id = member.handle, True, None
        replica.draining, replica.epoch = member.draining, member.epoch
        return replica

    def mark_dead(self, replica: Replica) -> None:
        """A replica that died for good gets no more calls (ActorPool keeps routing to it, #50313)."""
        replica.alive = False

    def named(self, name: str) -> Replica | None:
        return next((r for r in self._replicas if r.name == name), None)

    def acquire(self, avoid: Replica | None = None) -> Replica:
        """The least-loaded live replica (other than `avoid`), counted against it until `release`."""
        replica = self.pick(avoid)
        self.hold(replica, 1)
        return replica

    def pick(self, avoid: Replica | None = None) -> Replica:
        """The least-loaded live replica (other than `avoid`), not counted yet. With no live replica
        left it still returns one, whose call fails fast as an error result."""
        routable = self._routable()
        return min([r for r in routable if r is not avoid] or routable, key=_load)

    def spread(self, orders: int) -> list[tuple[Replica, int]]:
        """How many of `orders` each replica takes, counted against them until `release`: each order
        goes to the replica least loaded at that moment, so a batch splits evenly over idle replicas
        and a replica with a backlog takes less (or nothing)."""
        routable = self._routable()
        taken = dict.fromkeys(range(len(routable)), 0)
        for _ in range(orders):
            chosen = min(taken, key=lambda i: (routable[i].ongoing + taken[i], routable[i].calls + taken[i], i))
            taken[chosen] += 1
        shares = [(routable[i], count) for i, count in taken.items() if count]
        for replica, count in shares:
            self.hold(replica, count)
        return shares

    def hold(self, replica: Replica, orders: int) -> None:
        replica.ongoing += orders
        replica.calls += orders

    def release(
        self,
        replica: Replica,
        latency_s: float,
        *,
        orders: int = 1,
        errors: int = 0,
        node_id: str | None = None,
    ) -> None:
        """`orders` answered by the replica, `latency_s` in all, `errors` of them errors."""
        replica.ongoing -= orders
        replica.latency_s += latency_s
        replica.errors += errors
        if node_id:
            replica.node_id = node_id

    def _routable(self) -> list[Replica]:
        if not self._replicas:
            raise MembershipError(f"{self.stage} has no replicas yet: the supervisor has not pushed its members")
        return (
            [r for r in self._replicas if r.alive and not r.draining]
            or [r for r in self._replicas if r.alive]
            or self._replicas
        )

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


def _load(replica: Replica) -> tuple[int, int, int]:
    return replica.ongoing, replica.calls, replica.index


def same_actor(old: Any, new: Any) -> bool:
    """Whether two handles reach the same actor (a handle pushed again is a new object)."""
    old_id, new_id = getattr(old, "_actor_id", None), getattr(new, "_actor_id", None)
    return old is new if old_id is None or new_id is None else old_id == new_id


def _index(name: str, default: int) -> int:
    """A replica's slot, from its name (`production-2`): ties go to the lowest, as created."""
    _, _, tail = name.rpartition("-")
    return int(tail) if tail.isdigit() else default
