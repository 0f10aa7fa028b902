"""Leave-one-source-out (LOSO) on the Kaggle brain-tumour set: train without a source, test on it, per class.

For each held-out source S (figshare, SARTAJ, Br35H; :mod:`brainxai.data.sources`), trains a model with
``TrainConfig.exclude_sources=(S,)`` (every Training image of S and every image sharing a content group
with an image of S is left out, see :func:`brainxai.data.sources.loso_split`) and evaluates it on every
image of S (Training and Testing), and on S's Testing images alone, per class with bootstrap intervals.
The recipe is passed through (epochs, image size, model, images per class), so the same tool runs a
smoke test and the full protocol. Writes ``OUT/loso.json`` and ``OUT/loso.md``, which name the command.

With ``--domain`` (the default) each fold's model also gets out-of-domain statistics fitted as ``brainxai
domain fit`` fits the shipped model's, but on the fold's own training pool (the held-out source never enters
them), and the report says how much of the held-out source the score flags and how many of its tumours are
called "no tumour" *without* a flag: the silent misses that issue 21's external target bounds (<= 10%).

    python benchmarks/loso.py --data ../shared/data/brain-tumor-mri --out benchmarks/loso \\
        --runs runs/loso --epochs 30 --device cpu

Research use only.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from brainxai.constants import CLASSES, DISCLAIMER, NO_TUMOUR
from brainxai.data.dataset import Sample, decode_samples
from brainxai.data.sources import SOURCES, SourceLabel, derive_sources, describe_fold, loso_split, read_sources_csv
from brainxai.evaluation.by_source import source_metrics
from brainxai.inference import Classifier
from brainxai.training.domain import fit_and_save
from brainxai.training.trainer import TrainConfig, train

#: Below this many training images a class is not learnt in any useful sense: the fold cannot test it.
FEW = 100

#: What each fold is, whatever the counts (from experiments/source_derivation/report.md).
SOURCE_NOTES = {
    "figshare": (
        "figshare (Cheng 2017, T1 contrast-enhanced; glioma, meningioma, pituitary) is also the content of most "
        "SARTAJ tumour images (mirror twins), so holding it out removes nearly all tumour training images: "
        "the fold tests tumour classes the model has barely seen, and has no no-tumour test images."
    ),
    "sartaj": (
        "SARTAJ has all four classes, but most of its tumour images are figshare slices again; those figshare "
        "slices leave training with it, so the fold trains on the figshare slices SARTAJ does not hold plus "
        "Br35H no-tumour images that are not near-copies of SARTAJ ones."
    ),
    "br35h": (
        "Br35H holds no-tumour images only: the fold tests whether no-tumour slices from another source are "
        "still called no-tumour (a specificity check), with SARTAJ's no-tumour images as the only no-tumour "
        "training data; it cannot test any tumour class."
    ),
}


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data", type=Path, required=True, help="Kaggle-layout root (Training/, Testing/).")
    p.add_argument("--out", type=Path, default=Path("benchmarks/loso"), help="Where loso.md/loso.json go.")
    p.add_argument("--runs", type=Path, default=Path("runs/loso"), help="Where each fold's checkpoint goes.")
    p.add_argument("--sources-csv", type=Path, help="Source labels from `brainxai sources` (default: derive).")
    p.add_argument("--held-out", nargs="+", default=list(SOURCES), choices=SOURCES, help="Folds to run.")
    p.add_argument("--model", default="efficientnet-lite0")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--img-size", type=int, help="Input side (default: the model's).")
    p.add_argument("--limit-per-class", type=int, help="Train on at most N images per class (smoke runs).")
    p.add_argument("--max-test-per-class", type=int, help="Test on at most N images per class (smoke runs).")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--lr-schedule", default="plateau", choices=("plateau", "cosine"))
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--augment", default="default", help="Augmentation preset (none | default | mr | mr-histogram).")
    p.add_argument("--grounding", default="none", help="Lesion-grounded training (see `brainxai train --help`).")
    p.add_argument("--masks-brisc", type=Path, help="brisc-masks-dev folder (for --grounding).")
    p.add_argument("--masks-figshare", type=Path, help="figshare-masks-dev folder (for --grounding).")
    p.add_argument("--inpaint-control-p", type=float, default=0.0, help="--grounding inpaint: control share.")
    p.add_argument("--inpaint-fill", default="telea", help="--grounding inpaint: telea | transplant.")
    p.add_argument("--inpaint-classes", nargs="*", default=[], help="--grounding inpaint: only these classes.")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument(
        "--domain",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Fit each fold's out-of-domain statistics on its training pool and report the flags.",
    )
    p.add_argument("--cache-dir", default=".cache/brainxai")
    return p.parse_args(argv)


def _test_samples(
    root: Path, labels: Sequence[SourceLabel], paths: Sequence[str], cap: int | None, seed: int
) -> list[tuple[Sample, str]]:
    """The held-out images as samples (with their split), at most ``cap`` per class drawn with ``seed``."""
    by_path = {lab.path: lab for lab in labels}
    chosen = sorted(paths)
    if cap:
        rng = np.random.default_rng(seed)
        per_class: dict[str, list[str]] = {}
        for p in chosen:
            per_class.setdefault(by_path[p].label, []).append(p)
        chosen = sorted(q for ps in per_class.values() for q in rng.permutation(ps)[:cap].tolist())
    return [(Sample(root / p, CLASSES.index(by_path[p].label)), by_path[p].split) for p in chosen]


def _fit_domain(
    checkpoint: Path, root: Path, train_paths: Sequence[str], labels: Sequence[SourceLabel], args: argparse.Namespace
) -> None:
    """The fold model's out-of-domain statistics, fitted on its training pool and stored beside it."""
    by_path = {lab.path: lab for lab in labels}
    pool = [Sample(root / p, CLASSES.index(by_path[p].label)) for p in sorted(train_paths)]
    classifier = Classifier.load(checkpoint, device=args.device)
    fit_and_save(classifier, checkpoint, root, samples=pool, seed=args.seed, cache_dir=args.cache_dir, progress=False)


def _domain_figures(y: np.ndarray, probs: np.ndarray, flagged: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """What the out-of-domain flag does on the held-out images: shares flagged, silent "no tumour" calls."""
    notumor = list(classes).index(NO_TUMOUR)
    pred = probs.argmax(1)
    tumour = y != notumor
    missed = tumour & (pred == notumor)
    answered = ~flagged
    return {
        "flagged": float(flagged.mean()),
        "flagged_per_class": {c: float(flagged[y == i].mean()) for i, c in enumerate(classes) if (y == i).any()},
        "tumours": int(tumour.sum()),
        "tumours_called_no_tumour": float(missed.sum() / max(tumour.sum(), 1)),
        "tumours_called_no_tumour_unflagged": float((missed & answered).sum() / max(tumour.sum(), 1)),
        "answered": int(answered.sum()),
        "accuracy_answered": float((pred[answered] == y[answered]).mean()) if answered.any() else None,
    }


def _evaluate(
    checkpoint: Path, samples: list[tuple[Sample, str]], held_out: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Accuracy and per-class recall of the fold's model on the held-out images, all and Testing only.

    With domain statistics beside the checkpoint, also the out-of-domain flags (:func:`_domain_figures`).
    """
    classifier = Classifier.load(checkpoint, device=args.device)
    decoded = decode_samples([s for s, _ in samples], classifier.preprocess, cache_dir=args.cache_dir, progress=False)
    kept = decoded.samples
    probs, scores = classifier.assess_prepared(decoded.images)
    split_of = {s.path: split for s, split in samples}
    y = np.array([s.label for s in kept])
    testing = np.array([split_of[s.path] == "Testing" for s in kept])
    out = {}
    for name, mask in (("all", np.ones(len(kept), bool)), ("testing_only", testing)):
        if mask.any():
            m = source_metrics(y[mask], probs[mask], [held_out] * int(mask.sum()), classifier.classes, args.n_boot)
            out[name] = m[held_out]
            if scores is not None and classifier.domain_threshold is not None:
                flagged = scores[mask] > classifier.domain_threshold
                out[name]["domain"] = _domain_figures(y[mask], probs[mask], flagged, classifier.classes)
    return out


def _notes(fold: dict[str, Any]) -> list[str]:
    """What the fold can and cannot test, from its counts."""
    notes = [SOURCE_NOTES[fold["held_out"]]]
    for c in CLASSES:
        n_test, n_train = fold["test"].get(c, 0), fold["train"].get(c, 0)
        if not n_test:
            notes.append(f"{c}: no test image of this source; not tested.")
        elif n_train < FEW:
            notes.append(
                f"{c}: {n_test} test images but only {n_train} training images of the class left "
                f"(fewer than {FEW}): a low recall here says the class was not learnt, not that it does not transfer."
            )
    return notes


def _run_fold(root: Path, labels: list[SourceLabel], held_out: str, args: argparse.Namespace) -> dict[str, Any]:
    fold = describe_fold(labels, held_out)
    _, test = loso_split(labels, held_out)
    config = TrainConfig(
        data=str(root),
        model=args.model,
        out=str(args.runs / held_out),
        epochs=args.epochs,
        img_size=args.img_size,
        val_fraction=args.val_fraction,
        lr_schedule=args.lr_schedule,
        label_smoothing=args.label_smoothing,
        augment=args.augment,
        grounding=args.grounding,
        inpaint_control_p=args.inpaint_control_p,
        inpaint_fill=args.inpaint_fill,
        inpaint_classes=tuple(args.inpaint_classes),
        masks_brisc=str(args.masks_brisc) if args.masks_brisc else None,
        masks_figshare=str(args.masks_figshare) if args.masks_figshare else None,
        seed=args.seed,
        device=args.device,
        cache_dir=args.cache_dir,
        limit_per_class=args.limit_per_class,
        exclude_sources=(held_out,),
        progress=False,
    )
    t0 = time.perf_counter()
    result = train(config)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    if args.domain:
        train_paths, _ = loso_split(labels, held_out)
        _fit_domain(result.checkpoint, root, train_paths, labels, args)
    samples = _test_samples(root, labels, test, args.max_test_per_class, args.seed)
    metrics = _evaluate(result.checkpoint, samples, held_out, args)
    return {
        "fold": fold,
        "notes": _notes(fold),
        "checkpoint": str(result.checkpoint),
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "n_train": result.extra.get("n_train"),
        "n_val": result.extra.get("n_val"),
        "n_excluded_by_source": result.extra.get("n_excluded_by_source"),
        "train_seconds": round(train_s, 1),
        "eval_seconds": round(time.perf_counter() - t0, 1),
        "test": metrics,
    }


def _recall_cell(entry: dict[str, Any] | None, c: str) -> str:
    r = (entry or {}).get("per_class", {}).get(c)
    if r is None:
        return "—"
    lo, hi = r["recall_ci95"] or (r["recall"], r["recall"])
    return f"{r['recall']:.3f} [{lo:.3f}, {hi:.3f}] (n={r['support']})"


def _domain_markdown(report: dict[str, Any]) -> list[str]:
    """The out-of-domain table, when the folds have domain statistics."""
    rows = [
        (s, name, e["domain"]) for s, r in report["folds"].items() for name, e in r["test"].items() if "domain" in e
    ]
    if not rows:
        return []

    def share(x: float | None) -> str:
        return "—" if x is None else f"{x:.3f}"

    lines = [
        "### Knowing when not to answer",
        "",
        "Each fold's out-of-domain score is fitted as `brainxai domain fit` fits the shipped model's (Mahalanobis "
        "distance to the nearest class mean combined with the energy of the logits; threshold: the 99th percentile "
        "of a seeded 20% of the pool held out of the fit), on the fold's training pool only, so the held-out source "
        'is unseen by both the classifier and its score. *Silent misses*: tumours called "no tumour" without a '
        "flag, as a share of the source's tumour images (issue 21's external bar: <= 0.10).",
        "",
        "| held out | test set | flagged | tumours | called no tumour | of them not flagged (silent misses) | "
        "answered | accuracy when answered |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for source, name, d in rows:
        lines.append(
            f"| {source} | {name} | {d['flagged']:.3f} | {d['tumours']} | {share(d['tumours_called_no_tumour'])} | "
            f"{share(d['tumours_called_no_tumour_unflagged'])} | {d['answered']} | {share(d['accuracy_answered'])} |"
        )
    return [*lines, ""]


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Leave-one-source-out (LOSO) on brain-tumor-mri",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Recipe: {json.dumps(report['recipe'])}. Started {report['started']}; {report['total_seconds']:.0f} s in all.",
        "",
        "Each fold trains without the held-out source and without every image sharing a content group with it "
        "(pHash of the image or its mirror image within 2 bits), then tests on every image of the source "
        "(Training and Testing; `testing_only`: its Testing images). Recall intervals: 95% percentile bootstrap "
        "over the source's images of the class. — : no test image of that class.",
        "",
    ]
    if (
        report["recipe"].get("limit_per_class")
        or report["recipe"].get("max_test_per_class")
        or report["recipe"]["epochs"] < 5
    ):
        lines += [
            "**Reduced recipe** (fewer epochs, smaller input or fewer images than the shipped model's): development "
            "figures that compare folds and recipes run the same way, not the shipped model's performance.",
            "",
        ]
    header = "| held out | test set | n | accuracy [95% CI] | " + " | ".join(f"{c} recall" for c in CLASSES) + " |"
    lines += [header, "|---|---|---|---|" + "---|" * len(CLASSES)]
    for source, r in report["folds"].items():
        for name, e in r["test"].items():
            lo, hi = e["accuracy_ci95"] or (e["accuracy"], e["accuracy"])
            cells = " | ".join(_recall_cell(e, c) for c in CLASSES)
            lines.append(f"| {source} | {name} | {e['n']} | {e['accuracy']:.4f} [{lo:.4f}, {hi:.4f}] | {cells} |")
    lines.append("")
    lines += _domain_markdown(report)
    for source, r in report["folds"].items():
        f = r["fold"]
        lines += [
            f"## Held out: {source}",
            "",
            f"- Test images per class: {f['test']}; training images left per class (before the validation split"
            f" and `--limit-per-class`): {f['train']}; left out as content twins of the test set: "
            f"{f['dropped_twins']}.",
            f"- Trained {r['epochs_run']} epoch(s) on {r['n_train']} images (validation {r['n_val']}), best epoch "
            f"{r['best_epoch']}, {r['train_seconds']:.0f} s; evaluation {r['eval_seconds']:.0f} s. "
            f"Checkpoint `{r['checkpoint']}`.",
            *[f"- {n}" for n in r["notes"]],
            "",
        ]
    lines += [f"_{DISCLAIMER}_", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _parse(argv)
    started, t0 = time.strftime("%Y-%m-%d %H:%M:%S"), time.perf_counter()
    root = args.data
    labels = read_sources_csv(args.sources_csv) if args.sources_csv else derive_sources(root, cache_dir=args.cache_dir)
    folds = {s: _run_fold(root, labels, s, args) for s in args.held_out}
    report = {
        "command": "python benchmarks/loso.py " + shlex.join(sys.argv[1:] if argv is None else list(argv)),
        "data": str(root),
        "recipe": {
            k: getattr(args, k)
            for k in (
                "model",
                "epochs",
                "img_size",
                "limit_per_class",
                "max_test_per_class",
                "val_fraction",
                "lr_schedule",
                "label_smoothing",
                "augment",
                "grounding",
                "inpaint_control_p",
                "inpaint_fill",
                "inpaint_classes",
                "seed",
                "device",
                "domain",
            )
        },
        "started": started,
        "total_seconds": round(time.perf_counter() - t0, 1),
        "folds": folds,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loso.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "loso.md").write_text(_markdown(report))
    return report


if __name__ == "__main__":
    main()
