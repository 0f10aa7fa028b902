"""Patient-wise cross-validation of the tumour segmenter, and the input-size table.

For each fold: ``brainxai train-seg --folds K --fold i`` (validation = the patients of fold i), then
``brainxai evaluate-seg --only-validation`` on those patients (Dice, IoU, HD95 on each slice's original
512-px grid). The per-slice rows of all folds are pooled (every slice is evaluated once, by the model that
did not see its patient) into ``cv.json`` and ``report.md``, with 95% intervals from a bootstrap over
patients. ``--sweep RUN ...`` adds the input-size table: the short-run validation Dice from each run's
history and the segmenter's time per slice at that size, measured here.

``--extra-data DIR`` (repeatable, with ``--extra-labels``) adds folders to training and evaluation, e.g. the
BRISC no-tumour slices: their groups are dealt over the folds apart from the patients (the patient folds stay
as without them), and each fold's report adds the false-positive rate on its validation no-tumour slices (a
segmentation the pipeline's disagreement rule calls a sizeable lesion). ``--baseline-runs DIR`` evaluates
another CV's fold checkpoints (``DIR/fold{i}``) on the same validation patients and groups, for a comparison.

    python benchmarks/segmentation/cv.py --data ../shared/data/figshare-masks-dev --folds 2 --epochs 4 \
        --runs runs/seg/cv --out benchmarks/segmentation -- --amp bf16 --threads 1
    python benchmarks/segmentation/cv.py --data ../shared/data/figshare-masks-dev --extra-data \
        ../shared/data/brisc-masks-dev --extra-labels notumor --folds 2 --epochs 6 --img-size 160 \
        --runs runs/seg/cvneg --baseline-runs runs/seg/cv6 --out benchmarks/segmentation -- --amp bf16 --threads 1

``--skip-train`` only evaluates and aggregates existing runs; ``--skip-eval`` only aggregates.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainxai.analysis.lesion import MIN_LESION_AREA_MODEL_PX
from brainxai.constants import NO_TUMOUR
from brainxai.evaluation.segmentation import patient_bootstrap, summarise
from brainxai.util.files import atomic_write_text

BRAINXAI = str(Path(sys.executable).with_name("brainxai"))


def _run(cmd: list[str]) -> None:
    print("+", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def _rows(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="") as fh:
        rows: list[dict[str, Any]] = list(csv.DictReader(fh))
    for r in rows:
        for key in ("dice", "iou", "hd95_px", "area_rel_error", "area_model_grid_px"):
            if key in r:
                r[key] = float(r[key])
        if "sizeable_lesion" in r:
            r["sizeable_lesion"] = r["sizeable_lesion"] == "True"
    return rows


def time_sizes(sizes: list[int], threads: int, repeats: int = 20) -> dict[int, float]:
    """Median ms of the network alone on one slice per input size (untrained: the weights do not change the time)."""
    from brainxai.models import create_model

    torch.set_num_threads(threads)
    out = {}
    for s in sizes:
        model = create_model("unet-lite0", pretrained=False, num_classes=1, img_size=s).eval()
        x = torch.randn(1, 3, s, s)
        times = []
        with torch.inference_mode():
            for i in range(repeats + 3):
                t = time.perf_counter()
                model(x)
                if i >= 3:
                    times.append((time.perf_counter() - t) * 1000)
        out[s] = float(np.median(times))
    return out


def sweep_table(runs: list[Path], threads: int) -> list[dict[str, Any]]:
    """One row per sweep run: input size, epochs, training slices, best validation Dice (model grid), ms/slice."""
    rows = []
    for run in runs:
        meta = json.loads((run / "best.json").read_text())
        history = json.loads((run / "history.json").read_text())
        rows.append(
            {
                "run": str(run),
                "img_size": meta["preprocess"]["img_size"],
                "epochs": len(history),
                "train_slices": meta["split"]["train_slices"],
                "val_slices": meta["split"]["val_slices"],
                "val_dice_by_epoch": [round(h["val_dice"], 4) for h in history],
                "train_s_per_epoch": [h["seconds"] for h in history],
            }
        )
    timing = time_sizes(sorted({r["img_size"] for r in rows} | {224, 256}), threads)
    for r in rows:
        r["ms_per_slice"] = timing[r["img_size"]]
    rows += [{"img_size": s, "ms_per_slice": ms, "untrained": True} for s, ms in timing.items() if s in (224, 256)]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--img-size", type=int, default=None)
    ap.add_argument("--runs", type=Path, default=Path("runs/seg/cv"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/segmentation"))
    ap.add_argument("--sweep", type=Path, nargs="*", default=[], help="train-seg runs of the input-size sweep")
    # One thread: on a loaded 2-core machine two OpenMP threads spin against each other (seconds per call).
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the ms/slice timing")
    ap.add_argument("--extra-data", type=Path, action="append", default=[], help="train-seg --extra-data")
    ap.add_argument("--extra-labels", default=None, help="train-seg --extra-labels")
    ap.add_argument("--baseline-runs", type=Path, default=None, help="another CV's runs, compared on the same folds")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("extra", nargs="*", help="after --: more train-seg options")
    args = ap.parse_args()
    command = shlex.join(["python", *sys.argv])
    extra = [x for d in args.extra_data for x in ("--extra-data", str(d))]
    extra += ["--extra-labels", args.extra_labels] if args.extra_labels else []
    for i in range(args.folds):
        run = args.runs / f"fold{i}"
        if not args.skip_train:
            size = ["--img-size", str(args.img_size)] if args.img_size else []
            _run(
                [
                    BRAINXAI,
                    "train-seg",
                    "--data",
                    str(args.data),
                    "--out",
                    str(run),
                    "--folds",
                    str(args.folds),
                    "--fold",
                    str(i),
                    "--epochs",
                    str(args.epochs),
                    *size,
                    *extra,
                    *args.extra,
                ]
            )
        if not args.skip_eval:
            _evaluate(args.data, run / "best.safetensors", run / "eval", ["--only-validation"], extra)
            if args.baseline_runs is not None:
                baseline = args.baseline_runs / f"fold{i}" / "best.safetensors"
                same_slices = ["--validation-of", str(run / "best.json")]
                _evaluate(args.data, baseline, run / "eval-baseline", same_slices, extra)
    write_report(args, command)


def _evaluate(data: Path, checkpoint: Path, out: Path, which: list[str], extra: list[str]) -> None:
    """``brainxai evaluate-seg`` of ``checkpoint`` on the validation slices that ``which`` selects."""
    _run([BRAINXAI, "evaluate-seg", "--data", str(data), "--checkpoint", str(checkpoint), "--out", str(out)]
         + [*which, "--threads", "1", *extra])  # fmt: skip


def write_report(args: argparse.Namespace, command: str) -> None:
    folds = []
    pooled: list[dict[str, Any]] = []
    for i in range(args.folds):
        run = args.runs / f"fold{i}"
        seg = json.loads((run / "eval" / "seg.json").read_text())
        meta = json.loads((run / "best.json").read_text())
        rows = _rows(run / "eval" / "per_slice.csv")
        pooled += rows
        seg.pop("definitions", None)
        folds.append(
            {
                "fold": i,
                "seg": seg,
                "recipe": meta["recipe"],
                # every epoch run (best.json holds the history up to the kept epoch)
                "history": json.loads((run / "history.json").read_text())
                if (run / "history.json").is_file()
                else meta["history"],
                "best_epoch": meta["metrics"].get("epoch"),
            }
        )
    cv = _pooled(pooled)
    result = {"command": command, "folds": folds, "pooled": cv}
    if args.baseline_runs is not None:
        base = [r for i in range(args.folds) for r in _rows(args.runs / f"fold{i}" / "eval-baseline" / "per_slice.csv")]
        recipe = json.loads((args.baseline_runs / "fold0" / "best.json").read_text()).get("recipe") or {}
        result["baseline"] = {"runs": str(args.baseline_runs), "pooled": _pooled(base), "recipe": recipe}
    if args.sweep:
        result["sweep"] = sweep_table(args.sweep, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "cv.json", json.dumps(result, indent=2))
    atomic_write_text(args.out / "report.md", report_markdown(result))


def _pooled(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Summary of the pooled per-slice rows of all folds (tumour figures over tumour slices; false positives)."""
    patients = len({r["patient"] for r in rows if r["label"] != NO_TUMOUR})
    return summarise(rows) | {"patients": patients, "ci95": patient_bootstrap(rows)}


def _num(x: float | None) -> str:
    return "undefined" if x is None else f"{x:.1f}"


def _ci(ci: dict[str, list[float]], key: str) -> str:
    lo, hi = ci[key]
    return f"{lo:.3f}-{hi:.3f}"


def _recipe_line(recipe: dict[str, Any]) -> str:
    extra = "".join(
        f" Extra training data: `{x['folder']}` ({x['slices']} slices, labels {', '.join(x['labels'] or ['all'])}, "
        f"{x['groups']} groups, fingerprint {x['fingerprint']}), groups dealt over the folds apart from the patients."
        for x in recipe.get("extra_data") or []
    )
    return (
        f"Recipe of every fold: `{recipe['model']}`, input {recipe['img_size']} px, {recipe['epochs']} epochs "
        f"(early stopping patience {recipe['patience']}, epochs selected on a seeded {recipe.get('val_limit')} "
        f"validation slices), batch {recipe['batch_size']}, AdamW lr {recipe['lr']}, "
        f"soft Dice + BCE, augmentation `{recipe['augment']}` (hflip {recipe['hflip']}), "
        f"amp {recipe.get('amp', 'off')}, seed {recipe['seed']}, {recipe['folds']} folds by patient.{extra}"
    )


def _fp(cv: dict[str, Any]) -> str:
    if cv.get("false_positive_rate") is None:
        return "-"
    return f"{cv['false_positive_rate']:.3f} ({_ci(cv['ci95'], 'false_positive_rate')})"


def _comparison_lines(result: dict[str, Any]) -> list[str]:
    base = result["baseline"]
    recipe = base.get("recipe") or {}
    if recipe:
        extra = ", ".join(f"`{x['folder']}` ({x['slices']} slices)" for x in recipe.get("extra_data") or [])
        what = f"{recipe.get('epochs')} epochs, {'extra training data ' + extra if extra else 'no extra training data'}"
    else:  # runs recorded before the recipe named its extra data: the figshare slices alone
        what = "the figshare slices alone"
    lines = [
        "",
        "## Against the baseline runs",
        "",
        f"`{base['runs']}/fold{{0,1}}` ({what}), evaluated here on the same validation patients and the same "
        "validation no-tumour slices as the folds above. False-positive rate: share of no-tumour slices whose "
        f"segmentation is at least {MIN_LESION_AREA_MODEL_PX:g} px² on the classifier's input grid (the pipeline's "
        "disagreement rule), 95% CI from a bootstrap over the slices (each its own group).",
        "",
        "| model | tumour slices | mean Dice (95% CI) | glioma | meningioma | pituitary | no-tumour slices | "
        "false-positive rate (95% CI) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, cv in (("baseline", base["pooled"]), ("this CV", result["pooled"])):
        pc = cv["per_class"]
        per = " | ".join(f"{pc[c]['dice_mean']:.3f}" if c in pc else "-" for c in ("glioma", "meningioma", "pituitary"))
        lines.append(
            f"| {name} | {cv['n']} | {cv['dice_mean']:.3f} ({_ci(cv['ci95'], 'dice_mean')}) | {per} | "
            f"{cv.get('n_no_tumour', 0)} | {_fp(cv)} |"
        )
    return lines


def report_markdown(result: dict[str, Any]) -> str:
    cv = result["pooled"]
    recipe = result["folds"][0]["recipe"]
    negatives = cv.get("n_no_tumour") or 0
    lines = [
        "# Tumour segmentation: patient-wise cross-validation on figshare-masks-dev",
        "",
        "Research use only, not a diagnostic device.",
        "",
        f"Command: `{result['command']}`",
        "",
        _recipe_line(recipe),
        "",
        f"Pooled over the {len(result['folds'])} validation folds: {cv['n']} tumour slices of {cv['patients']} "
        "patients, each evaluated once by the model that never saw its patient; metrics on the original 512-px grid; "
        "95% intervals from a bootstrap over patients.",
        "",
        "| figure | value | 95% CI |",
        "|---|---|---|",
        f"| mean Dice | {cv['dice_mean']:.3f} | {_ci(cv['ci95'], 'dice_mean')} |",
        f"| median Dice | {cv['dice_median']:.3f} | |",
        f"| mean IoU | {cv['iou_mean']:.3f} | {_ci(cv['ci95'], 'iou_mean')} |",
        f"| median HD95 (px) | {_num(cv['hd95_px_median'])} | |",
        f"| detected (Dice >= 0.5) | {cv['detected']:.3f} | {_ci(cv['ci95'], 'detected')} |",
        f"| median relative area error | {cv['area_rel_error_median']:.3f} "
        f"| {_ci(cv['ci95'], 'area_rel_error_median')} |",
    ]
    if negatives:
        lines.append(f"| false-positive rate on {negatives} no-tumour slices | {_fp(cv)} | |")
    lines += ["", "| class | slices | mean Dice | 95% CI | detected |", "|---|---|---|---|---|"]
    for label, pc in cv["per_class"].items():
        if label != NO_TUMOUR:
            lines.append(
                f"| {label} | {pc['n']} | {pc['dice_mean']:.3f} | {_ci(cv['ci95'], f'dice_mean[{label}]')} | "
                f"{pc['detected']:.3f} |"
            )
    lines += [
        "",
        "Per fold (validation patients of that fold):",
        "",
        "| fold | slices | patients | mean Dice | glioma | meningioma | pituitary | no-tumour slices | FP rate | "
        "epochs run | kept epoch |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in result["folds"]:
        s, pc = f["seg"], f["seg"]["per_class"]
        per = " | ".join(f"{pc[c]['dice_mean']:.3f}" if c in pc else "-" for c in ("glioma", "meningioma", "pituitary"))
        fp = "-" if s.get("false_positive_rate") is None else f"{s['false_positive_rate']:.3f}"
        lines.append(
            f"| {f['fold']} | {s['n']} | {s['patients']} | {s['dice_mean']:.3f} | {per} | {s.get('n_no_tumour', 0)} | "
            f"{fp} | {len(f['history'])} | {f['best_epoch']} |"
        )
    if "baseline" in result:
        lines += _comparison_lines(result)
    if "sweep" in result:
        lines += _sweep_lines(result["sweep"])
    return "\n".join(lines) + "\n"


def _sweep_lines(sweep: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## Input size",
        "",
        "Short runs, identical but for the input size: fold 0 of the 2-fold split, a seeded random 400 of its "
        "training slices, a 3-epoch cosine schedule, validation Dice on the model grid over all of that fold's "
        "validation slices (a few epochs only: a ranking, not the attainable Dice). A run with fewer epochs listed "
        "was stopped early for lack of CPU; compare the sizes at the epochs both reached (same schedule up to "
        "there). ms/slice: the network alone on one slice, "
        "median of 20 calls on one torch thread of this 2-core CPU, shared with other jobs (an upper figure).",
        "",
        "| input (px) | val Dice by epoch | train s/epoch | network ms/slice |",
        "|---|---|---|---|",
    ]
    for r in sweep:
        if r.get("untrained"):
            lines.append(f"| {r['img_size']} | not trained | | {r['ms_per_slice']:.1f} |")
        else:
            lines.append(
                f"| {r['img_size']} | {', '.join(f'{d:.3f}' for d in r['val_dice_by_epoch'])} | "
                f"{', '.join(f'{s:.0f}' for s in r['train_s_per_epoch'])} | {r['ms_per_slice']:.1f} |"
            )
    return lines


if __name__ == "__main__":
    main()
