"""The render and report steps: the analysis images, the PDF report and the JSON sidecar, written atomically."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from brainxai.pipeline.measure import Regions
from brainxai.pipeline.result import IMAGE_KINDS, AnalysisResult, json_bytes
from brainxai.util.files import atomic_write_bytes


@dataclass(frozen=True)
class Rendered:
    """The images of one analysis.

    Attributes:
        arrays: One image per :data:`~brainxai.pipeline.result.IMAGE_KINDS` (RGB or grayscale ``uint8``).
        region: The relevance region drawn in them.
        region_drawn: Whether the region is drawn (not for a "no tumour" prediction).
    """

    arrays: dict[str, np.ndarray]
    region: np.ndarray
    region_drawn: bool

    def report_images(self) -> dict[str, np.ndarray]:
        """What the PDF shows: the outline slot holds the overlay with the region's outline drawn on it."""
        from brainxai.explain.views import outline_image

        overlay = self.arrays["overlay"]
        return {**self.arrays, "outline": outline_image(overlay, self.region) if self.region_drawn else overlay}


def render(pixels: np.ndarray, regions: Regions, prediction: str) -> Rendered:
    """The scan, its heatmap, overlay, outline and relevance mask."""
    from brainxai.explain.views import render_views

    views = render_views(pixels, regions.relevance, prediction, brain=regions.brain, region=regions.region)
    arrays = {"original": pixels, **{k: views[k] for k in IMAGE_KINDS[1:]}}
    return Rendered(arrays, regions.region, views.region_drawn)


def write_images(arrays: dict[str, np.ndarray], out_dir: Path, base: str) -> dict[str, Path]:
    """Writes ``out_dir/<base>-<kind>.png`` for every image; returns their paths by kind."""
    images: dict[str, Path] = {}
    for kind, arr in arrays.items():
        path = out_dir / f"{base}-{kind}.png"
        atomic_write_bytes(path, png_bytes(arr))
        images[kind] = path
    return images


def png_bytes(image: np.ndarray) -> bytes:
    """An RGB or grayscale ``uint8`` image encoded as PNG."""
    arr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def write_report_and_json(result: AnalysisResult, rendered: Rendered) -> None:
    """Writes the PDF report (when the result has a path for it), then the JSON sidecar."""
    payload = result.to_dict()
    if result.report_pdf is not None:
        from brainxai.reporting.pdf import write_report

        write_report(payload, rendered.report_images(), result.report_pdf)
    atomic_write_bytes(result.report_json, json_bytes(payload))
