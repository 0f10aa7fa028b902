"""``brainxai train-seg`` and ``brainxai evaluate-seg``: the tumour segmenter."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from brainxai.cli.app import app, fail, invocation

_HELP = {
    "data": "Folder with slices.csv (file,mask,label,patient,...) and the files it names.",
    "folds": "Cross-validation: split the patients into K folds (with --fold: validate on that one).",
    "val_fraction": "Share of patients held out for validation without --folds; 0 trains on all (last epoch kept).",
    "augment": "Joint image/mask augmentation preset: none | default | mr | mr-histogram.",
    "window": "Intensity window of every input, at training and inference (recorded in the checkpoint): percentile.",
    "threads": "Torch CPU threads (default: torch's choice).",
    "only_validation": "Evaluate only the checkpoint's validation patients (recorded in its JSON): a CV fold.",
    "extra_data": "Another folder in the same layout (patient column optional: without it each slice is its own "
    "group), e.g. no-tumour slices with empty masks; repeatable. Its groups are split apart from --data's patients.",
    "extra_labels": "Keep only these labels of the --extra-data folders (comma-separated, e.g. notumor).",
    "validation_of": "Evaluate only the validation patients recorded by this checkpoint (another run's fold).",
}


def _labels(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def _threads(threads: int | None) -> None:
    if threads:
        import torch

        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        torch.set_num_threads(threads)


@app.command("train-seg")
def train_seg(
    data: Annotated[Path, typer.Option(help=_HELP["data"])],
    out: Annotated[Path, typer.Option(help="Output folder (best.safetensors/json, last.pt, history.json).")] = Path(
        "runs/seg"
    ),
    extra_data: Annotated[list[Path] | None, typer.Option(help=_HELP["extra_data"])] = None,
    extra_labels: Annotated[str | None, typer.Option(help=_HELP["extra_labels"])] = None,
    model: Annotated[str, typer.Option(help="Registered segmentation model.")] = "unet-lite0",
    img_size: Annotated[int | None, typer.Option(help="Input side; default: the model's.")] = None,
    epochs: Annotated[int, typer.Option()] = 20,
    batch_size: Annotated[int, typer.Option()] = 8,
    lr: Annotated[float, typer.Option()] = 1e-3,
    patience: Annotated[int, typer.Option(help="Early stopping: epochs without a better validation Dice.")] = 5,
    val_fraction: Annotated[float, typer.Option(help=_HELP["val_fraction"])] = 0.15,
    folds: Annotated[int | None, typer.Option(help=_HELP["folds"])] = None,
    fold: Annotated[int | None, typer.Option(help="Validation fold (0..K-1) with --folds.")] = None,
    augment: Annotated[str, typer.Option(help=_HELP["augment"])] = "default",
    window: Annotated[str | None, typer.Option(help=_HELP["window"])] = None,
    hflip: Annotated[bool, typer.Option(help="Left-right flips in augmentation.")] = True,
    amp: Annotated[str, typer.Option(help="off | bf16 (bfloat16 autocast; faster on CPUs with avx512_bf16).")] = "off",
    threshold: Annotated[float, typer.Option(help="Probability threshold of the mask.")] = 0.5,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt.")] = False,
    limit: Annotated[int | None, typer.Option(help="Use a seeded random N of the training slices.")] = None,
    val_limit: Annotated[int | None, typer.Option(help="Select epochs on a seeded random N validation slices.")] = None,
    threads: Annotated[int | None, typer.Option(help=_HELP["threads"])] = None,
    cache_dir: Annotated[Path, typer.Option(help="Where prepared slices are cached.")] = Path(".cache/brainxai"),
) -> None:
    """Train the tumour segmenter; writes OUT/best.safetensors + best.json, last.pt and history.json."""
    from brainxai.data.seg_dataset import SegDataError
    from brainxai.training.segmentation import SegTrainConfig, train_segmenter

    _threads(threads)
    try:
        config = SegTrainConfig(
            data=str(data), extra_data=[str(p) for p in extra_data or []], extra_labels=_labels(extra_labels),
            out=str(out), model=model, img_size=img_size, epochs=epochs, batch_size=batch_size,
            lr=lr, patience=patience, val_fraction=val_fraction, folds=folds, fold=fold, augment=augment,
            window=window, hflip=hflip, amp=amp, threshold=threshold, seed=seed, device=device, limit=limit,
            val_limit=val_limit, cache_dir=str(cache_dir),
        )  # fmt: skip
        result = train_segmenter(config, resume=resume)
    except (SegDataError, ValueError, KeyError, FileNotFoundError) as exc:
        fail(str(exc))
        return
    dice = "n/a (no validation)" if result.best_val_dice is None else f"{result.best_val_dice:.4f}"
    typer.echo(f"epoch {result.best_epoch} kept (validation Dice on the model grid {dice}); {result.checkpoint}")


@app.command("evaluate-seg")
def evaluate_seg(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help=_HELP["data"])],
    checkpoint: Annotated[Path | None, typer.Option(help="Segmentation checkpoint; default: the shipped one.")] = None,
    out: Annotated[Path, typer.Option(help="Output folder for seg.json, figure and report.md.")] = Path(
        "runs/seg-eval"
    ),
    only_validation: Annotated[bool, typer.Option("--only-validation", help=_HELP["only_validation"])] = False,
    validation_of: Annotated[Path | None, typer.Option(help=_HELP["validation_of"])] = None,
    extra_data: Annotated[list[Path] | None, typer.Option(help=_HELP["extra_data"])] = None,
    extra_labels: Annotated[str | None, typer.Option(help=_HELP["extra_labels"])] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples (over patients) for 95% intervals.")] = 1000,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    threads: Annotated[int | None, typer.Option(help=_HELP["threads"])] = None,
) -> None:
    """Dice, IoU, HD95 of the segmenter against a folder's expert masks; writes seg.json, a figure, report.md."""
    from brainxai.data.seg_dataset import SegDataError
    from brainxai.evaluation.segmentation import evaluate_segmenter

    _threads(threads)
    try:
        result = evaluate_segmenter(
            data, out, checkpoint=checkpoint, only_validation=only_validation, n_boot=n_boot, device=device,
            command=invocation(ctx), validation_of=validation_of, extra_data=extra_data or [],
            extra_labels=_labels(extra_labels),
        )  # fmt: skip
    except (SegDataError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
        return
    parts = []
    if result["n"]:
        ci = result["ci95"]["dice_mean"]
        parts.append(
            f"n={result['n']} tumour slices, {result['patients']} patients: Dice {result['dice_mean']:.3f} "
            f"(95% CI {ci[0]:.3f}-{ci[1]:.3f}), IoU {result['iou_mean']:.3f}, detected {result['detected']:.3f}"
        )
    if result["false_positive_rate"] is not None:
        lo, hi = result["ci95"]["false_positive_rate"]
        parts.append(
            f"{result['n_no_tumour']} no-tumour slices: false-positive rate {result['false_positive_rate']:.3f} "
            f"(95% CI {lo:.3f}-{hi:.3f})"
        )
    typer.echo("; ".join(parts) + f"; {out}")
