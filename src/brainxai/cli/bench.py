"""``brainxai bench``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from brainxai.cli.app import app, fail


@app.command()
def bench(
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint to measure; default: the shipped model.")] = None,
    images: Annotated[
        list[Path] | None, typer.Option("--image", help="Scan file (repeatable); default: the bundled samples.")
    ] = None,
    repeats: Annotated[int, typer.Option(help="Timed repeats per figure.")] = 20,
    device: Annotated[str, typer.Option(help="cpu | cuda")] = "cpu",
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the full result as JSON.")] = None,
    no_analyze: Annotated[bool, typer.Option("--no-analyze", help="Skip the full analyze timing.")] = False,
) -> None:
    """Measure latency and throughput: classify, each explanation, full analysis, ResNet-18 and the peer."""
    from brainxai.bench import format_bench, run_bench
    from brainxai.models.checkpoint import CheckpointError

    try:
        result = run_bench(checkpoint, images, repeats=repeats, device=device, with_analyze=not no_analyze)
    except (CheckpointError, ValueError) as exc:
        fail(str(exc))
        return
    typer.echo(format_bench(result))
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        typer.echo(f"wrote {json_path}")
