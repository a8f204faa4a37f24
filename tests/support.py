"""Helpers every tier shares: waiting for a condition instead of sleeping, and a free port."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout_s: float, interval_s: float = 0.25, what: str = "the condition"
) -> T:
    """Poll `predicate` until it returns something truthy, and return that; fail the test with the
    last value seen once `timeout_s` has passed. The one way tests here wait for real processes."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not hold within {timeout_s:g} s (last: {value!r})")
        time.sleep(interval_s)


@dataclass(frozen=True)
class Pending:
    """A predicate's answer for "not yet", saying what is still missing: false, and shown by
    `wait_until` when it gives up."""

    missing: str

    def __bool__(self) -> bool:
        return False


# Ports this test process has handed out: a port is free again the moment its probe socket closes,
# and the kernel gave the same one to two calls in a row (CI: `ray start` refused a node whose
# dashboard agent's HTTP and gRPC ports were both 58583).
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nobody listens on right now, and never one this process handed out before."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
