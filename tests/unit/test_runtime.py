"""The process-level allocator settings every actor applies in its constructor."""

import platform

import pytest

from actors.runtime import limit_malloc_arenas, trim_free_memory


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_the_arena_cap_is_accepted_by_glibc():
    assert limit_malloc_arenas(2) is True


def test_trimming_free_memory_is_safe_to_call_at_any_time():
    garbage = [bytearray(4096) for _ in range(1000)]
    del garbage
    trim_free_memory()  # must neither raise nor disturb the allocator
    assert len(bytearray(1 << 20)) == 1 << 20
