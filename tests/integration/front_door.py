"""What the HTTP test modules share: a started system serving behind its real Ray Serve front door
on loopback (one per module: a Serve start is a controller, a proxy and replicas), and orders under
ids no other test of the session uses."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from actors.intake.samples import generate_orders
from orchestration.http.ingress import start_front_door, stop_front_door
from orchestration.settings import FanoutSettings, load_settings
from orchestration.system import FanoutSystem, RunResult
from tests.integration.chaos import STOCK
from tests.support import wait_until


class ServingDoor:
    """A serving run (in a thread) of `system`, and its front door at `url`; clients send `key`
    unless told another."""

    def __init__(self, system: FanoutSystem, url: str, out: Path, key: str) -> None:
        self.system, self.url, self.out, self.key = system, url, out, key
        self.result: RunResult | None = None
        self.thread = threading.Thread()

    def serve(self) -> None:
        """Start a serving run; `system.drain()` and joining `thread` end it, and `result` is its result."""

        def serving() -> None:
            self.result = self.system.run(out_dir=self.out, serve=True)

        self.thread = threading.Thread(target=serving, daemon=True)
        self.thread.start()

    def client(self, key: str | None = None, **headers: str) -> httpx.Client:
        auth = {"Authorization": f"Bearer {key or self.key}"}
        return httpx.Client(base_url=self.url, headers={**auth, **headers}, timeout=30)


def door_settings(name: str, out: Path, **overrides: Any) -> FanoutSettings:
    """A door module's system: its own namespace, zero wait, stock raised, 20 orders in flight, no
    orders of its own (it serves); each module adds its `http` block and whatever else it tests."""
    return load_settings(
        {
            "namespace": f"{name}-{uuid.uuid4().hex[:8]}",
            "time_scale": 0.0,
            "orders": 0,
            "out_dir": str(out),
            "log_level": "WARNING",
            "max_in_flight": 20,
            "material": STOCK,
            **overrides,
        }
    )


@contextmanager
def serving_door(settings: FanoutSettings, out: Path, key: str) -> Iterator[ServingDoor]:
    """The system started, its front door up and ready, a serving run going; all stopped after."""
    system = FanoutSystem.start(settings)
    door = ServingDoor(system, start_front_door(settings), out, key)
    door.serve()
    try:
        wait_until(lambda: httpx.get(f"{door.url}/readyz").status_code == 200, timeout_s=60, what="the door ready")
        yield door
    finally:
        system.drain()
        door.thread.join(timeout=120)
        stop_front_door()
        system.shutdown()


def fresh_orders(count: int, seed: int) -> list[dict[str, Any]]:
    """Generated orders under ids no other test of the session uses (the ledger holds every id once)."""
    prefix = uuid.uuid4().int % 10**5
    return [
        {**order.model_dump(mode="json"), "order_id": f"J{prefix:05d}{i:05d}"}
        for i, order in enumerate(generate_orders(count + 3, seed=seed))
        if i >= 3  # the original three orders carry their own certificates, the same in every batch
    ]
