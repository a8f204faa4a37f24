"""How our models cross between actors: as their own JSON, not as cloudpickled objects.

Ray pickles arguments and results with cloudpickle, which asks for every nested object (each
datetime, enum, nested model and the class of each) whether it needs pickling by value; for an
`OrderOutcome` with six stage results that took 176 µs, paid by the Dispatcher for every order and
again by the Producer. Pickled as its JSON it takes 35-50 µs, and loading it back, validated, costs
about what unpickling did. The JSON is the same that the ledger and the outcome files hold, so what
crosses the wire round-trips exactly by construction.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel


class JsonPickled(BaseModel):
    """A model that pickles (for Ray, for `pickle`) as its JSON and is validated again on load."""

    def __reduce__(self) -> tuple[Any, tuple[type[Self], str]]:
        return _from_json, (type(self), self.model_dump_json())


def _from_json(model: type[JsonPickled], data: str) -> JsonPickled:
    return model.model_validate_json(data)


class Prepickled:
    """A model dumped once and sent many times, unpickling as the model itself.

    The Dispatcher sends each order to six stages: pickled as itself it would be dumped to JSON
    six times, about 6% of its event loop's time at zero wait (py-spy).
    """

    __slots__ = ("_reduced",)

    def __init__(self, model: JsonPickled) -> None:
        self._reduced = model.__reduce__()

    def __reduce__(self) -> tuple[Any, tuple[type[JsonPickled], str]]:
        return self._reduced
