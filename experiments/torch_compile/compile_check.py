"""torch.compile on the BatchNorm-folded default model: compile time, latency against eager, max logit difference.

    python experiments/torch_compile/compile_check.py

Both paths are timed in the same process (median of 20 after 3 warm-up calls, two rounds), batch 1.
"""

from __future__ import annotations

import time

import torch

from brainxai.bench import time_call
from brainxai.inference import Classifier
from brainxai.models.fusion import fold_batchnorm


def main() -> None:
    clf = Classifier.load(device="cpu")
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    folded = fold_batchnorm(clf.model)  # the BatchNorm-folded copy Classifier classifies with
    t = time.perf_counter()
    compiled = torch.compile(folded)
    with torch.inference_mode():
        compiled(x)
    print(f"compile: {time.perf_counter() - t:.1f} s")
    with torch.inference_mode():
        for _ in range(2):
            eager_ms = time_call(lambda: folded(x), 20, warmup=3)["median"]
            compiled_ms = time_call(lambda: compiled(x), 20, warmup=3)["median"]
            print(f"eager folded {eager_ms:.1f} ms, compiled {compiled_ms:.1f} ms")
        print(f"max |logit difference|: {(folded(x) - compiled(x)).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
