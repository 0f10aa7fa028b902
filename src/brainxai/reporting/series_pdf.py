"""The PDF report of a whole series: the series finding, its rule, the key slices, every slice's outcome.

Built from the layout building blocks of :mod:`brainxai.reporting.pdf_layout` (styles, tables, the research-use
banner, the page footer) and the single-image report's public sections (probability bars, parameters table, model
block), so both reports look and read alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reportlab.lib.units import mm
from reportlab.platypus import CondPageBreak, Flowable, KeepTogether, Paragraph, Spacer, Table, TableStyle

from brainxai.constants import CLASS_TITLES, NO_TUMOUR
from brainxai.reporting.labels import date_text, method_title
from brainxai.reporting.pdf import ProbabilityBars, model_block, parameters_table, probability_note
from brainxai.reporting.pdf_layout import (
    ACCENT,
    BAND,
    CONTENT_W,
    HALF_W,
    alert,
    columns,
    font_names,
    image_flowable,
    kv_table,
    para,
    paragraph_styles,
    render,
)
from brainxai.util.files import atomic_write_bytes

#: Images shown per key slice, with their captions.
KEY_IMAGES: tuple[tuple[str, str], ...] = (("original", "Slice"), ("heatmap", "Heatmap"), ("outline", "Overlay"))
#: The key image that replaces the bare slice when the series was segmented (the slice with the tumour outlined).
TUMOUR_KIND = "tumour"


def build_series_report(result: Mapping[str, Any], key_images: Mapping[int, Mapping[str, Any]]) -> bytes:
    """Renders the series report; ``key_images`` maps a key slice index to its images (as the image report's)."""
    styles = paragraph_styles()
    story: list[Flowable] = [
        *_header(result, styles),
        *_series_block(result, styles),
        *_finding(result, styles),
        *_tumour(result, styles),
        *_key_slices(result, key_images, styles),
        *_slice_table(result, styles),
        *_parameters(result, styles),
        *model_block(result, styles),
    ]
    return render(story, str(result.get("id", "")))


def write_series_report(
    result: Mapping[str, Any], key_images: Mapping[int, Mapping[str, Any]], path: str | Path
) -> Path:
    """Writes the series report PDF atomically (``result`` is :meth:`SeriesResult.to_dict`)."""
    path = Path(path)
    atomic_write_bytes(path, build_series_report(result, key_images))
    return path


def _header(result: Mapping[str, Any], styles: dict[str, Any]) -> list[Flowable]:
    series = result.get("series") or {}
    title = [
        para("brainxai · MRI series analysis report", styles["title"]),
        para(
            f"Explainable brain-tumour classification of a whole series ({series.get('n_slices', '?')} slices)",
            styles["subtitle"],
        ),
    ]
    created = date_text(str(result.get("created", "")))
    meta = Paragraph(f"Report ID: {result.get('id', '')}<br/>Date: {created}", styles["meta"])
    head = columns(
        [[title, meta]],
        [CONTENT_W * 0.66, CONTENT_W * 0.34],
        ("LINEBELOW", (0, 0), (-1, 0), 1.2, ACCENT),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 5),
    )
    banner = alert("RESEARCH USE ONLY — NOT A DIAGNOSIS. " + str(result.get("disclaimer", "")), styles)
    return [head, Spacer(1, 4), banner, Spacer(1, 4)]


def _series_rows(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    series = result.get("series") or {}
    spacing = series.get("pixel_spacing_mm")
    analysed, skipped = len(result.get("per_slice") or []), result.get("skipped") or []
    rows = [
        ("Source", str(series.get("file", result.get("source_name", "")))),
        ("Format", str(series.get("format", "")).upper()),
        ("Slices", f"{series.get('n_slices', '?')} in the volume; {analysed} analysed, {len(skipped)} skipped"),
        ("Pixel spacing", f"{spacing[0]:.3g} x {spacing[1]:.3g} mm (from the file)" if spacing else "unknown"),
    ]
    if series.get("slice_spacing_mm"):
        rows.append(("Slice spacing", f"{series['slice_spacing_mm']:.3g} mm (from the positions or header)"))
    for key, label in (("modality", "Modality"), ("sequence", "Sequence"), ("plane", "Plane")):
        if series.get(key):
            rows.append((label, str(series[key])))
    if series.get("slice_axis_selection"):
        rows.append(("Slice axis", str(series["slice_axis_selection"])))
    if result.get("series_uid"):
        rows.append(("Series UID", str(result["series_uid"])))
    return rows


def _series_block(result: Mapping[str, Any], styles: dict[str, Any]) -> list[Flowable]:
    return [para("Series", styles["h2"]), kv_table(_series_rows(result), styles, CONTENT_W)]


def _finding(result: Mapping[str, Any], styles: dict[str, Any]) -> list[Flowable]:
    prediction = str(result.get("prediction", ""))
    title = CLASS_TITLES.get(prediction, prediction)
    verdict = f"Tumour pattern: {title}" if prediction != NO_TUMOUR else "No tumour pattern found"
    keys = ", ".join(str(k) for k in result.get("key_slices") or [])
    summary = (
        f"Series probability {float(result.get('confidence', 0.0)):.1%} (mean over key slices {keys}). "
        f"Explanation: {method_title(str(result.get('method', '')))}."
    )
    if result.get("assessable") is False:
        verdict = "Not assessable: outside what this model was trained on"
        summary = f"Model output, not assessable (for reference only): {summary}"
    left = [
        para("Series finding (model output)", styles["h2"]),
        para(verdict, styles["finding"]),
        para(summary, styles["body"]),
    ]
    bars = [
        para("Series probabilities", styles["h2"]),
        ProbabilityBars(result.get("probabilities", {}), prediction, HALF_W, font_names()),
        para(probability_note(result.get("model") or {}), styles["small"]),
    ]
    story: list[Flowable] = [columns([[left, bars]], [HALF_W + 6 * mm, HALF_W]), Spacer(1, 3)]
    story.append(para(str(result.get("aggregation_rule", "")), styles["small"]))
    for line in result.get("warnings") or []:
        story += [Spacer(1, 3), alert(f"Warning: {line}", styles)]
    return story


def _tumour(result: Mapping[str, Any], styles: dict[str, Any]) -> list[Flowable]:
    """The segmented tumour's volume (or why none), with its method; nothing when the series was not segmented."""
    record = result.get("tumour_volume")
    if not record:
        return []
    model = record.get("model") or {}
    if record.get("volume_ml") is not None:
        volume = f"{record['volume_ml']:.2f} mL (estimate; voxel {record['voxel_volume_mm3']:.3g} mm³)"
    else:
        volume = f"not computed. {record.get('note', '')}"
    rows = [
        ("Tumour volume", volume),
        (
            "Tumour voxels",
            f"{record['voxels']:,} on {record['n_slices_with_tumour']} of {record['n_slices_segmented']} "
            "analysed slices",
        ),
        ("Model", f"{model.get('name', '?')} (segmentation), threshold {record.get('threshold', '?')}"),
    ]
    seg = result.get("segmentation") or {}
    if seg.get("relevance_in_tumour") is not None:
        rows.append(
            (
                "Relevance in tumour",
                f"{seg['relevance_in_tumour']:.0%} of the explanation's positive relevance on key slice "
                f"{seg.get('slice_index')} lies inside the segmented tumour",
            )
        )
    block = [
        para("Segmented tumour (segmentation model's estimate)", styles["h2"]),
        kv_table(rows, styles, CONTENT_W),
        para(f"Method: {record.get('method', '')}", styles["small"]),
    ]
    return [KeepTogether(block)]


def _key_slices(
    result: Mapping[str, Any], key_images: Mapping[int, Mapping[str, Any]], styles: dict[str, Any]
) -> list[Flowable]:
    prediction = str(result.get("prediction", ""))
    per_slice = {s["index"]: s for s in result.get("per_slice") or []}
    cell = min((CONTENT_W - 40 * mm) / 3, 42 * mm)
    rows = []
    for index in result.get("key_slices") or []:
        images = key_images.get(int(index), {})
        p = (per_slice.get(index) or {}).get("probabilities", {}).get(prediction)
        label = f"Slice {index}" + (f"<br/>P({CLASS_TITLES.get(prediction, prediction)}) = {p:.1%}" if p else "")
        # A segmented slice shows the tumour's outline on the slice in place of the bare slice.
        kinds = [TUMOUR_KIND if k == "original" and images.get(TUMOUR_KIND) is not None else k for k, _ in KEY_IMAGES]
        pics = [image_flowable(images.get(k), cell) or para("-", styles["caption"]) for k in kinds]
        rows.append([Paragraph(label, styles["cell"]), *pics])
    if not rows:
        return []
    table = Table(rows, colWidths=[40 * mm] + [cell] * 3)
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "MIDDLE"), ("ALIGN", (1, 0), (-1, -1), "CENTER")]))
    caption = "Columns: " + ", ".join(c for _, c in KEY_IMAGES) + f" ({method_title(str(result.get('method', '')))})."
    if result.get("tumour_volume"):
        caption += " Green on the slice: the segmented tumour's outline."
    # Kept together: the heading and the caption stay with the table of images.
    return [KeepTogether([para("Key slices", styles["h2"]), table, para(caption, styles["small"])])]


def _slice_table(result: Mapping[str, Any], styles: dict[str, Any]) -> list[Flowable]:
    prediction = str(result.get("prediction", ""))
    header = ["Slice", "Position (mm)", "Most probable", f"P({CLASS_TITLES.get(prediction, prediction)})"]
    rows: list[list[Any]] = [[para(h, styles["cellb"]) for h in header]]
    for s in result.get("per_slice") or []:
        position = s.get("position_mm")
        rows.append(
            [
                para(s["index"], styles["cell"]),
                para(f"{position:.1f}" if position is not None else "-", styles["cell"]),
                para(CLASS_TITLES.get(s["prediction"], s["prediction"]), styles["cell"]),
                para(f"{s['probabilities'].get(prediction, 0.0):.1%}", styles["cell"]),
            ]
        )
    for s in result.get("skipped") or []:
        where = s.get("index") if s.get("index") is not None else s.get("file", "-")
        rows.append(
            [para(where, styles["cell"]), para("skipped", styles["cell"]), para(s["reason"], styles["small"]), ""]
        )
    table = Table(rows, colWidths=[18 * mm, 26 * mm, 80 * mm, CONTENT_W - 124 * mm], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("LINEBELOW", (0, 0), (-1, 0), 0.8, ACCENT),
                ("ROWBACKGROUNDS", (0, 1), (-1, -1), [None, BAND]),
                ("TOPPADDING", (0, 0), (-1, -1), 1),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
            ]
        )
    )
    # Never leave the heading alone at the foot of a page (nor let the layout split it from its table).
    return [CondPageBreak(30 * mm), para("Every slice", styles["h2"]), table]


def _parameters(result: Mapping[str, Any], styles: dict[str, Any]) -> list[Flowable]:
    params = list(result.get("spatial_parameters") or [])
    story: list[Flowable] = []
    if params:
        story += [
            para("Spatial parameters (strongest key slice)", styles["h2"]),
            parameters_table(params, styles),
        ]
    story += [para(f"Note: {line}", styles["small"]) for line in result.get("notes") or []]
    return [KeepTogether(story)] if story else []
