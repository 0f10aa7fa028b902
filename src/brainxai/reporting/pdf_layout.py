"""The layout building blocks shared by the PDF reports (ReportLab): colours, page geometry, fonts, styles,
paragraphs, tables, the alert banner, the page footer and the rendering of a story to PDF bytes.

The single-image report (:mod:`brainxai.reporting.pdf`) and the series report
(:mod:`brainxai.reporting.series_pdf`) are both built from these, so they look and read alike.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.platypus import Flowable, Image, SimpleDocTemplate, Table, TableStyle

from brainxai.reporting.pdf_images import ArrayImage
from brainxai.reporting.pdf_paragraph import Paragraph  # reportlab's, without repeated line breaking

logger = logging.getLogger(__name__)

INK = colors.HexColor("#1f2933")
MUTED = colors.HexColor("#616e7c")
RULE = colors.HexColor("#cbd2d9")
ACCENT = colors.HexColor("#1d4e89")
BAND = colors.HexColor("#f0f4f8")
WARN_BG = colors.HexColor("#fff4e0")
WARN_INK = colors.HexColor("#8a4b00")
BAR = colors.HexColor("#3e7cb1")
BAR_TOP = colors.HexColor("#1d4e89")

PAGE_W, PAGE_H = A4
MARGIN = 15 * mm
#: ReportLab frames pad their content by 6 pt on each side.
CONTENT_W = PAGE_W - 2 * MARGIN - 12
#: Width of each of two side-by-side columns (6 mm apart).
HALF_W = (CONTENT_W - 6 * mm) / 2

#: The sentence at the foot of every page.
FOOTER_TEXT = "Research use only, not a diagnosis. Findings must be reviewed by a qualified clinician."


@lru_cache(maxsize=1)
def font_names() -> tuple[str, str]:
    """The regular and bold font names, registered with ReportLab on first use.

    Returns:
        DejaVu Sans (ships with matplotlib; covers ², ³, ≈) when available, else Helvetica.
    """
    try:
        import matplotlib
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont

        base = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        pdfmetrics.registerFont(TTFont("BX-Regular", str(base / "DejaVuSans.ttf")))
        pdfmetrics.registerFont(TTFont("BX-Bold", str(base / "DejaVuSans-Bold.ttf")))
        pdfmetrics.registerFontFamily("BX-Regular", normal="BX-Regular", bold="BX-Bold")
        return "BX-Regular", "BX-Bold"
    except Exception as exc:
        logger.warning("DejaVu Sans not available (%s); using Helvetica", exc)
        return "Helvetica", "Helvetica-Bold"


def paragraph_styles() -> dict[str, ParagraphStyle]:
    """The reports' paragraph styles by name (title, subtitle, meta, h2, body, small, cell, cellb, label, ...)."""
    regular, bold = font_names()
    return {
        "title": ParagraphStyle("title", fontName=bold, fontSize=15, leading=18, textColor=ACCENT),
        "subtitle": ParagraphStyle("subtitle", fontName=regular, fontSize=8.5, leading=11, textColor=MUTED),
        "meta": ParagraphStyle("meta", fontName=regular, fontSize=8, leading=10.5, textColor=MUTED, alignment=TA_RIGHT),
        "h2": ParagraphStyle(
            "h2", fontName=bold, fontSize=10.5, leading=13, textColor=ACCENT, spaceBefore=7, spaceAfter=3
        ),
        "body": ParagraphStyle("body", fontName=regular, fontSize=8.5, leading=11, textColor=INK),
        "small": ParagraphStyle("small", fontName=regular, fontSize=7, leading=8.6, textColor=MUTED),
        "cell": ParagraphStyle("cell", fontName=regular, fontSize=8, leading=10, textColor=INK),
        "cellb": ParagraphStyle("cellb", fontName=bold, fontSize=8, leading=10, textColor=INK),
        "label": ParagraphStyle("label", fontName=regular, fontSize=7.5, leading=9.5, textColor=MUTED),
        "finding": ParagraphStyle("finding", fontName=bold, fontSize=14, leading=17, textColor=INK),
        "caption": ParagraphStyle("caption", fontName=regular, fontSize=7.5, leading=9, textColor=MUTED, alignment=1),
        "warn": ParagraphStyle("warn", fontName=bold, fontSize=8.5, leading=11, textColor=WARN_INK),
    }


def para(text: Any, style: ParagraphStyle) -> Paragraph:
    """A paragraph of plain text: ``text`` is converted with ``str`` and its markup characters escaped."""
    return Paragraph(escape(str(text)), style)


def kv_table(rows: list[tuple[str, str]], styles: dict[str, ParagraphStyle], width: float) -> Table:
    """A two-column label/value table ``width`` points wide, without borders."""
    data = [[para(k, styles["label"]), para(v, styles["cell"])] for k, v in rows]
    t = Table(data, colWidths=[27 * mm, width - 27 * mm])
    t.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("RIGHTPADDING", (0, 0), (-1, -1), 2),
                ("TOPPADDING", (0, 0), (-1, -1), 1),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
            ]
        )
    )
    return t


def alert(text: str, styles: dict[str, ParagraphStyle]) -> Table:
    """A full-width amber box: the research-use banner and warnings about a result."""
    box = Table([[para(text, styles["warn"])]], colWidths=[CONTENT_W])
    box.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, -1), WARN_BG),
                ("BOX", (0, 0), (-1, -1), 0.6, WARN_INK),
                ("LEFTPADDING", (0, 0), (-1, -1), 6),
                ("TOPPADDING", (0, 0), (-1, -1), 4),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
            ]
        )
    )
    return box


def columns(cells: list[list[Any]], widths: list[float], *style: tuple[Any, ...]) -> Table:
    """A borderless layout table (no outer padding), cells aligned to the top.

    Args:
        cells: Rows of cells; a cell may be a flowable or a list of flowables.
        widths: The column widths in points.
        *style: Extra ``TableStyle`` commands, applied after the defaults.

    Returns:
        The table.
    """
    table = Table(cells, colWidths=widths)
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                *style,
            ]
        )
    )
    return table


def image_flowable(source: Any, box: float) -> Flowable | None:
    """An image scaled to fit a ``box`` x ``box`` point square, keeping its aspect ratio.

    Args:
        source: A PNG path or an RGB/grayscale ``uint8`` array; ``None`` for no image.
        box: The side of the square in points.

    Returns:
        The flowable, or ``None`` when there is no image or the file is missing (logged as a warning).
    """
    if source is None:
        return None
    if isinstance(source, np.ndarray):
        # Straight from the pixels, deflated in the background (reporting.pdf_images; benchmarks/perf.md).
        h, w = source.shape[:2]
        scale = box / max(w, h)
        return ArrayImage(source, w * scale, h * scale)
    src = str(source)
    if not os.path.isfile(src):
        logger.warning("report image missing: %s", src)
        return None
    w, h = ImageReader(src).getSize()
    scale = box / max(w, h)
    return Image(src, width=w * scale, height=h * scale)


def footer(canvas: Any, doc: Any, report_id: str) -> None:
    """Draws the page footer: a rule, the research-use sentence, the report id and the page number."""
    regular, _ = font_names()
    canvas.saveState()
    canvas.setStrokeColor(RULE)
    canvas.line(MARGIN, 13 * mm, PAGE_W - MARGIN, 13 * mm)
    canvas.setFont(regular, 6.8)
    canvas.setFillColor(MUTED)
    canvas.drawString(MARGIN, 9.5 * mm, FOOTER_TEXT)
    canvas.drawRightString(PAGE_W - MARGIN, 9.5 * mm, f"Report {report_id}  ·  page {doc.page}")
    canvas.restoreState()


def render(story: list[Flowable], report_id: str) -> bytes:
    """Lays a story out on A4 pages with the footer on each.

    Args:
        story: The flowables, in order.
        report_id: The report's id, for the document title and the footer.

    Returns:
        The PDF bytes.
    """
    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=12 * mm,
        bottomMargin=17 * mm,
        title=f"brainxai report {report_id}",
        author="brainxai",
        subject="Research use only, not a diagnosis",
    )

    def on_page(canvas: Any, d: Any) -> None:
        footer(canvas, d, report_id)

    with binary_streams():
        doc.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return buf.getvalue()


@contextmanager
def binary_streams() -> Iterator[None]:
    """Stores the PDF's streams as binary instead of ASCII85 text (reportlab's default) while active.

    Without reportlab's optional C accelerator, its pure-Python ASCII85 encoder took about a third of
    the report's build time (``benchmarks/perf.md``); binary streams are standard PDF, and 15% smaller.
    """
    previous = rl_config.useA85
    rl_config.useA85 = 0
    try:
        yield
    finally:
        rl_config.useA85 = previous
