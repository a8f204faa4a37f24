"""Actors passed to other actors by name rather than by handle.

A handle given as a constructor argument lives in Ray's object store, and an actor that restarts
needs its arguments again: Ray warns that such a restart can fail (ray-project/ray#53727). A name
is a plain string, and resolving it on every start also finds the replacement of a replica that
died for good, not the dead one.
"""

from __future__ import annotations

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
