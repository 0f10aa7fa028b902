"""The view PNGs of ``brainxai explain`` and ``brainxai analyze`` are at the scan's resolution, not the model's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from brainxai.cli import app


def _shape(path: Path) -> tuple[int, int]:
    return np.asarray(Image.open(path)).shape[:2]


def test_explain_and_analyze_write_views_at_the_scan_resolution(
    samples_dir: Path, random_checkpoint: Path, tmp_path: Path
) -> None:
    scan = tmp_path / "glioma-large.png"  # the samples are 224 px, the model's size: use a larger slice
    Image.open(samples_dir / "glioma.jpg").convert("L").resize((448, 400), Image.BICUBIC).save(scan)
    scan_shape = (400, 448)
    runner = CliRunner()
    explained = runner.invoke(
        app,
        ["explain", str(scan), "--checkpoint", str(random_checkpoint), "--method", "gradcam", "--show-evidence"]
        + ["--out", str(tmp_path / "explain")],
    )
    assert explained.exit_code == 0, explained.output
    views = sorted((tmp_path / "explain").glob("*.png"))
    assert {p.stem for p in views} == {"heatmap", "overlay", "mask", "outline"}
    assert all(_shape(p) == scan_shape for p in views)
    analysed = runner.invoke(
        app,
        ["analyze", str(scan), "--checkpoint", str(random_checkpoint), "--method", "gradcam", "--no-agreement"]
        + ["--out", str(tmp_path / "analyze")],
    )
    assert analysed.exit_code == 0, analysed.output
    pngs = sorted((tmp_path / "analyze").rglob("*.png"))
    assert any(p.stem.endswith("heatmap") for p in pngs)
    assert all(_shape(p) == scan_shape for p in pngs)
