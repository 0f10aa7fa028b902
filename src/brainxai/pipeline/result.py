"""What one analysis produced, and its JSON form (the sidecar file and the web app's study record)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brainxai.constants import CLASS_TITLES, DISCLAIMER, NO_TUMOUR
from brainxai.version import __version__

#: Images written for each analysis, in report order.
IMAGE_KINDS: tuple[str, ...] = ("original", "heatmap", "overlay", "outline", "mask")
#: The image written besides them when a segmentation model outlined a tumour: the scan with that outline.
TUMOUR_IMAGE = "tumour"


@dataclass
class AnalysisResult:
    """Everything one analysis produced. ``to_dict()`` is what the JSON sidecar holds."""

    id: str
    created: str
    source_name: str
    prediction: str
    probabilities: dict[str, float]
    confidence: float
    method: str
    spatial_parameters: list[dict[str, Any]]
    scan: dict[str, Any]
    model: dict[str, Any]
    images: dict[str, Path]
    report_pdf: Path | None
    report_json: Path | None  # None when the analysis wrote no files (``AnalysisOptions.write_files``)
    patient: dict[str, Any] | None = None
    agreement: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    #: Conditions that make this result unreliable (shown prominently; ``notes`` are context).
    warnings: list[str] = field(default_factory=list)
    #: False: outside what the model was trained on, not assessable (None: the model has no domain statistics).
    in_domain: bool | None = None
    #: Out-of-domain score (``brainxai.models.domain``; higher = further out) and the threshold it is judged by.
    domain_score: float | None = None
    domain_threshold: float | None = None
    #: The segmented tumour (``pipeline.segment.TumourSegmentation.to_dict``); None without a segmentation model.
    segmentation: dict[str, Any] | None = None
    #: Share of the explanation's positive relevance inside the segmented tumour (None: not computed).
    relevance_in_tumour: float | None = None

    @property
    def assessable(self) -> bool:
        """False when the image is outside what the model was trained on (its prediction is not assessable)."""
        return self.in_domain is not False

    @property
    def is_tumour(self) -> bool:
        """Whether the prediction is a tumour class."""
        return self.prediction != NO_TUMOUR

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (paths as strings), with the guidance and disclaimer added."""
        from brainxai.reporting.guidance import guidance_for

        d = asdict(self)
        d["images"] = {k: str(v) for k, v in self.images.items()}
        d["report_pdf"] = str(self.report_pdf) if self.report_pdf else None
        d["report_json"] = str(self.report_json) if self.report_json else None
        d["prediction_title"] = CLASS_TITLES.get(self.prediction, self.prediction)
        d["tumour"] = self.is_tumour
        d["assessable"] = self.assessable
        d["agreement_method"] = (self.agreement or {}).get("description")
        known = self.prediction in CLASS_TITLES
        d["guidance"] = guidance_for(self.prediction, self.confidence).to_dict() if known else None
        d["disclaimer"] = DISCLAIMER
        d["brainxai_version"] = __version__
        return d


def json_bytes(payload: dict[str, Any]) -> bytes:
    """``payload`` (a :meth:`AnalysisResult.to_dict`) as the indented JSON of the sidecar file."""
    return json.dumps(payload, indent=2, default=_json_default).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
