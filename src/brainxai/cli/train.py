"""``brainxai train``."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from brainxai.cli.app import app, fail

if TYPE_CHECKING:
    from brainxai.training.trainer import TrainConfig


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(t) for t in text.split(",") if t.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.split(",") if t.strip())


#: Help texts too long to sit on their option's line.
_HELP: dict[str, str] = {
    "hflip": "Add horizontal flips to augmentation (off: keeps hemisphere cues).",
    "schedule": "single | progressive (head, then + last stage, then + the one before).",
    "val_fraction": (
        "Stratified validation share taken from Training; 0 trains on all of it (a refit: no selection, the "
        "last epoch is kept, cosine schedule only)."
    ),
    "pretrained": "Start from ImageNet weights when available.",
    "limit_per_class": "Use at most N training images per class (smoke tests).",
    "exclude_twins_of": (
        "Leave out training images that are pHash twins of these (a folder of images, or a CSV with a 'file' "
        "column such as a box CSV), to evaluate on them later."
    ),
    "lr_schedule": "plateau (halve on a stalled val loss) | cosine (anneal to 1 percent of the rate over each phase).",
    "amp": "auto (bfloat16 autocast on CUDA, off on CPU) | bf16 (also on a CPU: faster on Xeons with AMX) | off.",
    "workers": "DataLoader worker processes for augmentation (0: in the main process).",
    "time_budget": (
        "Stop after this many minutes of this sitting, mid-epoch if need be; the cut epoch is validated and "
        "can become best, but is not resumable."
    ),
    "augment": (
        "Training augmentation preset: none | default (small affine, brightness/contrast) | mr (MR-specific: random "
        "crop/scale, bias field, gamma, ghosting, motion, blur, resolution loss, Rician noise, JPEG re-encoding) | "
        "mr-histogram (mr plus a random monotone remapping of the head's grey levels)."
    ),
    "grounding": (
        "Lesion-grounded training: none | rrr (penalise input-gradient mass outside the dilated lesion mask) | cam "
        "(the same on the Grad-CAM map; cheap) | "
        "multitask (a mask head on the encoder, discarded at inference) | inpaint (in-paint the lesion, target no "
        "tumour) | multitask-inpaint (both). Needs --masks-brisc and/or --masks-figshare."
    ),
    "grounding_dilate_px": "Mask dilation in model-input pixels (rrr: margin counted as lesion; inpaint: area filled).",
    "inpaint_control_p": "--grounding inpaint: share of masked images whose mirrored area (less the lesion) is "
    "in-painted instead, keeping their label, so the fill is no cue for 'no tumour'.",
    "inpaint_fill": "--grounding inpaint: telea (cv2's smooth fill) | transplant (the slice's own tissue from a "
    "reflection that misses the lesion).",
    "inpaint_class": "--grounding inpaint: in-paint only this class's images (repeatable; default: every class).",
    "extra_data": "A class-per-folder folder of more training images (repeatable), added to the training half "
    "only; images that are pHash twins of a validation image or of --exclude-twins-of are left out.",
    "init_from": "Start from this checkpoint's weights (fine-tuning; same model and preprocessing) instead of "
    "ImageNet's; recorded in the new checkpoint.",
    "masks_brisc": "brisc-masks-dev folder: expert masks of the Kaggle Training images it names as twins.",
    "masks_figshare": "figshare-masks-dev folder: expert masks of the Kaggle images that are mirrored figshare slices.",
    "stop_after": (
        "Stop after this many epochs; the learning-rate schedule still spans --epochs (to refit at the epoch "
        "chosen on a split)."
    ),
}


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="Dataset root (with Training/) or the training folder itself.")],
    model: Annotated[str, typer.Option(help="Registered model name (see `brainxai models`).")] = "efficientnet-lite0",
    epochs: Annotated[int, typer.Option(help="Epochs for --schedule single.")] = 30,
    batch_size: Annotated[int, typer.Option()] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate for --schedule single.")] = 1e-3,
    img_size: Annotated[int | None, typer.Option(help="Input side; default: the model's.")] = None,
    augment: Annotated[str, typer.Option(help=_HELP["augment"])] = "default",
    no_augment: Annotated[bool, typer.Option("--no-augment", help="Same as --augment none.", hidden=True)] = False,
    hflip: Annotated[bool, typer.Option(help=_HELP["hflip"])] = False,
    schedule: Annotated[str, typer.Option(help=_HELP["schedule"])] = "single",
    phase_epochs: Annotated[str, typer.Option(help="Progressive: epochs per phase, comma-separated.")] = "15,20,15",
    phase_lrs: Annotated[str, typer.Option(help="Progressive: learning rate per phase.")] = "1e-3,1e-4,5e-5",
    patience: Annotated[int, typer.Option(help="Early stopping: epochs without val-loss improvement.")] = 5,
    val_fraction: Annotated[float, typer.Option(help=_HELP["val_fraction"])] = 0.2,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    out: Annotated[Path, typer.Option(help="Output folder for checkpoints and history.")] = Path("runs/train"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt.")] = False,
    seed: Annotated[int, typer.Option()] = 0,
    pretrained: Annotated[bool, typer.Option("--pretrained/--scratch", help=_HELP["pretrained"])] = True,
    cache_dir: Annotated[Path, typer.Option(help="Where decoded images are cached.")] = Path(".cache/brainxai"),
    limit_per_class: Annotated[int | None, typer.Option(help=_HELP["limit_per_class"])] = None,
    exclude_twins_of: Annotated[Path | None, typer.Option(help=_HELP["exclude_twins_of"])] = None,
    exclude_source: Annotated[
        list[str] | None,
        typer.Option(
            help="Leave-one-source-out: train without this source (figshare | sartaj | br35h) and every image "
            "sharing content with it; repeatable. Needs a Kaggle-layout --data root."
        ),
    ] = None,
    label_smoothing: Annotated[float, typer.Option(help="Cross-entropy label smoothing (0 = none).")] = 0.0,
    lr_schedule: Annotated[str, typer.Option(help=_HELP["lr_schedule"])] = "plateau",
    amp: Annotated[str, typer.Option(help=_HELP["amp"])] = "auto",
    workers: Annotated[int, typer.Option(help=_HELP["workers"])] = 0,
    time_budget: Annotated[float | None, typer.Option(help=_HELP["time_budget"])] = None,
    stop_after: Annotated[int | None, typer.Option(help=_HELP["stop_after"])] = None,
    grounding: Annotated[str, typer.Option(help=_HELP["grounding"])] = "none",
    grounding_weight: Annotated[float, typer.Option(help="Weight of the grounding term.")] = 1.0,
    grounding_dilate_px: Annotated[int, typer.Option(help=_HELP["grounding_dilate_px"])] = 5,
    inpaint_p: Annotated[float, typer.Option(help="--grounding inpaint: share of masked images in-painted.")] = 0.25,
    inpaint_control_p: Annotated[float, typer.Option(help=_HELP["inpaint_control_p"])] = 0.0,
    inpaint_fill: Annotated[str, typer.Option(help=_HELP["inpaint_fill"])] = "telea",
    inpaint_class: Annotated[list[str] | None, typer.Option(help=_HELP["inpaint_class"])] = None,
    masks_brisc: Annotated[Path | None, typer.Option(help=_HELP["masks_brisc"])] = None,
    masks_figshare: Annotated[Path | None, typer.Option(help=_HELP["masks_figshare"])] = None,
    extra_data: Annotated[list[Path] | None, typer.Option(help=_HELP["extra_data"])] = None,
    init_from: Annotated[Path | None, typer.Option(help=_HELP["init_from"])] = None,
) -> None:
    """Train a model; writes OUT/best.safetensors + best.json, last.pt and history.csv/json."""
    options = dict(locals())  # the options by name (read before anything else is defined here)
    from brainxai.data.dataset import DatasetLayoutError
    from brainxai.training.trainer import train as run_training

    try:
        result = run_training(_train_config(options), resume=resume)
    except (DatasetLayoutError, ValueError, KeyError, FileNotFoundError) as exc:
        fail(str(exc))
        return
    if result.best_val_loss is None:
        typer.echo(f"last epoch {result.best_epoch} kept (no validation split); checkpoint: {result.checkpoint}")
    else:
        typer.echo(
            f"best epoch {result.best_epoch} (val loss {result.best_val_loss:.4f}); checkpoint: {result.checkpoint}"
        )


def _train_config(options: dict[str, Any]) -> TrainConfig:
    """The ``train`` options as a :class:`TrainConfig`: the fields of the same name, and those converted here."""
    from brainxai.training.trainer import TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    twins, budget = options["exclude_twins_of"], options["time_budget"]
    converted = {
        "data": str(options["data"]),
        "out": str(options["out"]),
        "cache_dir": str(options["cache_dir"]),
        "phase_epochs": _ints(options["phase_epochs"]),
        "phase_lrs": _floats(options["phase_lrs"]),
        "exclude_twins_of": str(twins) if twins else None,
        "augment": "none" if options["no_augment"] else options["augment"],
        "masks_brisc": str(options["masks_brisc"]) if options["masks_brisc"] else None,
        "masks_figshare": str(options["masks_figshare"]) if options["masks_figshare"] else None,
        "exclude_sources": tuple(options["exclude_source"] or ()),
        "extra_data": tuple(str(p) for p in options["extra_data"] or ()),
        "inpaint_classes": tuple(options["inpaint_class"] or ()),
        "init_from": str(options["init_from"]) if options["init_from"] else None,
        "time_budget_s": budget * 60 if budget else None,  # minutes on the command line
    }
    return TrainConfig(**{k: v for k, v in options.items() if k in names} | converted)


@app.command("models")
def models_cmd() -> None:
    """List the registered models and their input configuration."""
    from brainxai.models import get_model_config, list_models

    for name in list_models():
        cfg = get_model_config(name)
        p = cfg.preprocess
        typer.echo(
            f"{name:20s} {p.img_size}x{p.img_size}x{p.channels} norm={p.normalize:8s} "
            f"cam-layer={cfg.target_layer:10s} {cfg.description}"
        )
