"""``brainxai evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from brainxai.cli.app import app, fail


@app.command()
def evaluate(
    data: Annotated[
        Path, typer.Option(help="Dataset root (with Testing/ and Training/) or a class-per-folder test folder.")
    ],
    out: Annotated[Path, typer.Option(help="Output folder for metrics.json, plots and report.md.")] = Path("runs/eval"),
    checkpoint: Annotated[
        Path | None, typer.Option(help="Checkpoint (.safetensors/.json stem); default: the shipped model.")
    ] = None,
    subset: Annotated[
        Path | None, typer.Option(help="File of image paths relative to --data: evaluate only those.")
    ] = None,
    dedup_list: Annotated[Path | None, typer.Option(help="De-duplicated test list from `brainxai audit-data`.")] = None,
    max_distance: Annotated[int, typer.Option(help="pHash distance for the on-the-fly duplicate audit.")] = 4,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for 95% confidence intervals.")] = 1000,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    by_source: Annotated[
        str | None,
        typer.Option(
            help=(
                "Also report metrics per image source: a CSV from `brainxai sources`, or 'auto' to derive the "
                "sources from --data (a Kaggle-layout root)."
            )
        ),
    ] = None,
) -> None:
    """Evaluate a model on the raw test split and the de-duplicated test subset."""
    from brainxai.data.dataset import DatasetLayoutError
    from brainxai.evaluation.evaluate import evaluate as run_evaluation
    from brainxai.models.checkpoint import CheckpointError

    try:
        result = run_evaluation(
            data,
            out,
            checkpoint=checkpoint,
            subset=subset,
            dedup_list=dedup_list,
            max_distance=max_distance,
            n_boot=n_boot,
            device=device,
            by_source=by_source,
        )
    except (DatasetLayoutError, CheckpointError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
        return
    results = {"subset": result} if subset is not None else {k: v for k, v in result.items() if k != "by_source"}
    for name, m in results.items():
        glioma = m["per_class"].get("glioma", {}).get("recall")
        typer.echo(
            f"{name:6s} n={m['n']:5d} accuracy={m['accuracy']:.4f} macro-F1={m['macro_f1']:.4f}"
            + (f" glioma recall={glioma:.4f}" if glioma is not None else "")
        )
    for subset_name, entries in result.get("by_source", {}).items():
        for source, e in entries.items():
            recalls = " ".join(f"{c}={r['recall']:.3f}" for c, r in e["per_class"].items())
            typer.echo(f"{subset_name:6s} {source:9s} n={e['n']:5d} accuracy={e['accuracy']:.4f} recall: {recalls}")
    typer.echo(f"wrote {out / 'metrics.json'} and {out / 'report.md'}")
