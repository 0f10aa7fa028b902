"""The allocator and BLAS settings that keep repeated model calls fast (``benchmarks/perf.md``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

# Allocates and frees BLOCKS arrays of 1 MB (like a forward pass's activations), WARM rounds and then TIMED
# rounds; prints the minor page faults of the timed rounds. Allocator: glibc's defaults, keep_freed_heap, or
# the mmap ceiling with the trim threshold glibc pairs with it (64 MB).
_FAULTS = """
import ctypes, resource, sys, numpy as np
allocator, blocks, warm, timed = sys.argv[1], *map(int, sys.argv[2:])
if allocator == "keep":
    from brainxai.util.heap import keep_freed_heap
    assert keep_freed_heap()
elif allocator == "glibc-pair":
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 32 * 2**20)
    libc.mallopt(-1, 64 * 2**20)
def once():
    arrays = [np.ones(2**18, np.float32) for _ in range(blocks)]
    del arrays
for _ in range(warm):
    once()
f = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(timed):
    once()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f)
"""


def _faults(allocator: str, blocks: int, warm: int, timed: int) -> int:
    args = [sys.executable, "-c", _FAULTS, allocator, str(blocks), str(warm), str(timed)]
    return int(subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_keep_freed_heap_stops_page_faults_on_repeated_large_allocations() -> None:
    assert _faults("default", 20, 10, 10) > 1000  # glibc's defaults: every 1 MB block is a fresh mmap, faulted in
    assert _faults("keep", 20, 10, 10) < 50


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_keep_freed_heap_keeps_a_batch_of_analyses_worth_of_freed_memory() -> None:
    # 100 MB freed at the heap's top, more than one analysis's LRP pass frees there.
    assert _faults("glibc-pair", 100, 2, 3) > 3 * 10_000  # trimmed at 64 MB: over 40 MB faulted in every round
    assert _faults("keep", 100, 2, 3) < 50
    # 400 MB, more than a batch of four analyses (analyze_many) frees there (140-310 MB measured).
    assert _faults("keep", 400, 2, 2) < 50


def test_single_threaded_blas_limits_and_restores() -> None:
    from brainxai.util.blas import single_threaded_blas

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]

    import numpy as np

    np.ones((2, 2)) @ np.ones((2, 2))  # make sure numpy's BLAS is loaded
    before = blas_threads()
    if not before:
        pytest.skip("no BLAS library visible to threadpoolctl")
    with single_threaded_blas():
        assert set(blas_threads()) == {1}
    assert blas_threads() == before
