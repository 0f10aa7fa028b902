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
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="Training augmentation.")] = True,
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
    label_smoothing: Annotated[float, typer.Option(help="Cross-entropy label smoothing (0 = none).")] = 0.0,
    lr_schedule: Annotated[str, typer.Option(help=_HELP["lr_schedule"])] = "plateau",
    amp: Annotated[str, typer.Option(help=_HELP["amp"])] = "auto",
    workers: Annotated[int, typer.Option(help=_HELP["workers"])] = 0,
    time_budget: Annotated[float | None, typer.Option(help=_HELP["time_budget"])] = None,
    stop_after: Annotated[int | None, typer.Option(help=_HELP["stop_after"])] = None,
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
