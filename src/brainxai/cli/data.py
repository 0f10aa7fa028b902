"""``brainxai audit-data``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from brainxai.cli.app import app, fail


@app.command("audit-data")
def audit_data(
    data_root: Annotated[Path, typer.Argument(help="Dataset root holding Training/ (and Testing/).")],
    max_distance: Annotated[int, typer.Option(help="Largest pHash Hamming distance counted as a near-duplicate.")] = 4,
    out: Annotated[
        Path, typer.Option(help="audit.json path; the de-duplicated test list and size plot go beside it.")
    ] = Path("audit.json"),
    mirror: Annotated[
        bool,
        typer.Option(
            "--mirror/--no-mirror",
            help="Also count a test image as a twin when its left-right mirror image matches a training image.",
        ),
    ] = True,
    cache_dir: Annotated[Path, typer.Option(help="Where image hashes are cached.")] = Path(".cache/brainxai"),
) -> None:
    """Find near-duplicate images (within Training, Testing vs Training), label conflicts and odd sizes."""
    from brainxai.data.audit import audit_dataset, size_points, write_audit
    from brainxai.data.dataset import DatasetLayoutError
    from brainxai.evaluation.plots import save_figure, size_scatter_figure

    try:
        report = audit_dataset(data_root, max_distance=max_distance, mirror=mirror, cache_dir=cache_dir)
    except DatasetLayoutError as exc:
        fail(str(exc))
        return
    paths = write_audit(report, out)
    save_figure(size_scatter_figure(*size_points(report)), str(paths["size_plot"]))
    typer.echo(
        f"training: {report['n_train']} images, {report['train_near_duplicate_pairs']} near-duplicate pairs\n"
        f"testing: {report['n_test']} images, {report['test_with_train_twin']} with a twin in Training "
        f"({report['test_with_plain_twin']} as stored, {report['mirror_twins']} more only when mirrored) "
        f"-> {report['n_dedup_test']} in the de-duplicated test list\n"
        f"label conflicts: {len(report['label_conflicts'])}; unreadable: {len(report['unreadable'])}\n"
        f"wrote {paths['json']}, {paths['dedup_list']}, {paths['size_plot']}"
    )
