"""The inference runner hands freed heap memory back to the operating system after each analysis."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from brainxai.web.analysis import _MALLOC_TRIM, InferenceRunner, return_free_heap

pytestmark = pytest.mark.skipif(_MALLOC_TRIM is None, reason="needs glibc's malloc_trim")


def test_return_free_heap_releases_fragmented_free_blocks() -> None:
    """Blocks freed between live ones stay resident until trimmed; trimming gives most of them back."""
    script = textwrap.dedent(
        """
        import os
        from brainxai.web.analysis import return_free_heap
        from brainxai.web.process import rss_bytes

        def rss_mb():
            return rss_bytes(os.getpid()) / 2**20

        blocks = [bytearray(b"x" * 65536) for _ in range(4000)]  # 250 MB in heap-sized blocks
        del blocks[::2]  # free every other block: holes the heap cannot shrink past
        before = rss_mb()
        released = return_free_heap()
        print(before, rss_mb(), released)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before, after, released = out.stdout.split()
    assert released == "True"
    assert float(before) - float(after) > 80  # of the 125 MB freed


def test_runner_trims_after_each_call(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr("brainxai.web.analysis.return_free_heap", lambda: calls.append("trim") or True)
    runner = InferenceRunner()

    async def two_calls() -> None:
        assert await runner.run(lambda x: calls.append("work") or x * 2, 21) == 42
        with pytest.raises(ZeroDivisionError):
            await runner.run(lambda: 1 / 0)

    try:
        asyncio.run(two_calls())
    finally:
        runner.shutdown()
    assert calls == ["work", "trim", "trim"]  # also after a failed analysis


def test_return_free_heap_is_safe_to_call_repeatedly() -> None:
    assert isinstance(return_free_heap(), bool)
    assert isinstance(return_free_heap(), bool)
