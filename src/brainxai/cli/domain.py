"""``brainxai domain fit``: the out-of-domain statistics stored beside a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from brainxai.cli.app import app, fail

domain_app = typer.Typer(help="Out-of-domain statistics of a checkpoint (when not to answer).", no_args_is_help=True)
app.add_typer(domain_app, name="domain")


@domain_app.command("fit")
def fit_cmd(
    data: Annotated[Path, typer.Option(help="Training folder (or dataset root with Training/) of the checkpoint.")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="Checkpoint stem or file (default: the shipped model, written in place).")
    ] = None,
    calibration_fraction: Annotated[
        float, typer.Option(help="Share of each class held out of the fit to calibrate the threshold.")
    ] = 0.2,
    quantile: Annotated[float, typer.Option(help="Threshold: this quantile of the held-out images' scores.")] = 0.99,
    seed: Annotated[int, typer.Option(help="Seed of the fit/calibration split.")] = 0,
    half: Annotated[
        bool, typer.Option("--half", help="Store the whitening matrix as float16 (half the size).")
    ] = False,
    with_energy: Annotated[
        bool, typer.Option("--energy/--no-energy", help="Combine the distance with the energy of the logits.")
    ] = True,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    cache_dir: Annotated[Path, typer.Option(help="Where decoded images are cached.")] = Path(".cache/brainxai"),
) -> None:
    """Fit the out-of-domain score (Mahalanobis distance of the penultimate features to the nearest class mean, combined with the energy of the logits) on part of the training folder, calibrate its threshold on the rest, and store it as CHECKPOINT.domain.npz.

    The seeded, class-stratified split, the dataset fingerprint and the weights' SHA-256 are recorded in the file; statistics fitted for other weights are ignored on load.
    """  # noqa: E501  (typer prints a docstring's line breaks as they are: one line lets it wrap to the terminal)
    import numpy as np

    from brainxai.data.dataset import DatasetLayoutError
    from brainxai.inference import Classifier, default_checkpoint_path
    from brainxai.models.checkpoint import CheckpointError
    from brainxai.training.domain import fit_and_save

    path = checkpoint if checkpoint is not None else default_checkpoint_path()
    try:
        clf = Classifier.load(path, device=device)
        result = fit_and_save(
            clf,
            path,
            data,
            calibration_fraction=calibration_fraction,
            seed=seed,
            quantile=quantile,
            dtype="float16" if half else "float32",
            cache_dir=cache_dir,
            with_energy=with_energy,
        )
    except (DatasetLayoutError, CheckpointError, ValueError) as exc:
        fail(str(exc))
    info, model = result.model.info, result.model
    split = info["split"]
    typer.echo(
        f"fitted on {info['n_fit']} images ({split['fit_counts']}), Ledoit-Wolf shrinkage {info['shrinkage']:.3f}"
    )
    typer.echo(
        f"threshold {model.threshold:.3f} = quantile {quantile} of {info['n_calibration']} held-out images' scores "
        f"(median {float(np.median(result.calibration_scores)):.3f})"
    )
    size = result.path.stat().st_size if result.path else 0
    typer.echo(f"wrote {result.path} ({size / 1e6:.2f} MB)")
