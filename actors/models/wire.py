"""How our models cross between actors: as JSON, not as cloudpickled objects, and by the batch.

Ray pickles arguments and results with cloudpickle, which asks for every nested object (each
datetime, enum, nested model and the class of each) whether it needs pickling by value. A model
pickles as its JSON instead (`JsonPickled`), the same JSON the ledger and the outcome files hold,
so what crosses round-trips exactly by construction. What a stage call carries, orders one way and
results the other, crosses as one JSON array (`ModelArray`), so the per-item work runs inside
pydantic-core rather than once per record in Python (`python -m benchmarks.wire` measures each).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any, Self, TypeVar

from pydantic import BaseModel, TypeAdapter

M = TypeVar("M", bound=BaseModel)


class JsonPickled(BaseModel):
    """A model that pickles (for Ray, for `pickle`) as its JSON and is validated again on load."""

    def __reduce__(self) -> tuple[Any, tuple[type[Self], str]]:
        return _from_json, (type(self), self.model_dump_json())


def _from_json(model: type[JsonPickled], data: str) -> JsonPickled:
    return model.model_validate_json(data)


class ModelArray:
    """A batch of models of one type as it crosses between actors: one JSON array, loaded on the
    other side as a plain list of the models, validated by pydantic-core in one call.

    Pickled one by one, each model costs a Python-level dump, a reduce tuple and a validation call of
    its own at each end; as one array the loop runs inside pydantic-core. A batch of orders is joined
    from each order's JSON made once (`dumped`): the Dispatcher sends every order to six stages.
    """

    __slots__ = ("_json", "_model")

    def __init__(self, model: type[BaseModel], json: bytes) -> None:
        self._model = model
        self._json = json

    @classmethod
    def of(cls, model: type[M], items: Sequence[M]) -> ModelArray:
        return cls(model, _adapter(model).dump_json(list(items)))

    @classmethod
    def joined(cls, model: type[BaseModel], dumped: Iterable[bytes]) -> ModelArray:
        return cls(model, b"[" + b",".join(dumped) + b"]")

    def __reduce__(self) -> tuple[Any, tuple[type[BaseModel], bytes]]:
        return load_array, (self._model, self._json)


def dumped(model: BaseModel) -> bytes:
    """The model's JSON, as `ModelArray.joined` takes it."""
    return model.__pydantic_serializer__.to_json(model)


def load_array(model: type[M], data: bytes) -> list[M]:
    return _adapter(model).validate_json(data)


@functools.cache
def _adapter(model: type[M]) -> TypeAdapter[list[M]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]  # a list of whichever model is given
