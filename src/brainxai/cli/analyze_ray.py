"""``brainxai analyze --engine ray``: the command-line side of :mod:`brainxai.scale.ray_engine`.

Kept apart from ``cli/analyze.py`` so that the default engine never imports Ray or the scale package.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from brainxai.cli.app import fail

if TYPE_CHECKING:
    from brainxai.pipeline.options import AnalysisOptions


def run_on_ray(
    sources: list[Path],
    options: AnalysisOptions,
    *,
    out: Path,
    checkpoint: Path | None,
    device: str,
    address: str | None,
    workers: int | None,
    batch_size: int,
    per_scan_outputs: bool,
    retry_failed: bool = False,
) -> None:
    """Runs the analysis on Ray and prints where the table is and how many scans failed."""
    try:
        import ray  # noqa: F401  (only to say clearly that the extra is missing)
    except ImportError:
        fail('--engine ray needs Ray: pip install "brainxai[ray]"')
    from brainxai.scale.ray_engine import RayRunConfig, run_ray_analysis

    config = RayRunConfig(
        out=out,
        options=options,
        checkpoint=str(checkpoint) if checkpoint is not None else None,
        device=device,
        address=address,
        workers=workers,
        batch_size=batch_size,
        per_scan_outputs=per_scan_outputs,
        retry_failed=retry_failed,
    )
    try:
        summary = run_ray_analysis([str(s) for s in sources], config)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    if summary.total == 0:
        fail("no scan files found in " + ", ".join(map(str, sources)))
    rate = summary.written / summary.seconds if summary.seconds else 0.0
    typer.echo(
        f"{summary.total} scan(s): {summary.skipped} already in {summary.results_dir}, {summary.written} analysed "
        f"now on {summary.workers} worker(s) in {summary.seconds:.1f} s ({rate:.2f} scans/s)"
    )
    if summary.failed:
        typer.secho(
            f"{summary.failed} scan(s) failed; their rows in {summary.results_dir} have a non-empty 'error' "
            "(--retry-failed analyses them again)",
            fg=typer.colors.YELLOW,
            err=True,
        )
    if per_scan_outputs:
        typer.echo(f"per-scan outputs: {config.scans_dir}")
    typer.echo("research use only, not a diagnosis")
