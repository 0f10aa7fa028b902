"""The demo: the sample scans shipped with the package, one per class, analysed with the default model."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

from brainxai.constants import CLASS_TITLES
from brainxai.pipeline.batch import BatchItem, analyze_batch
from brainxai.pipeline.options import AnalysisOptions
from brainxai.pipeline.service import get_service


def sample_scans() -> dict[str, Path]:
    """The sample scans shipped with the package, one per class: ``{class: path}``."""
    root = resources.files("brainxai") / "samples"
    found = {}
    for entry in root.iterdir():
        stem = entry.name.rsplit(".", 1)[0]
        if stem in CLASS_TITLES and entry.is_file():
            found[stem] = Path(str(entry))
    return dict(sorted(found.items()))


def run_demo(
    out_dir: str | Path = "brainxai-demo",
    *,
    checkpoint: str | Path | None = None,
    method: str = "lrp",
    progress: Callable[[BatchItem], None] | None = None,
) -> list[BatchItem]:
    """Analyses the shipped sample scans with the default model (or ``checkpoint``) into ``out_dir``.

    Reports are named after the sample's class: ``out_dir/glioma.pdf`` and so on.
    """
    samples = sample_scans()
    if not samples:
        raise FileNotFoundError("no sample scans found in the installed package")
    return analyze_batch(
        get_service(checkpoint),
        list(samples.values()),
        AnalysisOptions(method=method),
        out_dir=out_dir,
        names=list(samples),
        progress=progress,
    )
