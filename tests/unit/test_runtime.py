"""The process-level allocator settings every actor applies in its constructor, and what a parked
actor's control calls do beside its event loop."""

import asyncio
import platform
import threading

import pytest

from actors.intake.breaker_watch import BreakerWatch
from actors.runtime import cancel_soon, construct_again, limit_malloc_arenas, trim_free_memory


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_the_arena_cap_is_accepted_by_glibc():
    assert limit_malloc_arenas(2) is True


def test_trimming_free_memory_is_safe_to_call_at_any_time():
    garbage = [bytearray(4096) for _ in range(1000)]
    del garbage
    trim_free_memory()  # must neither raise nor disturb the allocator
    assert len(bytearray(1 << 20)) == 1 << 20


def test_a_task_is_cancelled_from_another_thread_and_a_finished_one_is_left_alone():
    async def main() -> tuple[bool, bool]:
        forever = asyncio.get_running_loop().create_task(asyncio.sleep(3600))
        done = asyncio.get_running_loop().create_task(asyncio.sleep(0))
        await done
        control = threading.Thread(target=lambda: [cancel_soon(forever), cancel_soon(done)])
        control.start()
        control.join()
        with pytest.raises(asyncio.CancelledError):
            await forever
        return forever.cancelled(), done.cancelled()

    assert asyncio.run(main()) == (True, False)


def test_a_stopped_breaker_watch_asks_no_shard_again():
    class Shard:
        def __init__(self) -> None:
            self.asked = 0
            self.breakers = self

        def remote(self):
            self.asked += 1
            future = asyncio.get_running_loop().create_future()
            future.set_result([])
            return future

    async def main() -> int:
        shard = Shard()
        watch = BreakerWatch([shard], every_s=0.01)
        watch.start()
        await asyncio.sleep(0.05)
        watch.stop()
        await asyncio.sleep(0)
        asked = shard.asked
        await asyncio.sleep(0.05)
        assert asked > 0
        return shard.asked - asked

    assert asyncio.run(main()) == 0


def test_an_object_is_constructed_again_in_place_with_new_arguments():
    class Counter:
        def __init__(self, start: int) -> None:
            self.count = start

    counter = Counter(1)
    counter.count += 5
    construct_again(counter, 10)
    assert counter.count == 10
