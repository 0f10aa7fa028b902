"""A fast stand-in for brainxai.service.AnalysisService (same call contract, no model)."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from PIL import Image

from brainxai.constants import CLASSES
from brainxai.io.scan import read_scan

# The smallest well-formed PDF (one empty page); enough for download tests.
MINIMAL_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


@dataclass
class FakeResult:
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
    report_json: Path
    patient: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created": self.created,
            "source_name": self.source_name,
            "prediction": self.prediction,
            "probabilities": self.probabilities,
            "confidence": self.confidence,
            "method": self.method,
            "spatial_parameters": self.spatial_parameters,
            "scan": self.scan,
            "model": self.model,
            "patient": self.patient,
            "images": {k: str(v) for k, v in self.images.items()},
            "report_pdf": str(self.report_pdf) if self.report_pdf else None,
            "report_json": str(self.report_json),
        }


@dataclass
class FakeService:
    """Decodes the scan for real (so bad files fail as they would), then invents a result.

    Attributes:
        delay_s: Sleep inside analyze (to test that the server stays responsive).
        fail_after_files: Raise after writing the output files (a crash mid-analysis).
        calls: Arguments of every call, for assertions.
    """

    delay_s: float = 0.0
    fail_after_files: bool = False
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.classifier = SimpleNamespace(
            name="fake-model",
            device=torch.device("cpu"),
            classes=CLASSES,
            checkpoint=SimpleNamespace(
                sha256="0" * 64, meta=SimpleNamespace(created="2026-01-01", brainxai_version="0")
            ),
            model=SimpleNamespace(brainxai_config=SimpleNamespace(supports_lrp=True)),
        )
        self._lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    def analyze(
        self,
        source: Path | bytes,
        *,
        filename: str | None = None,
        method: str = "lrp",
        patient: Any = None,
        out_dir: Path,
        report: bool = True,
        slice_index: int | None = None,
    ) -> FakeResult:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self.calls.append({"filename": filename, "method": method, "patient": patient, "out_dir": out_dir})
            scan = read_scan(source, filename=filename, slice_index=slice_index)
            if self.delay_s:
                time.sleep(self.delay_s)
            out_dir = Path(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
            img = scan.pixels
            small = np.asarray(Image.fromarray(img).resize((64, 64)))
            images = {}
            for kind in ("original", "heatmap", "overlay", "outline", "mask"):
                images[kind] = out_dir / f"{kind}.png"
                Image.fromarray(small).save(images[kind])
            pdf = out_dir / "report.pdf"
            pdf.write_bytes(MINIMAL_PDF)
            report_json = out_dir / "report.json"
            report_json.write_text("{}")
            if self.fail_after_files:
                raise RuntimeError("simulated crash after writing files")
            # Deterministic fake probabilities from the pixel mean.
            logits = np.array([img.mean() % 7, img.std() % 5, 1.0, 2.0])
            probs = np.exp(logits) / np.exp(logits).sum()
            label = CLASSES[int(np.argmax(probs))]
            return FakeResult(
                id=uuid.uuid4().hex,
                created=datetime.now(UTC).isoformat(),
                source_name=filename or "upload",
                prediction=label,
                probabilities={c: float(p) for c, p in zip(CLASSES, probs, strict=False)},
                confidence=float(probs.max()),
                method=method,
                spatial_parameters=[
                    {"name": "Highlighted area", "value": 12.5, "unit": "% of brain", "method": "heatmap > 0.5"}
                ],
                scan=scan.info(),
                model={"name": "fake-model", "version": "0", "sha256": "0" * 64},
                images=images,
                report_pdf=pdf if report else None,
                report_json=report_json,
                patient=patient if isinstance(patient, dict) else None,
            )
        finally:
            with self._lock:
                self.active -= 1
