"""Small shared thread pools for work that overlaps the analysis (file writes, image and NIfTI compression, the
segmentation network on ONNX Runtime).

Only work that releases the GIL gains from them (NumPy and OpenCV on large arrays, zlib, file I/O, ONNX Runtime).
Never run torch operations in them: a second thread calling into torch starts a second OpenMP team that
keeps spinning and slows every later torch operation of the process (``benchmarks/perf.md``).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

_POOLS: dict[str, ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


def shared_pool(name: str, workers: int) -> ThreadPoolExecutor:
    """The process-wide pool called ``name`` (threads ``brainxai-<name>_N``), created at first use.

    Args:
        name: Pool name; one pool per name for the process's lifetime.
        workers: Its number of threads (used when the pool is created).
    """
    with _LOCK:
        pool = _POOLS.get(name)
        if pool is None:
            pool = _POOLS[name] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"brainxai-{name}")
        return pool
