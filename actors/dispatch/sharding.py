"""Which Dispatcher shard an order goes to: a stable hash of its id.

Stable across processes and restarts (Python's `hash` of a str is salted per process), so a
restarted Producer, a resumed run and `replay` all pick the shard the order went to before; and
even, so that N shards share the load N ways. No state is kept per order: every shard answers any
order from the ledger, so the choice matters for load, never for correctness.
"""

from __future__ import annotations

import zlib


def shard_of(order_id: str, shards: int) -> int:
    return zlib.crc32(order_id.encode()) % shards if shards > 1 else 0
