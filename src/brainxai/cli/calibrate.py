"""``brainxai calibrate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from brainxai.cli.app import app, fail


@app.command()
def calibrate(
    checkpoint: Annotated[
        Path, typer.Option(help="Checkpoint (.safetensors/.json stem) whose JSON gets the temperature.")
    ],
    data: Annotated[
        Path | None,
        typer.Option(help="Dataset root (with Training/) or the training folder the checkpoint was trained on."),
    ] = None,
    from_: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help=(
                "Instead of fitting: carry over the temperature of this calibrated checkpoint "
                "(for a refit trained without a validation split)."
            ),
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    cache_dir: Annotated[Path, typer.Option(help="Where decoded images are cached.")] = Path(".cache/brainxai"),
) -> None:
    """Fit the softmax temperature on the checkpoint's own validation split and store it in its JSON.

    The split is rebuilt from the recipe in the checkpoint (seed, validation fraction, per-class
    limit); the data must have the checkpoint's dataset fingerprint. Testing is never used. With
    --from, nothing is fitted: the other checkpoint's temperature is copied and labelled as such.
    """
    from brainxai.data.dataset import DatasetLayoutError
    from brainxai.models.checkpoint import CheckpointError, checkpoint_paths
    from brainxai.training.calibrate import calibrate_checkpoint, carry_temperature

    if (data is None) == (from_ is None):
        fail("give either --data (fit on the checkpoint's validation split) or --from (carry a temperature over)")
        return
    try:
        if from_ is not None:
            c = carry_temperature(checkpoint, from_)
        else:
            assert data is not None  # exactly one of --data and --from was given (checked above)
            c = calibrate_checkpoint(checkpoint, data, device=device, cache_dir=cache_dir)
    except (DatasetLayoutError, CheckpointError, ValueError) as exc:
        fail(str(exc))
        return
    if from_ is not None:
        typer.echo(f"temperature {c['temperature']:.4f} carried over ({c['fitted_on']})")
    else:
        typer.echo(f"temperature {c['temperature']:.4f} fitted on {c['n']} images ({c['fitted_on']})")
        typer.echo(
            f"NLL {c['nll_before']:.4f} -> {c['nll_after']:.4f}; ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f}"
        )
    typer.echo(f"wrote temperature and calibration into {checkpoint_paths(checkpoint)[1]}")
