"""``brainxai train``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from brainxai.cli.app import app, fail


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(t) for t in text.split(",") if t.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.split(",") if t.strip())


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="Dataset root (with Training/) or the training folder itself.")],
    model: Annotated[str, typer.Option(help="Registered model name (see `brainxai models`).")] = "efficientnet-lite0",
    epochs: Annotated[int, typer.Option(help="Epochs for --schedule single.")] = 30,
    batch_size: Annotated[int, typer.Option()] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate for --schedule single.")] = 1e-3,
    img_size: Annotated[int | None, typer.Option(help="Input side; default: the model's.")] = None,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="Training augmentation.")] = True,
    hflip: Annotated[bool, typer.Option(help="Add horizontal flips to augmentation (off: keeps hemisphere cues).")] = False,
    schedule: Annotated[str, typer.Option(help="single | progressive (head, then + last stage, then + the one before).")] = "single",
    phase_epochs: Annotated[str, typer.Option(help="Progressive: epochs per phase, comma-separated.")] = "15,20,15",
    phase_lrs: Annotated[str, typer.Option(help="Progressive: learning rate per phase.")] = "1e-3,1e-4,5e-5",
    patience: Annotated[int, typer.Option(help="Early stopping: epochs without val-loss improvement.")] = 5,
    val_fraction: Annotated[float, typer.Option(help="Stratified validation share taken from Training; 0 trains on all of it (a refit: no selection, the last epoch is kept, cosine schedule only).")] = 0.2,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    out: Annotated[Path, typer.Option(help="Output folder for checkpoints and history.")] = Path("runs/train"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt.")] = False,
    seed: Annotated[int, typer.Option()] = 0,
    pretrained: Annotated[bool, typer.Option("--pretrained/--scratch", help="Start from ImageNet weights when available.")] = True,
    cache_dir: Annotated[Path, typer.Option(help="Where decoded images are cached.")] = Path(".cache/brainxai"),
    limit_per_class: Annotated[int | None, typer.Option(help="Use at most N training images per class (smoke tests).")] = None,
    exclude_twins_of: Annotated[Path | None, typer.Option(help="Leave out training images that are pHash twins of these (a folder of images, or a CSV with a 'file' column such as a box CSV), to evaluate on them later.")] = None,
    label_smoothing: Annotated[float, typer.Option(help="Cross-entropy label smoothing (0 = none).")] = 0.0,
    lr_schedule: Annotated[str, typer.Option(help="plateau (halve on a stalled val loss) | cosine (anneal to 1 percent of the rate over each phase).")] = "plateau",
    amp: Annotated[str, typer.Option(help="auto (bfloat16 autocast on CUDA, off on CPU) | bf16 (also on a CPU: faster on Xeons with AMX) | off.")] = "auto",
    workers: Annotated[int, typer.Option(help="DataLoader worker processes for augmentation (0: in the main process).")] = 0,
    time_budget: Annotated[float | None, typer.Option(help="Stop after this many minutes of this sitting, mid-epoch if need be; the cut epoch is validated and can become best, but is not resumable.")] = None,
    stop_after: Annotated[int | None, typer.Option(help="Stop after this many epochs; the learning-rate schedule still spans --epochs (to refit at the epoch chosen on a split).")] = None,
) -> None:
    """Train a model; writes OUT/best.safetensors + best.json, last.pt and history.csv/json."""
    from brainxai.data.dataset import DatasetLayoutError
    from brainxai.training.trainer import TrainConfig
    from brainxai.training.trainer import train as run_training

    config = TrainConfig(
        data=str(data),
        model=model,
        out=str(out),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        img_size=img_size,
        augment=augment,
        hflip=hflip,
        schedule=schedule,  # type: ignore[arg-type]
        phase_epochs=_ints(phase_epochs),
        phase_lrs=_floats(phase_lrs),
        patience=patience,
        val_fraction=val_fraction,
        seed=seed,
        device=device,
        pretrained=pretrained,
        cache_dir=str(cache_dir),
        limit_per_class=limit_per_class,
        exclude_twins_of=str(exclude_twins_of) if exclude_twins_of else None,
        label_smoothing=label_smoothing,
        lr_schedule=lr_schedule,  # type: ignore[arg-type]
        amp=amp,  # type: ignore[arg-type]
        workers=workers,
        time_budget_s=time_budget * 60 if time_budget else None,
        stop_after=stop_after,
    )
    try:
        result = run_training(config, resume=resume)
    except (DatasetLayoutError, ValueError, KeyError, FileNotFoundError) as exc:
        fail(str(exc))
        return
    if result.best_val_loss is None:
        typer.echo(f"last epoch {result.best_epoch} kept (no validation split); checkpoint: {result.checkpoint}")
    else:
        typer.echo(
            f"best epoch {result.best_epoch} (val loss {result.best_val_loss:.4f}); checkpoint: {result.checkpoint}"
        )


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
