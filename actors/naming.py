"""Actors passed to other actors by name rather than by handle.

A handle given as a constructor argument lives in Ray's object store, and an actor that restarts
needs its arguments again: Ray warns that such a restart can fail (ray-project/ray#53727). A name
is a plain string, and resolving it on every start also finds the replacement of a replica that
died for good, not the dead one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ray


@dataclass(frozen=True)
class NamedActor:
    name: str
    namespace: str

    def resolve(self) -> Any:
        return ray.get_actor(self.name, namespace=self.namespace)


def resolve(actor: Any) -> Any:
    """A handle for a `NamedActor`; anything else (a handle, a test double) as it is."""
    return actor.resolve() if isinstance(actor, NamedActor) else actor


def resolve_present(actors: Mapping[str, Any], log: Any) -> dict[str, Any]:
    """Handles for the actors that exist now, by name. A restarted Dispatcher is given the names it
    was first created with; one scaled away since is skipped (the supervisor pushes the current
    members to a shard that is behind), rather than failing the restart."""
    present = {}
    for name, actor in actors.items():
        try:
            present[name] = resolve(actor)
        except ValueError:
            log.warning("{} is gone; waiting for the supervisor's member list", name)
    return present
