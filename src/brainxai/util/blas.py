"""Small numpy matrix products without OpenBLAS's worker threads, which spin after every call.

After each multi-threaded call OpenBLAS keeps its workers busy-waiting for the next one (about 75 ms of
CPU after one 1x1280 @ 1280x1280 product on a 2-core host, measured in ``benchmarks/perf.md``). Right
before a torch explanation that spinning takes a core away from torch: the out-of-domain score made LRP
in ``analyze`` about 60 ms slower. For products this small one thread is as fast, and nothing spins.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)

_controller: Any = None
_controller_lock = threading.Lock()


def _blas_controller() -> Any:
    """A cached ``threadpoolctl.ThreadpoolController`` (finding the loaded libraries takes a few ms), or None."""
    global _controller
    with _controller_lock:
        if _controller is None:
            try:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()
            except Exception as exc:  # threadpoolctl missing or unable to inspect this process
                logger.debug("threadpoolctl unavailable: %s", exc)
                _controller = False
        return _controller or None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Runs the block with the BLAS libraries limited to one thread (no-op without threadpoolctl)."""
    controller = _blas_controller()
    if controller is None:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield
