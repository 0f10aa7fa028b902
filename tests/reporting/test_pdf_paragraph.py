"""The report's paragraphs break their lines once per width and lay out exactly as reportlab's do."""

from __future__ import annotations

import io

import numpy as np
import pytest
import reportlab.platypus
from pypdf import PdfReader
from reportlab.lib.styles import ParagraphStyle

import brainxai.reporting.pdf as pdf
import brainxai.reporting.pdf_layout as pdf_layout
from brainxai.analysis.spatial import compute_spatial_parameters
from brainxai.constants import CLASSES
from brainxai.reporting.pdf_paragraph import Paragraph


def _result(warnings: int) -> tuple[dict, dict]:
    yy, xx = np.mgrid[:120, :120]
    brain = ((xx - 60) / 45) ** 2 + ((yy - 60) / 52) ** 2 <= 1
    image = np.where(brain, 100, 0).astype(np.uint8)
    region = ((xx - 45) ** 2 + (yy - 50) ** 2) <= 10**2
    params = compute_spatial_parameters(image, region, brain, (0.7, 0.7), 0.9, 0.4, prediction="glioma")
    result = {
        "id": "feedc0ffee00",
        "created": "2025-03-04T05:06:07+00:00",
        "prediction": "glioma",
        "probabilities": {c: 0.9 if c == "glioma" else 0.1 / 3 for c in CLASSES},
        "confidence": 0.9,
        "method": "lrp",
        "spatial_parameters": [p.to_dict() for p in params],
        "agreement": {"second_method": "gradcam", "iou": 0.4},
        "scan": {"file": "case.png", "format": "png", "shape": [120, 120]},
        "model": {"name": "m", "checkpoint": "c", "version": "0", "created": "2025", "sha256": "a" * 64},
        "patient": {"name": "A long name " * 6, "patient_id": "X"},
        "warnings": [f"Warning number {i}: " + "a sentence that wraps over many lines " * 4 for i in range(warnings)],
        "notes": ["A note that is long enough to wrap " * 5],
    }
    rgb = np.dstack([image, image // 2, region.astype(np.uint8) * 200])
    return result, {"original": image, "heatmap": rgb, "outline": rgb, "mask": rgb}


def _pages(monkeypatch: pytest.MonkeyPatch, paragraph: type, warnings: int) -> list[bytes]:
    monkeypatch.setattr(pdf, "Paragraph", paragraph)
    monkeypatch.setattr(pdf_layout, "Paragraph", paragraph)  # the paragraphs made by pdf_layout.para
    data = pdf.build_report(*_result(warnings))
    return [page.get_contents().get_data() for page in PdfReader(io.BytesIO(data)).pages]


@pytest.mark.parametrize("warnings", [0, 12])  # two pages; three with many warnings
def test_report_pages_identical_to_reportlab_paragraphs(monkeypatch: pytest.MonkeyPatch, warnings: int) -> None:
    ours = _pages(monkeypatch, Paragraph, warnings)
    theirs = _pages(monkeypatch, reportlab.platypus.Paragraph, warnings)
    assert ours == theirs
    assert len(ours) == (3 if warnings else 2)


def test_second_wrap_at_the_same_width_does_not_break_lines_again(monkeypatch: pytest.MonkeyPatch) -> None:
    para = Paragraph("word " * 60, ParagraphStyle("s", fontName="Helvetica", fontSize=9, leading=11))
    calls: list[list[float]] = []
    breaks = para.breakLines
    monkeypatch.setattr(para, "breakLines", lambda widths: calls.append(list(widths)) or breaks(widths))
    first = para.wrap(200, 1000)
    lines = para.blPara
    assert para.wrap(200, 50) == first and para.blPara is lines and len(calls) == 1
    narrow = para.wrap(100, 1000)
    assert narrow[1] > first[1] and len(calls) == 2  # another width: broken again
    assert para.wrap(200, 1000) == first and len(calls) == 3
    assert para.wrap(0, 1000) == (0, 0x7FFFFFFF)  # reportlab's "does not fit"


def test_a_paragraph_split_across_frames_wraps_again() -> None:
    # reportlab's split drops the lines of the paragraph it breaks; a wrap at the same width must redo them.
    from reportlab.lib.pagesizes import A6
    from reportlab.platypus import SimpleDocTemplate, Spacer

    style = ParagraphStyle("s", fontName="Helvetica", fontSize=9, leading=11)
    doc = SimpleDocTemplate(io.BytesIO(), pagesize=A6)
    para = Paragraph("a long sentence that wraps " * 40, style)
    para.wrap(doc.width - 12, doc.height)  # wrapped before the frame places it, as tables and KeepTogether do
    buf = io.BytesIO()
    SimpleDocTemplate(buf, pagesize=A6).build([Spacer(1, 200), para])
    assert len(PdfReader(io.BytesIO(buf.getvalue())).pages) >= 2
