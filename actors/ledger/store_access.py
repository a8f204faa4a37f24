"""What a mixin of `SqlLedger` needs of the store it is mixed into: its namespace, a transaction
(`_write`, which a store may run more than once) and a read. `RequestLedger` and `ScheduleLedger`
are written against this alone."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class StoreAccess(ABC):
    namespace: str

    @abstractmethod
    def _write(self, body: Callable[[Any], T]) -> T: ...

    @abstractmethod
    def _read(self, sql: str, params: Any = ()) -> list[Any]: ...
