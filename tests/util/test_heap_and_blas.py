"""The allocator and BLAS settings that keep repeated model calls fast (``benchmarks/perf.md``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

# Allocates and frees 20 blocks of 1 MB (like a forward pass's activations) twenty times; prints the
# minor page faults of the last ten rounds.
_FAULTS = """
import resource, sys, numpy as np
if sys.argv[1] == "1":
    from brainxai.util.heap import keep_freed_heap
    assert keep_freed_heap()
def once():
    blocks = [np.ones(2**18, np.float32) for _ in range(20)]
    del blocks
for _ in range(10):
    once()
f = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    once()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_keep_freed_heap_stops_page_faults_on_repeated_large_allocations() -> None:
    def faults(flag: str) -> int:
        out = subprocess.run([sys.executable, "-c", _FAULTS, flag], capture_output=True, text=True, check=True)
        return int(out.stdout.strip())

    assert faults("0") > 1000  # glibc's defaults: every 1 MB block is a fresh mmap, faulted in again
    assert faults("1") < 50


# Allocates and frees 100 MB of heap-sized blocks (more than the LRP pass of one analysis frees at the
# heap's top) five times; prints the minor page faults of the last three rounds.
_TRIMMED = """
import resource, sys, numpy as np
if sys.argv[1] == "1":
    from brainxai.util.heap import keep_freed_heap
    assert keep_freed_heap()
else:
    import ctypes
    ctypes.CDLL("libc.so.6").mallopt(-3, 32 * 2**20)  # the mmap threshold alone, glibc's trim pairing (64 MB)
    ctypes.CDLL("libc.so.6").mallopt(-1, 64 * 2**20)
def once():
    blocks = [np.ones(2**18, np.float32) for _ in range(100)]
    del blocks
for _ in range(2):
    once()
f = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    once()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_keep_freed_heap_keeps_an_analysis_worth_of_freed_memory() -> None:
    def faults(flag: str) -> int:
        out = subprocess.run([sys.executable, "-c", _TRIMMED, flag], capture_output=True, text=True, check=True)
        return int(out.stdout.strip())

    assert faults("0") > 3 * 10_000  # trimmed at 64 MB: over 40 MB faulted in again every round
    assert faults("1") < 50


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
