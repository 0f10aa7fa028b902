"""A fast stand-in for :class:`brainxai.pipeline.service.AnalysisService` (same call contract, no model)."""

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
from brainxai.pipeline.options import AnalysisOptions, PatientInfo
from brainxai.pipeline.result import IMAGE_KINDS, AnalysisResult

# The smallest well-formed PDF (one empty page); enough for download tests.
MINIMAL_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


@dataclass
class FakeService:
    """Decodes the scan for real (so bad files fail as they would), then invents a result.

    Attributes:
        delay_s: Sleep inside analyze (to test that the server stays responsive).
        fail_after_files: Raise after writing the output files (a crash mid-analysis).
        unreadable: File names whose analysis fails as an undecodable scan would (ValueError).
        calls: Arguments of every call, for assertions.
        batches: The number of scans of every ``analyze_many`` call.
        failing_batches: How many of the next ``analyze_many`` calls fail as a whole (their shared pass).
    """

    delay_s: float = 0.0
    fail_after_files: bool = False
    unreadable: set[str] = field(default_factory=set)
    calls: list[dict[str, Any]] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    failing_batches: int = 0

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
        options: AnalysisOptions | None = None,
        *,
        out_dir: Path,
        filename: str | None = None,
        patient: Any = None,
    ) -> AnalysisResult:
        options = options or AnalysisOptions()
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self.calls.append({"filename": filename, "method": options.method, "patient": patient, "out_dir": out_dir})
            patient_info = PatientInfo.coerce(patient)
            if filename in self.unreadable:
                raise ValueError(f"{filename}: cannot decode the image (simulated)")
            scan = read_scan(source, filename=filename, slice_index=options.slice_index)
            if self.delay_s:
                time.sleep(self.delay_s)
            images, pdf, report_json = self._write_files(scan.pixels, Path(out_dir))
            if self.fail_after_files:
                raise RuntimeError("simulated crash after writing files")
            # Deterministic fake probabilities from the pixel mean.
            logits = np.array([scan.pixels.mean() % 7, scan.pixels.std() % 5, 1.0, 2.0])
            probs = np.exp(logits) / np.exp(logits).sum()
            return AnalysisResult(
                id=uuid.uuid4().hex[:12],
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                source_name=filename or "upload",
                prediction=CLASSES[int(np.argmax(probs))],
                probabilities={c: float(p) for c, p in zip(CLASSES, probs, strict=False)},
                confidence=float(probs.max()),
                method=options.method,
                spatial_parameters=[
                    {"name": "Highlighted area", "value": 12.5, "unit": "% of brain", "method": "heatmap > 0.5"}
                ],
                scan=scan.info(),
                model={"name": "fake-model", "version": "0", "sha256": "0" * 64},
                images=images,
                report_pdf=pdf if options.report else None,
                report_json=report_json,
                patient=patient_info.to_dict() if patient_info else None,
            )
        finally:
            with self._lock:
                self.active -= 1

    def analyze_many(
        self, scans: list[Any], options: AnalysisOptions | None = None, *, out_dir: Path, patient: Any = None
    ) -> list[AnalysisResult | Exception]:
        """As the real service: per scan, its result or the exception its analysis raised."""
        self.batches.append(len(scans))
        if self.failing_batches:
            self.failing_batches -= 1
            raise RuntimeError("simulated failure of the shared pass")
        outcomes: list[AnalysisResult | Exception] = []
        for scan in scans:
            folder = Path(scan.out_dir if scan.out_dir is not None else out_dir)
            try:
                outcomes.append(
                    self.analyze(scan.source, options, out_dir=folder, filename=scan.filename, patient=patient)
                )
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    @staticmethod
    def _write_files(pixels: np.ndarray, out_dir: Path) -> tuple[dict[str, Path], Path, Path]:
        """Small stand-ins for the images, the PDF and the JSON sidecar."""
        out_dir.mkdir(parents=True, exist_ok=True)
        small = np.asarray(Image.fromarray(pixels).resize((64, 64)))
        images = {kind: out_dir / f"{kind}.png" for kind in IMAGE_KINDS}
        for path in images.values():
            Image.fromarray(small).save(path)
        pdf = out_dir / "report.pdf"
        pdf.write_bytes(MINIMAL_PDF)
        report_json = out_dir / "report.json"
        report_json.write_text("{}")
        return images, pdf, report_json
