"""The clinician-facing PDF report (ReportLab), built from an analysis result's dictionary.

One or two A4 pages: header with report id and date, a research-use banner, patient and scan details,
the finding with probability bars, the four images side by side, the ten spatial parameters with their
methods, guidance, and the model's identity. Every page repeats the disclaimer in its footer.

The layout building blocks (colours, styles, tables, banner, footer, rendering) live in
:mod:`brainxai.reporting.pdf_layout`; this module holds the single-image report's sections.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, KeepTogether, Spacer, Table, TableStyle

from brainxai.constants import CLASS_TITLES, DISCLAIMER, NO_TUMOUR
from brainxai.reporting.guidance import guidance_for
from brainxai.reporting.labels import date_text, mask_rule_text, method_title
from brainxai.reporting.pdf_layout import (
    ACCENT,
    BAND,
    BAR,
    BAR_TOP,
    CONTENT_W,
    HALF_W,
    INK,
    RULE,
    alert,
    columns,
    font_names,
    image_flowable,
    kv_table,
    para,
    paragraph_styles,
    render,
)
from brainxai.reporting.pdf_paragraph import Paragraph  # reportlab's, without repeated line breaking
from brainxai.util.files import atomic_write_bytes

#: Order and captions of the report's images; the first key found for each slot is used.
IMAGE_SLOTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("original",), "Original"),
    (("heatmap",), "Heatmap ({method})"),
    (("outline", "overlay"), "Overlay with outline"),
    (("mask",), "Relevance mask"),
)

#: How to read the images, for a tumour prediction and for "no tumour".
IMAGES_NOTE_TUMOUR = (
    "Warm colours mark the pixels that most supported the model's decision; the outline and the blue "
    "mask show the region derived from them. A relevance map is not a segmentation: the measurements "
    "below describe the highlighted region, not a delineated tumour."
)
IMAGES_NOTE_NO_TUMOUR = (
    "Prediction: no tumour, so no tumour region is drawn (heatmap and outline left empty; the mask "
    "view shows the head in green)."
)
#: With a segmented tumour: the heatmap and the tumour side by side (the tumour replaces the relevance mask).
SEGMENTATION_SLOTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("original",), "Original"),
    (("heatmap",), "Heatmap ({method})"),
    (("tumour",), "Segmented tumour (green)"),
    (("outline", "overlay"), "Overlay with relevance outline"),
)
IMAGES_NOTE_SEGMENTED = (
    "The heatmap is the explanation: warm colours mark the pixels that most supported the model's decision, "
    "the red outline the region derived from them. The green outline is the tumour as outlined by a separate "
    "segmentation model (automatic, not an expert delineation)."
)
#: "No tumour", yet the segmentation model outlined something (sizeable: the disagreement warning above).
IMAGES_NOTE_NO_TUMOUR_SEGMENTED = (
    "Prediction: no tumour, so no relevance region is drawn (heatmap and relevance outline left empty). The "
    "green outline is what a separate segmentation model outlined (automatic, not an expert delineation); "
    "when it is sizeable the two models disagree and the report says so above."
)


def probability_note(model: Mapping[str, Any]) -> str:
    """How the class probabilities were computed, in one sentence for the report."""
    temperature = model.get("temperature")
    # A refit on all training images has no held-out images of its own; its temperature comes from
    # the run its recipe was chosen on, which makes the calibration an approximation.
    if model.get("temperature_carried_over"):
        fit = (
            "fitted on training images held out from an earlier run of this model's recipe and carried over to "
            "this model, which was then trained on all training images, so that a probability of 90% is right "
            "roughly 90% of the time on this dataset"
        )
    else:
        fit = (
            "fitted on held-out training images, so that a probability of 90% is right about 90% of the time on "
            "this dataset"
        )
    how = (
        f"softmax of the model's outputs divided by {temperature:.3g} (temperature scaling {fit})"
        if isinstance(temperature, (int, float)) and temperature != 1.0
        else "softmax of the model's outputs (not calibrated)"
    )
    return f"Model probabilities: {how}. They are not the probability that the patient has the disease."


class ProbabilityBars(Flowable):
    """Horizontal bars, one per class, the predicted class darker."""

    def __init__(self, probabilities: Mapping[str, float], predicted: str, width: float, font: tuple[str, str]) -> None:
        super().__init__()
        self.items = list(probabilities.items())
        self.predicted = predicted
        self.width = width
        self.row_h = 11.0
        self.height = self.row_h * len(self.items)
        self.font = font

    def wrap(self, avail_w: float, avail_h: float) -> tuple[float, float]:
        return self.width, self.height

    def draw(self) -> None:
        c = self.canv
        label_w, value_w = 30 * mm, 14 * mm
        bar_w = self.width - label_w - value_w
        for i, (name, p) in enumerate(self.items):
            y = self.height - (i + 1) * self.row_h + 2
            top = name == self.predicted
            c.setFont(self.font[1] if top else self.font[0], 8)
            c.setFillColor(INK)
            c.drawString(0, y + 1, CLASS_TITLES.get(name, name))
            c.setFillColor(BAND)
            c.rect(label_w, y, bar_w, self.row_h - 4, stroke=0, fill=1)
            c.setFillColor(BAR_TOP if top else BAR)
            c.rect(label_w, y, bar_w * max(0.0, min(1.0, float(p))), self.row_h - 4, stroke=0, fill=1)
            c.setFillColor(INK)
            c.drawRightString(self.width, y + 1, f"{float(p):.1%}")


def _patient_block(patient: Mapping[str, Any] | None, styles: dict[str, ParagraphStyle], width: float) -> Flowable:
    fields = (
        ("name", "Name"),
        ("patient_id", "Patient ID"),
        ("age", "Age"),
        ("sex", "Sex"),
        ("referring_physician", "Referring physician"),
    )
    rows = [(label, str(patient[key])) for key, label in fields if patient and patient.get(key) not in (None, "")]
    if not rows:
        return para("No patient details were entered.", styles["body"])
    return kv_table(rows, styles, width)


def _scan_rows(scan: Mapping[str, Any]) -> list[tuple[str, str]]:
    spacing = scan.get("pixel_spacing_mm")
    assumed = scan.get("assumed_pixel_spacing_mm")
    if spacing:
        spacing_text = f"{spacing[0]:.3g} x {spacing[1]:.3g} mm (from the file)"
    elif assumed:
        spacing_text = f"not in the file; {assumed[0]:.3g} x {assumed[1]:.3g} mm ASSUMED by the user"
    else:
        spacing_text = "unknown: not recorded in this format; sizes are given in pixels"
    shape = scan.get("shape")
    rows = [
        ("File", str(scan.get("file", ""))),
        ("Format", str(scan.get("format", "")).upper()),
        ("Image size", f"{shape[1]} x {shape[0]} pixels" if shape else "?"),
        ("Pixel spacing", spacing_text),
    ]
    if scan.get("slice_index") is not None:
        how = scan.get("slice_selection")
        rows.append(("Slice", f"{scan['slice_index']}" + (f" ({how})" if how else "")))
    extras = [("modality", "Modality"), ("sequence", "Sequence"), ("plane", "Plane")]
    rows += [(label, str(scan[key])) for key, label in extras if scan.get(key)]
    return rows


def parameters_table(params: list[Mapping[str, Any]], styles: dict[str, ParagraphStyle]) -> Table:
    """The spatial parameters as a full-width table: number, name, result and method, one row each.

    Args:
        params: The parameters as dicts (``SpatialParameter.to_dict()``): name, text or value and unit, method.
        styles: The styles from :func:`~brainxai.reporting.pdf_layout.paragraph_styles`.

    Returns:
        The table, its header row repeated on each page.
    """
    header = [para(h, styles["cellb"]) for h in ("#", "Parameter", "Result", "Method")]
    rows = [header]
    for i, prm in enumerate(params, 1):
        result = prm.get("text") or f"{prm.get('value')} {prm.get('unit', '')}".strip()
        rows.append(
            [
                para(i, styles["cell"]),
                para(prm.get("name", ""), styles["cellb"]),
                para(result, styles["cell"]),
                para(prm.get("method", ""), styles["small"]),
            ]
        )
    t = Table(rows, colWidths=[6 * mm, 36 * mm, 52 * mm, CONTENT_W - 94 * mm], repeatRows=1)
    t.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEBELOW", (0, 0), (-1, 0), 0.8, ACCENT),
                ("LINEBELOW", (0, 1), (-1, -1), 0.25, RULE),
                ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, BAND]),
                ("LEFTPADDING", (0, 0), (-1, -1), 3),
                ("RIGHTPADDING", (0, 0), (-1, -1), 3),
                ("TOPPADDING", (0, 0), (-1, -1), 2.5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
            ]
        )
    )
    return t


def build_report(result: Mapping[str, Any], images: Mapping[str, Any]) -> bytes:
    """Renders the report and returns the PDF bytes (see :func:`write_report`)."""
    styles = paragraph_styles()
    story: list[Flowable] = [
        *_header(result, styles),
        *_patient_and_scan(result, styles),
        *_finding(result, styles),
        *_images(result, images, styles),
        *_parameters(result, styles),
        *_guidance(result, styles),
        *model_block(result, styles),
    ]
    return render(story, str(result.get("id", "")))


def _confidence(result: Mapping[str, Any]) -> float:
    probabilities: Mapping[str, float] = result.get("probabilities", {})
    return float(result.get("confidence", probabilities.get(str(result.get("prediction", "")), 0.0)))


def _header(result: Mapping[str, Any], styles: dict[str, ParagraphStyle]) -> list[Flowable]:
    """Title, report id and date, then the research-use banner."""
    report_id, created = str(result.get("id", "")), str(result.get("created", ""))
    title = [
        para("brainxai · MRI analysis report", styles["title"]),
        para("Explainable brain-tumour classification of a single MRI slice", styles["subtitle"]),
    ]
    meta = Paragraph(f"Report ID: {escape(report_id)}<br/>Date: {escape(date_text(created))}", styles["meta"])
    head = columns(
        [[title, meta]],
        [CONTENT_W * 0.66, CONTENT_W * 0.34],
        ("LINEBELOW", (0, 0), (-1, 0), 1.2, ACCENT),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 5),
    )
    banner = alert("RESEARCH USE ONLY — NOT A DIAGNOSIS. " + DISCLAIMER, styles)
    return [head, Spacer(1, 4), banner, Spacer(1, 4)]


def _patient_and_scan(result: Mapping[str, Any], styles: dict[str, ParagraphStyle]) -> list[Flowable]:
    """Patient details and scan details side by side."""
    cells = [
        [para("Patient", styles["h2"]), para("Scan", styles["h2"])],
        [
            _patient_block(result.get("patient"), styles, HALF_W),
            kv_table(_scan_rows(result.get("scan", {})), styles, HALF_W),
        ],
    ]
    return [columns(cells, [HALF_W + 6 * mm, HALF_W], ("TOPPADDING", (0, 0), (0, -1), 0))]


def _finding(result: Mapping[str, Any], styles: dict[str, ParagraphStyle]) -> list[Flowable]:
    """The verdict with its probability and agreement, the probability bars, then any warnings."""
    prediction = str(result.get("prediction", ""))
    method = str(result.get("method", ""))
    title = CLASS_TITLES.get(prediction, prediction)
    verdict = f"Tumour pattern: {title}" if prediction != NO_TUMOUR else "No tumour pattern found"
    summary = f"Type: {title}. Probability {_confidence(result):.1%}. Explanation: {method_title(method)}."
    if result.get("in_domain") is False:
        # Out of domain: the model output stays visible, marked as not assessable.
        verdict = "Not assessable: outside what this model was trained on"
        summary = f"Model output, not assessable (for reference only): {summary}"
    left = [
        para("Finding (model output)", styles["h2"]),
        para(verdict, styles["finding"]),
        para(summary + _agreement_text(result), styles["body"]),
    ]
    bars = [
        para("Class probabilities", styles["h2"]),
        ProbabilityBars(result.get("probabilities", {}), prediction, HALF_W, font_names()),
        para(probability_note(result.get("model") or {}), styles["small"]),
    ]
    story: list[Flowable] = [columns([[left, bars]], [HALF_W + 6 * mm, HALF_W]), Spacer(1, 3)]
    for line in result.get("warnings", []) or []:
        story += [alert(f"Warning: {line}", styles), Spacer(1, 3)]
    return story


def _agreement_text(result: Mapping[str, Any]) -> str:
    """`` Agreement with <method> ...: 0.xx.`` when a second method was run, else empty."""
    conf_param = next((p for p in result.get("spatial_parameters", []) if p.get("key") == "confidence"), None)
    agreement = (conf_param or {}).get("details", {}).get("agreement")
    second = (result.get("agreement") or {}).get("second_method")
    if isinstance(agreement, (int, float)) and second:
        return f" Agreement with {method_title(second)} (IoU of the highlighted regions): {agreement:.2f}."
    return ""


def _images(result: Mapping[str, Any], images: Mapping[str, Any], styles: dict[str, ParagraphStyle]) -> list[Flowable]:
    """The four images side by side with captions, and how to read them."""
    method = str(result.get("method", ""))
    cell = (CONTENT_W - 3 * 3 * mm) / 4
    pics, captions = [], []
    for keys, caption in SEGMENTATION_SLOTS if images.get("tumour") is not None else IMAGE_SLOTS:
        src = next((images[k] for k in keys if images.get(k) is not None), None)
        pics.append(image_flowable(src, cell) or para("(not available)", styles["caption"]))
        captions.append(para(caption.format(method=method_title(method)), styles["caption"]))
    gallery = Table([pics, captions], colWidths=[cell + 3 * mm] * 3 + [cell])
    gallery.setStyle(
        TableStyle(
            [
                ("ALIGN", (0, 0), (-1, -1), "CENTER"),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                ("TOPPADDING", (0, 1), (-1, 1), 2),
            ]
        )
    )
    tumour = str(result.get("prediction", "")) != NO_TUMOUR
    note = IMAGES_NOTE_TUMOUR if tumour else IMAGES_NOTE_NO_TUMOUR
    if images.get("tumour") is not None:
        note = IMAGES_NOTE_SEGMENTED if tumour else IMAGES_NOTE_NO_TUMOUR_SEGMENTED
    block = [para("Images", styles["h2"]), gallery, Spacer(1, 2), para(note, styles["small"])]
    return block + [para(line, styles["body"]) for line in _segmentation_lines(result.get("segmentation"))]


def _segmentation_lines(seg: Mapping[str, Any] | None) -> list[str]:
    """The segmented tumour's size, the relevance inside it and the model, in two sentences (none without one)."""
    if not seg:
        return []
    model = seg.get("model") or {}
    who = f"segmentation model {model.get('name', '?')} (SHA-256 {str(model.get('sha256', '?'))[:12]}…, "
    who += f"{mask_rule_text(seg)})"
    if seg.get("status") == "empty":
        return [f"Segmented tumour: none outlined by the {who}."]
    unit = seg.get("diameter_unit", "px")
    area = f"{seg.get('area_px', 0):,} px²"
    if seg.get("area_mm2") is not None:
        assumed = ", pixel spacing ASSUMED" if seg.get("pixel_spacing_source") == "assumed" else ""
        area = f"{seg['area_mm2']:,.1f} mm² ({area}{assumed})"
    size = f"{seg.get('max_diameter', 0):.1f} x {seg.get('perpendicular_diameter', 0):.1f} {unit}"
    lines = [f"Segmented tumour ({who}): area {area}, maximum diameter {size}."]
    inside = seg.get("relevance_in_tumour")
    if isinstance(inside, (int, float)):
        lines.append(
            f"Relevance in tumour: {inside:.0%} of the explanation's positive relevance lies inside the segmented "
            "tumour (positive relevance inside the outline / all positive relevance)."
        )
    if seg.get("used_for_parameters"):
        lines.append("The lesion parameters below are measured on the segmented tumour (source: segmentation).")
    elif not seg.get("disagreement"):
        # A "no tumour" finding with a small outline: say why it is neither measured nor flagged.
        lines.append(
            f"The classifier found no tumour and this outline ({seg.get('area_model_grid_px', 0):,.0f} px² on the "
            f"classifier's input grid) is below the {seg.get('disagreement_min_area_model_grid_px', 100):g} px² at "
            "which the two models are reported to disagree: it is not measured as a lesion."
        )
    return lines


def _parameters(result: Mapping[str, Any], styles: dict[str, ParagraphStyle]) -> list[Flowable]:
    """The spatial parameters table, then the analysis notes."""
    params = list(result.get("spatial_parameters", []))
    story: list[Flowable] = [para("Spatial parameters", styles["h2"]), parameters_table(params, styles)]
    story += [para(f"Note: {line}", styles["small"]) for line in result.get("notes", []) or []]
    return story


def _guidance(result: Mapping[str, Any], styles: dict[str, ParagraphStyle]) -> list[Flowable]:
    """Typical next steps for the finding (none for an unknown class)."""
    prediction = str(result.get("prediction", ""))
    if prediction not in CLASS_TITLES or result.get("in_domain") is False:
        return []
    g = guidance_for(prediction, _confidence(result))
    block: list[Flowable] = [para(g.title, styles["h2"]), para(g.summary, styles["body"]), Spacer(1, 2)]
    block += [Paragraph(f"•&nbsp;&nbsp;{escape(s)}", styles["body"]) for s in g.steps]
    block += [Spacer(1, 2), para(g.caveat, styles["small"])]
    return [KeepTogether(block)]


def model_block(result: Mapping[str, Any], styles: dict[str, ParagraphStyle]) -> list[Flowable]:
    """The model block: the model's identity and versions, then the disclaimer, kept together on one page.

    Args:
        result: A result dict with ``model`` (name, checkpoint, created, version, sha256) and ``brainxai_version``.
        styles: The styles from :func:`~brainxai.reporting.pdf_layout.paragraph_styles`.

    Returns:
        The flowables to add to a report's story.
    """
    model = result.get("model", {}) or {}
    name, checkpoint, created = (model.get(k, "?") for k in ("name", "checkpoint", "created"))
    trained_with, report_by = model.get("version", "?"), result.get("brainxai_version", "?")
    versions = f"trained with brainxai {trained_with}; report by brainxai {report_by}"
    rows = [
        ("Model", f"{name} (checkpoint {checkpoint}, created {created})"),
        ("Version", versions),
        ("SHA-256", str(model.get("sha256", "?"))),
    ]
    return [
        KeepTogether(
            [
                para("Model", styles["h2"]),
                kv_table(rows, styles, CONTENT_W),
                Spacer(1, 4),
                para(DISCLAIMER, styles["small"]),
            ]
        )
    ]


def write_report(result: Mapping[str, Any], images: Mapping[str, Any], path: str | Path) -> Path:
    """Writes the PDF report atomically.

    Args:
        result: An analysis result as a dict (``AnalysisResult.to_dict()``): id, created, prediction,
            probabilities, confidence, method, spatial_parameters, scan, model, optional patient.
        images: ``original``, ``heatmap``, ``outline`` (or ``overlay``) and ``mask``, each a PNG path or
            an RGB/grayscale ``uint8`` array.
        path: Where to write the PDF.

    Returns:
        The path written.
    """
    path = Path(path)
    atomic_write_bytes(path, build_report(result, images))
    return path
