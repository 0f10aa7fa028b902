"""brainxai's model against the PyPI peer ``detect-tumor`` (VGG16, ONNX Runtime), same images, one run.

Both classify every image of the test split one image at a time (batch 1, as a clinician would
submit scans), from the file on disk, so each side pays its own decoding and preprocessing. Metrics
are reported on the raw split and on the de-duplicated subset from the duplicate audit.

The peer is a benchmark-only dependency: ``pip install detect-tumor`` in the benchmark environment.

Usage:
  python benchmarks/peer_comparison.py --data ../shared/data/brain-tumor-mri \
      [--checkpoint PATH] [--limit N] [--out benchmarks/peer_comparison.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from brainxai.data.audit import audit_dataset
from brainxai.data.dataset import discover_samples
from brainxai.evaluation.metrics import classification_metrics
from brainxai.inference import Classifier
from brainxai.io.raster import read_raster


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/brain-tumor-mri")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--limit", type=int, default=None, help="first N test images per class (quick runs)")
    ap.add_argument("--out", default="benchmarks/peer_comparison.md")
    args = ap.parse_args()
    from detect_tumor import TumorDetector  # the peer: benchmark environment only

    data = Path(args.data)
    samples = discover_samples(data / "Testing")
    if args.limit:
        samples = [s for c in range(4) for s in [x for x in samples if x.label == c][: args.limit]]
    rel = [os.path.relpath(s.path, data) for s in samples]
    y = np.array([s.label for s in samples])

    clf = Classifier.load(args.checkpoint, device="cpu")
    peer = TumorDetector()
    classes = list(clf.classes)
    ours_p, peer_p, ours_ms, peer_ms = [], [], [], []
    # Warm-up both (first-call allocations, ONNX session creation) outside the timings.
    clf.predict([read_raster(samples[0].path)])
    peer.predict(str(samples[0].path))
    for s in samples:
        t = time.perf_counter()
        pred = clf.predict([read_raster(s.path)])[0]
        ours_ms.append((time.perf_counter() - t) * 1000)
        ours_p.append([pred.probabilities[c] for c in classes])
        t = time.perf_counter()
        r = peer.predict(str(s.path))
        peer_ms.append((time.perf_counter() - t) * 1000)
        peer_p.append([r.probabilities.get(c, 0.0) / 100.0 for c in classes])

    audit = audit_dataset(data, progress=False)
    dedup = set(audit["dedup_test"])
    subsets = {"raw": np.arange(len(rel)), "dedup": np.array([i for i, p in enumerate(rel) if p in dedup])}
    result: dict = {
        "command": "python benchmarks/peer_comparison.py "
        + " ".join(f"--{k} {v}" for k, v in vars(args).items() if v is not None),
        "hardware": (
            f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads"
        ),
        "model": {"name": clf.name, "sha256": clf.checkpoint.sha256[:16]},
        "dedup_method": audit["method"],
        "ours_ms_median": float(np.median(ours_ms)),
        "peer_ms_median": float(np.median(peer_ms)),
    }
    for name, idx in subsets.items():
        for who, probs in (("brainxai", np.array(ours_p)), ("detect-tumor", np.array(peer_p))):
            m = classification_metrics(y[idx], probs[idx], classes, n_boot=1000)
            result[f"{name}/{who}"] = {
                "n": m["n"],
                "accuracy": m["accuracy"],
                "macro_f1": m["macro_f1"],
                "ci95": m["ci95"],
                "recall": {c: m["per_class"][c]["recall"] for c in classes},
            }
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# brainxai vs detect-tumor (VGG16 ONNX), same images, one run",
        "",
        f"Command: `{result['command']}`  ",
        f"Hardware: {result['hardware']}  ",
        f"brainxai model: `{clf.name}` (sha256 {result['model']['sha256']}). De-duplicated subset: {audit['method']}.",
        "",
        "| split | system | n | accuracy [95% CI] | macro-F1 [95% CI] | "
        + " | ".join(f"recall {c}" for c in classes)
        + " | ms/image (median) |",
        "|---|---|---|---|---|" + "---|" * len(classes) + "---|",
    ]
    for name in subsets:
        for who, ms in (("brainxai", result["ours_ms_median"]), ("detect-tumor", result["peer_ms_median"])):
            r = result[f"{name}/{who}"]
            ci_a, ci_f = r["ci95"]["accuracy"], r["ci95"]["macro_f1"]
            lines.append(
                f"| {name} | {who} | {r['n']} | {r['accuracy']:.4f} [{ci_a[0]:.4f}, {ci_a[1]:.4f}] | "
                f"{r['macro_f1']:.4f} [{ci_f[0]:.4f}, {ci_f[1]:.4f}] | "
                + " | ".join(f"{r['recall'][c]:.3f}" for c in classes)
                + f" | {ms:.1f} |"
            )
    lines += [
        "",
        f"Speed ratio (detect-tumor / brainxai, median ms per image, decode included): "
        f"{result['peer_ms_median'] / result['ours_ms_median']:.2f}x.",
        "",
    ]
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
