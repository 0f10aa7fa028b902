"""Builds ``benchmarks/models.{md,json}``: the seed architectures side by side.

Reads the runs written by ``scripts/compare_models.sh`` (``RUNS/NAME/best.json`` and
``RUNS/NAME/eval/metrics.json``), adds EfficientNet-Lite0 trained on the same split
(``RUNS/efficientnet-lite0``, when present) and the shipped default model evaluated with the same
de-duplicated list, and measures each model's CPU latency in this process on the same real images.

A run trained on another machine may come without its weights (a ResNet-50 checkpoint is ~94 MB);
its latency is then measured on the same architecture with untrained weights, which costs the same
arithmetic (no layer of these models depends on the weight values for its work), and the row says so.

    python benchmarks/models.py --runs runs/compare --data ../shared/data/brain-tumor-mri --out benchmarks/models
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from brainxai.bench import hardware_summary, time_call
from brainxai.inference import Classifier, default_checkpoint_path
from brainxai.io.raster import read_raster
from brainxai.models.checkpoint import CheckpointMeta, LoadedCheckpoint, build_model
from brainxai.pipeline.demo import sample_scans

#: (run folder, label, recipe in words), in table order.
ROWS: tuple[tuple[str, str, str], ...] = (
    ("resnet18", "resnet18", "Adam 1e-3, one phase (the LRP paper's recipe)"),
    ("cnn-lstm", "cnn-lstm", "64x64 grayscale, Adam 1e-3"),
    ("resnet50-mlp", "resnet50-mlp", "progressive, 3 phases (1e-3, 1e-4, 5e-5)"),
    ("resnet50-gap-aug", "resnet50-gap + aug", "Adam 1e-3, training augmentation"),
    ("resnet50-gap-noaug", "resnet50-gap, no aug", "Adam 1e-3, no augmentation"),
    ("efficientnet-lite0", "efficientnet-lite0", "Adam 5e-4, cosine, flips (best of 5 by validation)"),
    (
        "shipped",
        "efficientnet-lite0 (shipped)",
        "Adam 1e-3, cosine, label smoothing 0.1; refit on all of Training for the whole 30-epoch schedule",
    ),
)


def _evaluate_shipped(runs: Path, data: Path) -> Path:
    out = runs / "shipped" / "eval"
    if not (out / "metrics.json").is_file():
        subprocess.run(
            [
                "brainxai",
                "evaluate",
                "--data",
                str(data),
                "--out",
                str(out),
                "--dedup-list",
                str(runs / "audit" / "audit_dedup_test.txt"),
            ],
            check=True,
        )
    return out


def _start_weights(model: str, pretrained: bool) -> str:
    """What the run started from: the torchvision weights API falls back to random init offline."""
    if not pretrained or model == "cnn-lstm":
        return "random"
    if model == "efficientnet-lite0":
        return "ImageNet (pip package)"
    import torchvision.models as tvm

    arch = "resnet50" if model.startswith("resnet50") else model
    url = tvm.get_model_weights(arch).DEFAULT.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    return "ImageNet" if cached.is_file() else "random (ImageNet weights not reachable offline)"


def _status(folder: str, meta: dict) -> str:
    """How the run ended, from its recipe and history."""
    history, recipe = meta["history"], meta["recipe"]
    if any(h.get("epoch_fraction", 1.0) < 1.0 for h in history):
        return f"time budget ({recipe['time_budget_s'] / 60:.1f} min) spent"
    planned = sum(recipe["phase_epochs"]) if recipe["schedule"] == "progressive" else recipe["epochs"]
    if len(history) < planned:
        return f"early-stopped (patience {recipe['patience']}) after {len(history)} of {planned} epochs"
    return "schedule completed"


def _classifier(checkpoint: Path) -> tuple[Classifier, bool]:
    """The checkpoint's classifier, or (weights absent) its architecture untrained; True when trained."""
    if checkpoint.with_suffix(".safetensors").is_file():
        return Classifier.load(checkpoint, device="cpu"), True
    meta = CheckpointMeta.from_dict(json.loads(checkpoint.with_suffix(".json").read_text()))
    model = build_model(meta).eval()
    return Classifier(
        LoadedCheckpoint(model, meta, checkpoint.with_suffix(".safetensors"), "untrained"), device="cpu"
    ), False


def _latency_ms(clf: Classifier, scans: list[np.ndarray]) -> float:
    k = iter(range(10**9))
    return time_call(lambda: clf.predict_proba_prepared(clf.prepare(scans[next(k) % len(scans)])[None]), 30)["median"]


def _hardware_of(meta: dict) -> str:
    device = meta["recipe"].get("device", "cpu")
    return "GPU (" + device + ")" if device.startswith("cuda") else "CPU"


def build(runs: Path, data: Path) -> dict:
    scans = [read_raster(p) for p in sample_scans().values()]
    _evaluate_shipped(runs, data)
    rows = []
    for folder, label, recipe in ROWS:
        ckpt = default_checkpoint_path() if folder == "shipped" else runs / folder / "best"
        metrics_path = runs / folder / "eval" / "metrics.json"
        if not metrics_path.is_file() or not ckpt.with_suffix(".json").is_file():
            rows.append({"name": label, "recipe": recipe, "status": "not run"})
            continue
        meta = json.loads(ckpt.with_suffix(".json").read_text())
        metrics = json.loads(metrics_path.read_text())
        history = meta["history"]
        clf, trained = _classifier(ckpt)
        params = sum(p.numel() for p in clf.model.parameters())
        epochs = sum(h.get("epoch_fraction", 1.0) for h in history)
        budget = meta["recipe"].get("time_budget_s")
        best = meta["metrics"]["best_epoch"]
        rows.append(
            {
                "name": label,
                "recipe": recipe,
                "status": _status(folder, meta),
                "raw_accuracy": metrics["raw"]["accuracy"],
                "raw_accuracy_ci95": metrics["raw"]["ci95"]["accuracy"],
                "dedup_accuracy": metrics["dedup"]["accuracy"],
                "raw_macro_f1": metrics["raw"]["macro_f1"],
                "dedup_macro_f1": metrics["dedup"]["macro_f1"],
                "raw_glioma_recall": metrics["raw"]["per_class"]["glioma"]["recall"],
                "dedup_glioma_recall": metrics["dedup"]["per_class"]["glioma"]["recall"],
                "params_m": params / 1e6,
                "cpu_ms": _latency_ms(clf, scans),
                "cpu_ms_weights": "trained" if trained else "untrained (weights not kept)",
                "epochs_run": round(epochs, 2),
                "best_epoch": best,
                "train_minutes": sum(h["time_s"] for h in history) / 60,
                "time_budget_min": budget / 60 if budget else None,
                "start_weights": _start_weights(meta["model"], bool(meta["recipe"].get("pretrained"))),
                "train_device": meta["recipe"].get("device"),
                "train_hardware": meta.get("train_hardware") or _hardware_of(meta),
                "n_test_raw": metrics["raw"]["n"],
                "n_test_dedup": metrics["dedup"]["n"],
            }
        )
    return {"hardware": hardware_summary(), "rows": rows}


def to_markdown(result: dict) -> str:
    hw = result["hardware"]
    lines = [
        (
            "| model | recipe | start | raw acc | dedup acc | raw macro-F1 | dedup macro-F1 | dedup glioma recall "
            "| params (M) | CPU ms/img | epochs run (best) | train min | trained on | status |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    untrained = False
    for r in result["rows"]:
        if r["status"] == "not run":
            lines.append(f"| {r['name']} | {r['recipe']} | " + "— | " * 11 + "not run |")
            continue
        mark = "" if r.get("cpu_ms_weights", "trained") == "trained" else "*"
        untrained = untrained or bool(mark)
        lines.append(
            f"| {r['name']} | {r['recipe']} | {r['start_weights']} | {r['raw_accuracy']:.3f} "
            f"| {r['dedup_accuracy']:.3f} "
            f"| {r['raw_macro_f1']:.3f} | {r['dedup_macro_f1']:.3f} | {r['dedup_glioma_recall']:.3f} "
            f"| {r['params_m']:.1f} | {r['cpu_ms']:.1f}{mark} | {r['epochs_run']:g} ({r['best_epoch']}) "
            f"| {r['train_minutes']:.0f} | {r.get('train_hardware', '')} | {r['status']} |"
        )
    lines.append("")
    lines.append(
        f"Evaluation and CPU latency measured here: {hw['cpu']}, {hw['cores']} cores, "
        f"torch {hw['torch']}" + (f", GPU {hw['gpu']}" if "gpu" in hw else ", no GPU") + "."
    )
    if untrained:
        lines.append(
            "\n\\* Latency of the same architecture with untrained weights: the trained weights stayed on the "
            "machine that trained them; the arithmetic, and so the time, does not depend on the weight values."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/compare"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data/brain-tumor-mri"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/models"))
    ap.add_argument("--render-only", action="store_true", help="Re-write the table from OUT.json (statuses refreshed).")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    if args.render_only:
        result = json.loads(args.out.with_suffix(".json").read_text())
        for row, (folder, _, _) in zip(result["rows"], ROWS):
            ckpt = default_checkpoint_path() if folder == "shipped" else args.runs / folder / "best"
            row["status"] = _status(folder, json.loads(ckpt.with_suffix(".json").read_text()))
    else:
        result = build(args.runs, args.data)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    table = to_markdown(result)
    args.out.with_name(args.out.name + "_table.md").write_text(table)
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
