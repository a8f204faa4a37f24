"""Where this code runs, asked of Ray only when it is running under Ray."""

from __future__ import annotations

import os

import ray


def current_node_id() -> str:
    """The Ray node id of this process, or `local-<pid>` in a plain process (unit tests)."""
    if ray.is_initialized():
        return ray.get_runtime_context().get_node_id()
    return f"local-{os.getpid()}"
