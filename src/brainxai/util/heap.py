"""Keep the C heap's freed pages between model calls (glibc), so each call does not fault them in again.

glibc returns large blocks to the kernel as soon as they are freed (``mmap`` above a threshold that
starts at 128 KiB, heap trimming above twice that), and raises both thresholds only after it has seen
a large block freed. A fresh process classifying one image at a time therefore gets new, zeroed pages
for every activation tensor of every forward pass: about 5,000 page faults (20 MB) per EfficientNet-Lite0
call, until some larger job (a batch of 32) happens to raise the thresholds (``benchmarks/perf.md``).
:func:`keep_freed_heap` sets the thresholds glibc would reach by itself after such a job, once, at
model load; memory is still handed back explicitly by ``malloc_trim`` (the web server does so after
each analysis).

The trim threshold is set well above the one glibc pairs with its mmap ceiling (64 MiB): one ``analyze``
frees some 70 MiB at the top of the heap after its LRP pass (with 64 MiB every pass faulted ~18,000 pages
back in: 108-123 ms per pass instead of about 92), and a batch of four (``analyze_many``) frees 140-310 MiB
(with 256 MiB every batch faulted 35,000-79,000 pages back in: 68-78 ms per image instead of 60-65;
``benchmarks/perf.md``). A long-lived process therefore keeps up to 1 GiB of freed heap; the web server
hands it back after each analysis (``malloc_trim``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

logger = logging.getLogger(__name__)

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's own ceiling for the dynamic mmap threshold on 64-bit hosts.
MMAP_THRESHOLD = 32 * 2**20
# Free memory kept at the heap's top: above what a batch of analyses frees at once (glibc would pair 64 MiB).
TRIM_THRESHOLD = 2**30
# Users tuning glibc themselves keep their settings.
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_done = False


def keep_freed_heap() -> bool:
    """Pins glibc's mmap and trim thresholds (once per process); False where not glibc or user-tuned.

    Set ``BRAINXAI_KEEP_FREED_HEAP=0`` to leave the allocator alone.
    """
    global _done
    if _done:
        return True
    if os.environ.get("BRAINXAI_KEEP_FREED_HEAP", "1") == "0" or _user_tuned():
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        mallopt = None
    if mallopt is None:
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    _done = ok
    if not ok:
        logger.debug("mallopt refused the heap thresholds")
    return ok


def _user_tuned() -> bool:
    return any(k in os.environ for k in _USER_SETTINGS) or "malloc" in os.environ.get("GLIBC_TUNABLES", "")
