"""Compares lesion-grounded training kinds on the same split: ``benchmarks/grounding/grounding.{md,json}``.

For each ``--kinds`` entry the same recipe (model, epochs, image size, images per class, seed, so the
same train/validation split) is trained with ``brainxai.training.trainer.train``; each checkpoint is then
measured on

* the validation split of Training (accuracy, per-class recall) and, when ``--data`` has ``Testing/``,
  on all of Testing (raw: near-duplicates of Training sit in it, see the data README);
* the validation images that have a lesion mask (held out of training, though near-duplicate slices
  of the same patients may be in the training half): the share of the true class's squared
  input-gradient mass inside the mask (undilated, and dilated as in training), Grad-CAM's positive
  energy inside the mask and its pointing game (is the map's maximum in the mask);
* with ``--reliance-csv`` (a ``*-masks-dev/slices.csv``; with ``--exclude-twins-of`` the same CSV its
  slices' patients are held out of training): accuracy there and, per tumour class, the median
  in-painting drop of the annotated class's probability against in-painting the mirrored area
  (:func:`brainxai.xai_benchmark.reliance.inpaint_reliance`, the xai-benchmark's measure);
* the cost of one training step (ms per batch, the fastest of ``--time-steps`` steps on one fixed batch
  after one warm-up step: on a shared CPU the fastest is the least disturbed), against ``none``: the
  price of double back-propagation for ``rrr``.

A reduced recipe runs on a 2-core CPU in minutes per kind; the lead runs the real comparison:

    python benchmarks/grounding.py --data ../shared/data/brain-tumor-mri \\
        --masks-brisc ../shared/data/brisc-masks-dev --masks-figshare ../shared/data/figshare-masks-dev \\
        --kinds none,rrr,cam,multitask,inpaint --epochs 3 --img-size 128 --limit-per-class 300 \\
        --out benchmarks/grounding

A kind may carry a variant: ``inpaint-control`` is ``inpaint`` with ``--inpaint-control-p`` (the mirrored
area in-painted on that share of masked images, label kept), ``inpaint-control-50`` the same at 0.50.

Research use only: these are development figures on a small split, not a clinical validation.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from brainxai.constants import CLASSES
from brainxai.data.dataset import decode_samples, discover_samples
from brainxai.data.masks import load_lesion_masks, prepared_masks
from brainxai.data.preprocess import to_tensor
from brainxai.explain.base import create_explainer
from brainxai.inference import Classifier
from brainxai.training.grounding import INPAINT_KINDS, Grounding, dilate, input_gradient_outside
from brainxai.training.split import training_split
from brainxai.training.trainer import TrainConfig, train
from brainxai.xai_benchmark.data import load_box_images, read_boxes
from brainxai.xai_benchmark.reliance import inpaint_reliance, reliance_summary

logger = logging.getLogger("benchmarks.grounding")


def kind_settings(name: str, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """A ``--kinds`` entry -> (grounding kind, TrainConfig overrides).

    ``inpaint-control`` is ``inpaint`` with ``--inpaint-control-p``; ``inpaint-control-Q`` with Q percent instead
    (several control shares in one comparison); the same for ``multitask-inpaint``. In-painting kinds take
    ``--inpaint-p``, ``--inpaint-fill`` and ``--inpaint-classes``.
    """
    classes = tuple(c for c in args.inpaint_classes.split(",") if c)
    kind, control, share = name.partition("-control")
    if kind not in INPAINT_KINDS:
        return name, {}
    settings: dict[str, Any] = {"inpaint_p": args.inpaint_p, "inpaint_fill": args.inpaint_fill}
    settings["inpaint_classes"] = classes
    if control:
        settings["inpaint_control_p"] = int(share[1:]) / 100 if share else args.inpaint_control_p
    return kind, settings


def recall_table(labels: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Accuracy and per-class recall (with counts)."""
    per = {c: float((pred[labels == i] == i).mean()) if (labels == i).any() else None for i, c in enumerate(CLASSES)}
    return {"n": int(len(labels)), "accuracy": float((pred == labels).mean()), "recall": per}


def grounding_figures(
    clf: Classifier, images: np.ndarray, labels: np.ndarray, masks: np.ndarray, dilate_px: int
) -> dict[str, Any]:
    """Input-gradient and Grad-CAM mass inside the masks of held-out images (true class explained)."""
    model, cfg = clf.model, clf.preprocess
    grad_in, grad_in_dil, cam_in, pointing = [], [], [], []
    explainer = create_explainer("gradcam", model)
    for start in range(0, len(images), 16):
        x = to_tensor(images[start : start + 16], cfg).requires_grad_(True)
        y = torch.as_tensor(labels[start : start + 16])
        m = torch.as_tensor(masks[start : start + 16], dtype=torch.float32)
        logits = model(x)
        out = input_gradient_outside(x, logits, y, m, create_graph=False)
        grad_in += (1 - out).tolist()
        logits = model(x)
        out = input_gradient_outside(x, logits, y, dilate(m[:, None], dilate_px)[:, 0], create_graph=False)
        grad_in_dil += (1 - out).tolist()
        for e, mk in zip(explainer.explain(x.detach(), target=y.tolist()), masks[start : start + 16]):
            pos = np.clip(e.relevance, 0, None)
            cam_in.append(float(pos[mk].sum() / max(pos.sum(), 1e-12)))
            pointing.append(bool(mk.flat[int(np.argmax(e.relevance))]))
    explainer.close()

    def med(v: list[float]) -> float | None:
        return float(np.median(v)) if v else None

    return {
        "n": len(grad_in),
        "median_mask_area_share": med([float(mk.mean()) for mk in masks]),
        "input_gradient_inside_median": med(grad_in),
        "input_gradient_inside_dilated_median": med(grad_in_dil),
        "gradcam_energy_inside_median": med(cam_in),
        "gradcam_pointing_game": float(np.mean(pointing)) if pointing else None,
    }


def time_training_steps(config: TrainConfig, kind: str, batch_size: int, steps: int) -> dict[str, float]:
    """ms of one optimiser step of ``kind`` on one fixed batch (random images, a mask on half of them).

    Returns the median and the minimum: on a shared machine the minimum is the better estimate of the
    uncontended cost.
    """
    from brainxai.models import create_model
    from brainxai.models.registry import model_config

    torch.manual_seed(0)
    model = create_model(config.model, pretrained=False, img_size=config.img_size)
    cfg = model_config(model).preprocess
    s = cfg.img_size
    rng = np.random.default_rng(0)
    x = to_tensor(rng.integers(0, 255, (batch_size, s, s), dtype=np.uint8), cfg)
    y = torch.as_tensor(rng.integers(0, 4, batch_size))
    mask = torch.zeros(batch_size, 1, s, s)
    mask[:, :, s // 4 : s // 2, s // 4 : s // 2] = 1
    has = torch.as_tensor(np.arange(batch_size) % 2 == 0, dtype=torch.float32)
    inpainted = has if kind in INPAINT_KINDS else torch.zeros(batch_size)
    grounding = Grounding(kind, weight=1.0, dilate_px=config.grounding_dilate_px)
    grounding.attach(model, s, torch.device("cpu"))
    opt = torch.optim.Adam(list(model.parameters()) + grounding.parameters(), lr=1e-4)
    model.train()
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        loss, *_ = grounding.batch_loss(model, [x, y, mask, has, inpainted], nn.CrossEntropyLoss(), amp=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step warms up allocators and kernels
            times.append((time.perf_counter() - t0) * 1000)
    return {"median": statistics.median(times), "min": min(times)}


def held_out(args: argparse.Namespace, clf: Classifier) -> dict[str, Any]:
    """The validation split (as the runs used it) with its masks, rebuilt from the recipe."""
    split = training_split(
        args.data,
        clf.preprocess,
        val_fraction=args.val_fraction,
        seed=args.seed,
        limit_per_class=args.limit_per_class,
        exclude_twins_of=args.exclude_twins_of,
        cache_dir=args.cache_dir,
        progress=False,
    )
    found = load_lesion_masks(split.folder, args.masks_brisc, args.masks_figshare, cache_dir=args.cache_dir)
    val_samples = [split.samples[i] for i in split.val_idx]
    masks, has = prepared_masks(val_samples, split.folder, found.masks, clf.preprocess)
    return {"images": split.images[split.val_idx], "labels": split.labels[split.val_idx], "masks": masks, "has": has}


def reliance_figures(args: argparse.Namespace, clf: Classifier) -> dict[str, Any]:
    """Accuracy on all of ``--reliance-csv``'s slices and, per class, the median in-painting drops."""
    records = read_boxes(args.reliance_csv)
    data = load_box_images(records, clf)
    labels = np.array([CLASSES.index(r.label) for r in records])
    pred = clf.predict_proba_prepared(data.prepared).argmax(1)
    drops = inpaint_reliance(data, clf, labels, args.dilate_px)  # raises without masks
    rows = [info | {"label": CLASSES[label]} for info, label in zip(drops, labels)]
    return {"csv": args.reliance_csv, "accuracy": recall_table(labels, pred), "reliance": reliance_summary(rows)}


def evaluate_run(args: argparse.Namespace, kind: str, checkpoint: Path, val: dict[str, Any]) -> dict[str, Any]:
    clf = Classifier.load(checkpoint, device="cpu")
    out: dict[str, Any] = {"checkpoint": str(checkpoint)}
    pred = clf.predict_proba_prepared(val["images"]).argmax(1)
    out["validation"] = recall_table(val["labels"], pred)
    testing = Path(args.data) / "Testing"
    if testing.is_dir() and not args.no_testing:
        decoded = decode_samples(discover_samples(testing), clf.preprocess, cache_dir=args.cache_dir, progress=False)
        out["testing_raw"] = recall_table(decoded.labels, clf.predict_proba_prepared(decoded.images).argmax(1))
    h = val["has"]
    out["grounding"] = grounding_figures(clf, val["images"][h], val["labels"][h], val["masks"][h], args.dilate_px)
    if args.reliance_csv:
        out["held_out_patients"] = reliance_figures(args, clf)
    meta = clf.checkpoint.meta
    out["history"] = meta.history
    out["masks"] = meta.recipe.get("data_info", {}).get("masks")
    return out


def write_report(out: Path, results: dict[str, Any], command: str) -> None:
    (out / "grounding.json").write_text(json.dumps(results, indent=2))
    lines = [
        "# Lesion-grounded training: kinds compared on one split",
        "",
        "Research use only. Generated by:",
        "",
        f"    {command}",
        "",
        f"Recipe: {json.dumps(results['recipe'])}",
        "",
        "Settings per kind (a kind's name may carry its control share): "
        + "; ".join(f"{k}: {json.dumps(r.get('settings', {}))}" for k, r in results["runs"].items()),
        "",
        "Accuracy/recall: on the validation split of Training (and all of Testing, raw, when present). Grounding: on"
        " the validation images with a lesion mask; input-gradient = share of the true class's squared input-gradient"
        " mass inside the mask (dilated: by the training dilation); Grad-CAM = positive energy inside the mask;"
        " pointing = share of maps whose maximum is in the mask. ms/step: fastest of the timed training steps on one"
        " batch (CPU, this process).",
        "",
        "| kind | val acc | val recall gl/me/no/pi | test acc (raw) | test recall gl/me/no/pi | grad in "
        "| grad in (dil.) | CAM in | pointing | ms/step |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, r in results["runs"].items():
        v, t, g = r["validation"], r.get("testing_raw"), r["grounding"]

        def rec(x: dict[str, Any] | None) -> str:
            return "/".join(f"{x['recall'][c]:.3f}" for c in CLASSES) if x else "-"

        def f(x: float | None) -> str:
            return "-" if x is None else f"{x:.3f}"

        lines.append(
            f"| {kind} | {v['accuracy']:.4f} | {rec(v)} | {f(t['accuracy']) if t else '-'} | {rec(t)} "
            f"| {f(g['input_gradient_inside_median'])} | {f(g['input_gradient_inside_dilated_median'])} "
            f"| {f(g['gradcam_energy_inside_median'])} | {f(g['gradcam_pointing_game'])} "
            f"| {r.get('ms_per_step', 0):.0f} |"
        )
    n = next(iter(results["runs"].values()))["grounding"]
    lines += [
        "",
        f"Held-out masked validation images: {n['n']} (median mask area {n['median_mask_area_share']:.3f} of the "
        "image).",
    ]
    lines += reliance_lines(results)
    (out / "grounding.md").write_text("\n".join(lines) + "\n")


def reliance_lines(results: dict[str, Any]) -> list[str]:
    """The held-out patients' table: accuracy, glioma recall and the in-painting drops per tumour class."""
    runs = {k: r["held_out_patients"] for k, r in results["runs"].items() if "held_out_patients" in r}
    if not runs:
        return []
    first = next(iter(runs.values()))
    tumours = [c for c in CLASSES if c in first["reliance"]]

    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    lines = [
        "",
        f"## Held-out slices: `{first['csv']}`",
        "",
        "Accuracy and recall on its slices; per class the median drop of the annotated class's probability when"
        " the dilated lesion is in-painted (xai-benchmark's measure) / when the mirrored area is (the control)."
        f" Excluded from training as pHash twins: `{results['recipe'].get('exclude_twins_of')}`.",
        "",
        "| kind | n | accuracy | recall "
        + "/".join(c[:2] for c in tumours)
        + " | "
        + " | ".join(f"{c} drop / mirrored" for c in tumours)
        + " |",
        "|---|---|---|---|" + "---|" * len(tumours),
    ]
    for kind, r in runs.items():
        acc = r["accuracy"]
        recall = "/".join(f(acc["recall"][c]) for c in tumours)
        drops = " | ".join(
            f"{f(r['reliance'][c]['median_drop'])} / {f(r['reliance'][c]['mirrored_median_drop'])}" for c in tumours
        )
        lines.append(f"| {kind} | {acc['n']} | {acc['accuracy']:.4f} | {recall} | {drops} |")
    return lines


def _trained(config: TrainConfig, reuse: bool) -> tuple[Path, float | None]:
    """The kind's checkpoint, trained now, or with ``reuse`` read back when a finished one with this recipe exists."""
    best = Path(config.out) / "best.safetensors"
    if reuse and best.is_file():
        recipe = json.loads(best.with_suffix(".json").read_text()).get("recipe", {})
        wanted = config.to_dict()
        keys = ("model", "epochs", "img_size", "limit_per_class", "seed", "grounding", "grounding_weight", "augment")
        keys += ("inpaint_p", "inpaint_control_p", "inpaint_fill", "inpaint_classes", "exclude_twins_of")
        defaults = {  # absent from old recipes
            "inpaint_p": 0.25,
            "inpaint_control_p": 0.0,
            "inpaint_fill": "telea",
            "inpaint_classes": [],
            "exclude_twins_of": None,
        }
        if all(recipe.get(k, defaults.get(k)) == wanted.get(k) for k in keys):
            logger.info("%s: reusing %s (same recipe)", config.grounding, best)
            return best, None
        logger.info("%s: %s has another recipe; training again", config.grounding, best)
    t0 = time.perf_counter()
    result = train(config)
    return Path(result.checkpoint), round(time.perf_counter() - t0, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--masks-brisc")
    ap.add_argument("--masks-figshare")
    ap.add_argument("--kinds", default="none,rrr,cam,multitask,inpaint")
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--img-size", type=int, default=128)
    ap.add_argument("--limit-per-class", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--augment", default="default")
    ap.add_argument("--grounding-weight", type=float, default=1.0)
    ap.add_argument("--dilate-px", type=int, default=5)
    ap.add_argument("--inpaint-p", type=float, default=0.25, help="inpaint kinds: share of masked images in-painted")
    ap.add_argument("--inpaint-control-p", type=float, default=0.25, help="the inpaint-control variant's share")
    ap.add_argument("--inpaint-fill", default="telea", help="inpaint kinds: telea | transplant")
    ap.add_argument("--inpaint-classes", default="", help="inpaint kinds: comma-separated classes (default: all)")
    ap.add_argument("--exclude-twins-of", help="keep these images (a folder or CSV) and their twins out of training")
    ap.add_argument("--reliance-csv", help="a *-masks-dev/slices.csv: accuracy and in-painting drops there")
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--time-steps", type=int, default=5, help="training steps timed per kind (0: skip)")
    ap.add_argument("--no-testing", action="store_true", help="skip the evaluation on Testing/")
    ap.add_argument("--cache-dir", default=".cache/brainxai")
    ap.add_argument("--out", default="benchmarks/grounding")
    ap.add_argument("--reuse", action="store_true", help="evaluate finished checkpoints of the same recipe again")
    ap.add_argument("--runs", default="runs/grounding", help="where the checkpoints go (not committed)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recipe = {
        k: getattr(args, k)
        for k in (
            "model",
            "epochs",
            "img_size",
            "limit_per_class",
            "batch_size",
            "lr",
            "augment",
            "grounding_weight",
            "dilate_px",
            "inpaint_p",
            "inpaint_control_p",
            "inpaint_fill",
            "inpaint_classes",
            "exclude_twins_of",
            "val_fraction",
            "seed",
        )
    }
    command = "python benchmarks/grounding.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    results: dict[str, Any] = {"recipe": recipe, "runs": {}, "command": command}
    val: dict[str, Any] | None = None
    for kind in args.kinds.split(","):
        grounding, overrides = kind_settings(kind, args)
        config = TrainConfig(
            data=args.data,
            model=args.model,
            out=str(Path(args.runs) / kind),
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            img_size=args.img_size,
            augment=args.augment,
            val_fraction=args.val_fraction,
            seed=args.seed,
            device=args.device,
            cache_dir=args.cache_dir,
            limit_per_class=args.limit_per_class,
            lr_schedule="cosine",
            grounding=grounding,
            grounding_weight=args.grounding_weight,
            grounding_dilate_px=args.dilate_px,
            masks_brisc=args.masks_brisc,
            masks_figshare=args.masks_figshare,
            exclude_twins_of=args.exclude_twins_of,
            progress=False,
            **overrides,
        )
        checkpoint, train_s = _trained(config, args.reuse)
        if val is None:
            val = held_out(args, Classifier.load(checkpoint, device="cpu"))
        run = evaluate_run(args, kind, checkpoint, val)
        run["train_seconds"] = train_s
        run["settings"] = {"grounding": grounding, **overrides}  # what the kind's name stood for
        if args.time_steps:
            run["ms_per_step"] = time_training_steps(config, grounding, args.batch_size, args.time_steps)["min"]
        results["runs"][kind] = run
        logger.info("%s: val acc %.4f, grounding %s", kind, run["validation"]["accuracy"], run["grounding"])
        write_report(out, results, command)  # after each kind: a long run stopped early keeps what it measured
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
