"""The process this code runs in: which node it is on (asked of Ray only under Ray), and its allocator."""

from __future__ import annotations

import asyncio
import ctypes
import os
from typing import Any

import ray

from actors.logs import configure_logging


def current_node_id() -> str:
    """The Ray node id of this process, or `local-<pid>` in a plain process (unit tests)."""
    if ray.is_initialized():
        return ray.get_runtime_context().get_node_id()
    return f"local-{os.getpid()}"


def prepare_process(log_level: str | None) -> None:
    """What every actor's constructor does first, in its own worker process: cap malloc's arenas
    (see `limit_malloc_arenas`) and route loguru to stderr at the run's level."""
    limit_malloc_arenas()
    if log_level:
        configure_logging(log_level)


def construct_again(instance: Any, *args: Any) -> None:
    """Run an actor's constructor again, in its own process, with new arguments: how a parked system
    is renewed without starting a process (`FanoutSystem.renewed`; sent through `__ray_call__`)."""
    type(instance).__init__(instance, *args)


def close_actor(instance: Any) -> None:
    """Release an actor's store connections, leaving its process up (`FanoutSystem.park`)."""
    instance.close()


def cancel_soon(task: asyncio.Task[Any]) -> None:
    """Cancel a task from any thread: an async actor's control calls (`__ray_call__`, a sync
    method) run beside its event loop, not on it. A task whose loop is gone is left alone."""
    loop = task.get_loop()
    if not task.done() and not loop.is_closed():
        loop.call_soon_threadsafe(task.cancel)


# glibc's mallopt parameter number for the arena cap (malloc.h: M_ARENA_MAX).
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas in this process; True if the cap was set.

    glibc gives each thread that allocates its own arena, up to 8 per core. In an actor's many
    core-worker threads, freed memory stays spread over them, and a long-lived actor's RSS creeps up
    with no Python object behind it. Set in the constructor, the cap binds only arenas made after
    it, so `trim_free_memory` runs every few seconds as well (the memory benchmark holds both to
    account). Not `MALLOC_ARENA_MAX` in a runtime_env, which binds from process start: an actor
    with its own runtime_env cannot use Ray's prestarted workers, so every restart would wait for a
    fresh process.
    """
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(_M_ARENA_MAX, arenas))


def trim_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc `malloc_trim`, all arenas); a no-op elsewhere."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    """This process's C library if it is glibc (it has `mallopt` and `malloc_trim`), else None
    (macOS, musl): there is then nothing to tune."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
