"""Classifying with the default model must not pull in the explanation and plotting stacks.

Each of torchvision, zennit, pytorch-grad-cam (with matplotlib, scikit-learn, SciPy) adds tens to
hundreds of MB of resident memory (benchmarks/perf.md); a process that only classifies should not
pay for them.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torchvision", "zennit", "pytorch_grad_cam", "matplotlib", "sklearn", "scipy")


def test_loading_and_classifying_imports_no_heavy_library() -> None:
    code = (
        "import sys, numpy as np\n"
        "from brainxai.inference import Classifier\n"
        "clf = Classifier.load(device='cpu')\n"
        "clf.predict(np.zeros((64, 64), np.uint8))\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "", f"imported: {out.stdout.strip()}"
