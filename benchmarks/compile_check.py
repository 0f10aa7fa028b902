"""torch.compile on the BatchNorm-folded default model: compile time, latency against eager, max logit difference.

    python benchmarks/compile_check.py

Both paths are timed in the same process (median of 20 after 3 warm-up calls, two rounds), batch 1.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from brainxai.inference import Classifier


def median_ms(fn, repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def main() -> None:
    clf = Classifier.load(device="cpu")
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    folded = clf._classify_model
    t = time.perf_counter()
    compiled = torch.compile(folded)
    with torch.inference_mode():
        compiled(x)
    print(f"compile: {time.perf_counter() - t:.1f} s")
    with torch.inference_mode():
        for _ in range(2):
            print(f"eager folded {median_ms(lambda: folded(x)):.1f} ms, compiled {median_ms(lambda: compiled(x)):.1f} ms")
        print(f"max |logit difference|: {(folded(x) - compiled(x)).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
