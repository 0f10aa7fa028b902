"""Probe: does top-k ("multiple-instance") pooling move the model's evidence onto the tumour?

The shipped EfficientNet-Lite0 pools its last feature map by the mean over all 7x7 cells before the linear
layer, which equals scoring every cell with that layer and averaging the cell scores. This probe scores
every cell and takes the mean of the ``k`` highest instead (WILDCAT's pooling, Durand et al., CVPR 2017;
the multiple-instance assumption of lesion detection), fine-tunes from the shipped weights, and measures
the pointing game. The control arm fine-tunes the unchanged architecture with the same recipe, so the
comparison separates the pooling from the extra epochs. Plan, rule and result:
``experiments/mil_pooling/mil_pooling.md``. An exploration tool, not an API.

    python experiments/mil_pooling/mil_pooling_probe.py --arm avg  --data ../shared/data/brain-tumor-mri \
        --boxes ../shared/data/figshare-boxes-dev/boxes.csv --out runs/mil/avg
    python experiments/mil_pooling/mil_pooling_probe.py --arm topk --data ../shared/data/brain-tumor-mri \
        --boxes ../shared/data/figshare-boxes-dev/boxes.csv --out runs/mil/topk
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from brainxai.data.augment import default_augmentation
from brainxai.data.dataset import MRIDataset, decode_samples, discover_samples
from brainxai.explain import create_explainer
from brainxai.explain.quality import POINTING_TOLERANCE
from brainxai.inference import Classifier, default_checkpoint_path
from brainxai.models.checkpoint import load_checkpoint
from brainxai.models.efficientnet_lite import EfficientNetLite0
from brainxai.training.split import training_split
from brainxai.xai_benchmark import box_metrics, load_box_images, read_boxes

METHODS = ("lrp", "gradcam", "guided-backprop", "guided-gradcam")
BATCH = 32


class TopKPooledLite0(EfficientNetLite0):
    """EfficientNet-Lite0 whose class score is the mean of its ``top_k`` highest cell scores."""

    top_k = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.dropout(self.head(self.blocks(self.stem(x))))
        cell_scores = self.classifier(features.flatten(2).transpose(1, 2))  # (N, cells, classes)
        return cell_scores.topk(self.top_k, dim=1).values.mean(1)


def fine_tune(model: nn.Module, data: str, epochs: int, lr: float) -> list[dict[str, float]]:
    """All of Training, the training augmentation, Adam, cosine to 1% of ``lr``, label smoothing 0.1, bf16."""
    pre = model.brainxai_config.preprocess
    split = training_split(data, pre, val_fraction=0.0, seed=0, cache_dir=".cache/brainxai")
    ds = MRIDataset(
        split.images[split.train_idx], split.labels[split.train_idx], pre, augment=default_augmentation(), seed=0
    )
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(ds) / BATCH)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    history = []
    for epoch in range(epochs):
        # Fixed per-epoch seeds (and augmentation epochs the shipped run never drew): both arms see the same batches.
        torch.manual_seed(1000 + epoch)
        ds.set_epoch(100 + epoch)
        loader = DataLoader(ds, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(epoch))
        model.train()
        t0, total, n, correct = time.perf_counter(), 0.0, 0, 0
        for x, y in loader:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)
            loss = loss_fn(out.float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(y)
            n += len(y)
            correct += int((out.argmax(1) == y).sum())
        history.append(
            {"epoch": epoch + 1, "loss": total / n, "accuracy": correct / n, "time_s": time.perf_counter() - t0}
        )
        print(
            f"epoch {epoch + 1}: loss {total / n:.4f}, accuracy {correct / n:.4f}, {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    return history


def pointing(classifier: Classifier, boxes: Path) -> dict[str, dict[str, object]]:
    """Pointing game and energy in box per method on a box CSV, the annotated class explained."""
    records = read_boxes(boxes)
    data = load_box_images(records, classifier)
    classes = list(classifier.classes)
    targets = [classes.index(r.label) for r in records]
    labels = np.array([r.label for r in records])
    out: dict[str, dict[str, object]] = {}
    for method in METHODS:
        hits, energy = [], []
        with create_explainer(method, classifier.model) as explainer:
            for start in range(0, len(records), 10):
                idx = list(range(start, min(len(records), start + 10)))
                for i, e in zip(
                    idx, explainer.explain(classifier.tensor(data.prepared[idx]), [targets[i] for i in idx])
                ):
                    # The benchmark's own placement of the map into the scan and its box metrics.
                    metrics = box_metrics(i, e.relevance, data, POINTING_TOLERANCE)
                    hits.append(int(metrics["pointing_game"]))
                    energy.append(metrics["energy_in_box"])
        h = np.array(hits)
        out[method] = {
            "pointing_game": float(h.mean()),
            "energy_in_box": float(np.mean(energy)),
            **{c: float(h[labels == c].mean()) for c in sorted(set(labels))},
            "per_image": {r.path.name: hit for r, hit in zip(records, hits)},
        }
        print(method, f"pointing game {h.mean():.3f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arm", choices=["avg", "topk"], required=True)
    ap.add_argument("--data", required=True, help="dataset root with Training/ and Testing/")
    ap.add_argument("--boxes", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    loaded = load_checkpoint(default_checkpoint_path())
    if args.arm == "topk":
        loaded.model.__class__ = TopKPooledLite0  # same parameters, other pooling
    history = fine_tune(loaded.model, args.data, args.epochs, args.lr) if args.epochs else []
    loaded.model.eval()
    # Its batch-norm-folded copy for scoring is a deep copy, so it keeps the probed pooling.
    classifier = Classifier(loaded, device="cpu")

    testing = decode_samples(
        discover_samples(Path(args.data) / "Testing"), loaded.meta.preprocess, cache_dir=".cache/brainxai"
    )
    errors = int((classifier.logits_prepared(testing.images).argmax(1) != testing.labels).sum())
    print(f"Testing raw: {errors} errors of {len(testing.labels)}", flush=True)
    result = {
        "arm": args.arm,
        "top_k": TopKPooledLite0.top_k if args.arm == "topk" else None,
        "epochs": args.epochs,
        "lr": args.lr,
        "base_checkpoint_sha256": loaded.sha256,
        "testing_raw_errors": errors,
        "testing_n": len(testing.labels),
        "history": history,
        "methods": pointing(classifier, args.boxes),
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
