"""``brainxai sources``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from brainxai.cli.app import app, fail


@app.command("sources")
def sources(
    data_root: Annotated[Path, typer.Argument(help="Kaggle-layout dataset root holding Training/ (and Testing/).")],
    out: Annotated[Path, typer.Option(help="CSV to write: path,split,label,source,rule,content.")] = Path(
        "sources.csv"
    ),
    cache_dir: Annotated[Path, typer.Option(help="Where image hashes are cached.")] = Path(".cache/brainxai"),
) -> None:
    """Derive each image's source (figshare / SARTAJ / Br35H) and content group, for leave-one-source-out."""
    from brainxai.data.dataset import DatasetLayoutError
    from brainxai.data.sources import derive_sources, write_sources_csv

    try:
        labels = derive_sources(data_root, cache_dir=cache_dir)
    except DatasetLayoutError as exc:
        fail(str(exc))
        return
    write_sources_csv(labels, out)
    counts = Counter((lab.split, lab.label, lab.source) for lab in labels)
    for (split, label, source), n in sorted(counts.items()):
        typer.echo(f"{split:9s} {label:10s} {source:9s} {n:5d}")
    groups = Counter(lab.content for lab in labels)
    typer.echo(
        f"{len(labels)} images, {len(groups)} content groups ({sum(1 for n in groups.values() if n > 1)} with "
        f"more than one image, largest {max(groups.values(), default=0)}); wrote {out}"
    )
