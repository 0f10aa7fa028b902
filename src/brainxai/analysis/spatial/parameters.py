"""The ten spatial parameters, one builder each.

Every builder returns a :class:`~brainxai.analysis.spatial.schema.SpatialParameter` with its unit, a
method note, and a status; what one slice cannot support comes back as "not assessable", never as a
number. "Left" and "right" are sides of the *image* (see :mod:`brainxai.analysis.spatial`).
"""

from __future__ import annotations

import cv2
import numpy as np

from brainxai.analysis.spatial.geometry import (
    Spacing,
    ellipse_axes,
    ellipsoid_volume,
    feret_diameters,
    glcm_contrast,
    region_area,
    surface_distance,
)
from brainxai.analysis.spatial.midline import MidlineEstimate
from brainxai.analysis.spatial.schema import NOT_APPLICABLE_NO_TUMOUR, SpatialParameter, make_parameter
from brainxai.constants import NO_TUMOUR

#: Scalp plus skull: a region this close to the head mask's edge reaches the brain surface.
SURFACE_MARGIN_MM = 12.0
#: The same margin as a share of the head's width, for images without pixel spacing.
SURFACE_MARGIN_FRACTION = 0.07


def _fmt(x: float, unit: str) -> str:
    if x >= 100:
        return f"{x:,.0f} {unit}"
    return f"{x:.1f} {unit}" if x >= 10 else f"{x:.2f} {unit}"


def _side_text(side: str, convention: str | None) -> str:
    patient = {"left": "right", "right": "left"}
    if side == "midline":
        return "midline (region crosses the image midline)"
    if convention == "radiological":
        return f"image {side} = patient's {patient[side]} (radiological display, from the file)"
    if convention == "neurological":
        return f"image {side} = patient's {side} (neurological display, from the file)"
    return f"image {side} (patient's {patient[side]} if displayed in the usual radiological convention)"


def spacing_note(sp: Spacing, assumed: bool) -> str:
    """The sentence on where the pixel spacing came from, appended to size-based method notes."""
    if sp.unit == "mm" and assumed:
        return f" Pixel spacing {sp.row:g} x {sp.col:g} mm was ASSUMED by the user, not read from the file."
    if sp.unit == "mm":
        return f" Pixel spacing {sp.row:g} x {sp.col:g} mm from the file."
    return " Pixel spacing unknown for this file, so sizes are in pixels."


def region_not_measured(key: str, no_tumour: bool) -> SpatialParameter:
    """A region-based parameter when there is no region: no tumour predicted, or none highlighted."""
    reason = NOT_APPLICABLE_NO_TUMOUR if no_tumour else "not assessable (the explanation highlighted no region)"
    status = "not_applicable" if no_tumour else "not_assessable"
    return make_parameter(key, reason, "", "Region-based measurement; requires a tumour region.", status)


def anatomical_region(u: float, v: float, plane: str | None, prediction: str | None) -> SpatialParameter:
    """Lobe from the centroid's relative position: ``u`` left-right of the midline, ``v`` front to back."""
    plane_known = plane or "axial (assumed; plane not recorded)"
    method = (
        "Position of the region's centroid within the brain mask (left-right relative to the midline, "
        "front-back along the brain's height, top of the image = anterior), mapped to lobes with fixed "
        "thresholds. Approximate: one slice does not show its level, so temporal and parietal are not separated."
    )
    if plane not in (None, "axial"):
        return make_parameter(
            "anatomical_region",
            f"not assessable on a {plane} slice",
            "",
            method + f" Plane: {plane}.",
            "not_assessable",
        )
    if abs(u) < 0.25 and 0.3 <= v <= 0.7:
        label = "sellar / suprasellar region" if prediction == "pituitary" else "central / deep midline structures"
    elif v < 0.33:
        label = "frontal lobe"
    elif v > 0.75:
        label = "occipital lobe (or posterior fossa on low slices)"
    elif abs(u) >= 0.45:
        label = "temporal or parietal lobe (lateral)"
    else:
        label = "deep / periventricular region"
    return make_parameter(
        "anatomical_region",
        label,
        "",
        method + f" Plane: {plane_known}.",
        "estimated",
        f"{label} (approximate)",
        relative_position={"left_right": round(u, 3), "anterior_posterior": round(v, 3)},
    )


def hemisphere(
    region: np.ndarray, mid_x: float, mid_source: str, plane: str | None, convention: str | None
) -> SpatialParameter:
    """Image side holding more than 75% of the region (else midline), relative to column ``mid_x``."""
    conv = {"radiological": "radiological (from the file)", "neurological": "neurological (from the file)"}.get(
        convention or "",
        "not recorded in the file; the usual radiological display puts the patient's right on the image's left",
    )
    method = (
        f"Share of region pixels on each side of {mid_source}: more than 75% on one side gives that side, "
        f"otherwise midline. Sides are IMAGE sides; display convention: {conv}."
    )
    if plane == "sagittal":
        return make_parameter("hemisphere", "not assessable on a sagittal slice", "", method, "not_assessable")
    xs = np.nonzero(region)[1]
    left = float((xs < mid_x).mean())
    side = "left" if left > 0.75 else "right" if left < 0.25 else "midline"
    return make_parameter(
        "hemisphere",
        side,
        "",
        method,
        "measured",
        _side_text(side, convention),
        fraction_image_left=round(left, 3),
        midline_column=round(float(mid_x), 1),
    )


def spatial_relation(region: np.ndarray, brain: np.ndarray, sp: Spacing) -> SpatialParameter:
    """Extra-axial when the region reaches the brain surface, intra-axial otherwise."""
    # The mask is the whole head (no skull stripping on one slice), so the brain's surface lies about
    # one scalp-plus-skull thickness (typically 5-12 mm) inside the mask's edge.
    head_width = float(np.count_nonzero(brain.any(axis=0)))
    margin = SURFACE_MARGIN_MM if sp.unit == "mm" else SURFACE_MARGIN_FRACTION * head_width
    margin_text = f"{SURFACE_MARGIN_MM:g} mm" if sp.unit == "mm" else f"{SURFACE_MARGIN_FRACTION:.0%} of the head width"
    method = (
        "Shortest distance from the region to the edge of the head mask. The mask includes scalp and skull, "
        f"so a region within {margin_text} of its edge is taken to reach the brain surface, suggesting an "
        "extra-axial (dura-based) lesion; a region further in suggests an intra-axial one. Suggestive only: "
        "intra-axial tumours can reach the cortex."
    )
    if not brain.any():
        return make_parameter("spatial_relation", "not assessable (no brain mask)", "", method, "not_assessable")
    dist = surface_distance(region, brain, sp)
    relation = "extra-axial" if dist <= margin else "intra-axial"
    text = (
        f"{relation} pattern: region reaches the brain surface ({_fmt(dist, sp.unit)} from the head's edge)"
        if relation == "extra-axial"
        else f"{relation} pattern: region {_fmt(dist, sp.unit)} from the head's edge"
    )
    return make_parameter(
        "spatial_relation",
        relation,
        "",
        method,
        "estimated",
        text,
        distance_to_head_edge=round(dist, 2),
        distance_unit=sp.unit,
        margin=round(margin, 2),
    )


def area_volume(region: np.ndarray, sp: Spacing, spacing_note: str) -> SpatialParameter:
    """Measured area and an ellipsoid volume ESTIMATE (depth assumed equal to the shorter in-plane axis)."""
    area = region_area(region, sp)
    major, minor = ellipse_axes(region, sp)
    volume = ellipsoid_volume(major, minor)
    return make_parameter(
        "area_volume",
        {"area": round(area, 2), "estimated_volume": round(volume, 1)},
        f"{sp.area_unit}, {sp.volume_unit}",
        "Area = region pixel count x pixel area. Volume is an ESTIMATE: ellipsoid (pi/6 x a x b x c) from the "
        "region's moment-equivalent ellipse axes a, b, assuming the out-of-plane depth c equals the shorter "
        "axis b; one slice cannot measure depth." + spacing_note,
        "estimated",
        f"area {_fmt(area, sp.area_unit)}; estimated volume ~{_fmt(volume, sp.volume_unit)}"
        + (f" (~{volume / 1000:.1f} cm³)" if sp.unit == "mm" and volume >= 100 else ""),
        ellipse_major=round(major, 2),
        ellipse_minor=round(minor, 2),
        pixels=int(region.sum()),
    )


def maximum_dimensions(region: np.ndarray, sp: Spacing, spacing_note: str) -> SpatialParameter:
    """Maximum Feret diameter and the width perpendicular to it, in-plane."""
    longest, across = feret_diameters(region, sp)
    return make_parameter(
        "maximum_dimensions",
        {"max_diameter": round(longest, 2), "perpendicular_diameter": round(across, 2)},
        sp.unit,
        "Maximum Feret diameter of the region (longest distance across its convex hull) and the width "
        "perpendicular to it, in-plane only." + spacing_note,
        "measured",
        f"{_fmt(longest, sp.unit)} x {_fmt(across, sp.unit)} (in-plane)",
    )


def texture(image: np.ndarray, region: np.ndarray) -> SpatialParameter:
    """Heterogeneity category from the coefficient of variation inside the region, GLCM contrast as support."""
    vals = image[region].astype(np.float64)
    mean = float(vals.mean())
    cv = float(vals.std() / mean) if mean > 0 else float("nan")
    contrast = glcm_contrast(image, region)
    method = (
        "Coefficient of variation (SD / mean) of display intensities inside the region, categorised at "
        "0.15 and 0.30 (inside expert-boxed tumours of a development set: meningioma median 0.09, glioma "
        "0.24); GLCM contrast (16 grey levels, distance 1, 4 directions) as support. Surrounding tissue "
        "inside the region raises the CV; display intensities are not calibrated tissue values."
    )
    if not np.isfinite(cv):
        return make_parameter("texture", "not assessable (region is black)", "", method, "not_assessable")
    category = "homogeneous" if cv < 0.15 else "mildly heterogeneous" if cv < 0.30 else "markedly heterogeneous"
    contrast_text = f", GLCM contrast {contrast:.2f}" if contrast is not None else ""
    return make_parameter(
        "texture",
        category,
        "",
        method,
        "measured",
        f"{category} (CV {cv:.2f}{contrast_text})",
        coefficient_of_variation=round(cv, 4),
        glcm_contrast=None if contrast is None else round(contrast, 4),
    )


def midline_shift(
    midline: MidlineEstimate | None, sp: Spacing, plane: str | None, spacing_note: str
) -> SpatialParameter:
    """Size and side of the estimated midline shift (axial slices only)."""
    method = (
        "ESTIMATE: perpendicular distance between the central symmetry axis (septum level) and the line "
        "joining the anterior and posterior symmetry axes (falx), found by left-right mirror correlation "
        "with the tumour region left out. Not validated against manual measurement." + spacing_note
    )
    if plane not in (None, "axial"):
        return make_parameter("midline_shift", f"not assessable on a {plane} slice", sp.unit, method, "not_assessable")
    if midline is None:
        return make_parameter(
            "midline_shift",
            "not assessable (midline not found)",
            sp.unit,
            method,
            "not_assessable",
            "not assessable: no clear left-right symmetry axis on this slice",
        )
    shift = abs(midline.shift)
    direction = "toward the image right" if midline.shift > 0 else "toward the image left"
    text = f"~{_fmt(shift, sp.unit)} {direction}" if shift >= 0.05 else f"~0 {sp.unit} (none detected)"
    return make_parameter(
        "midline_shift",
        round(shift, 2),
        sp.unit,
        method,
        "estimated",
        text,
        signed_shift=round(midline.shift, 2),
        symmetry_quality=round(midline.quality, 3),
    )


def _hyperintense_ring(
    image: np.ndarray, region: np.ndarray, brain: np.ndarray, ring_px: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The brain in a ring of ``ring_px`` around the region, and its part above median + 3 robust SD of the brain.

    None when there is no ring or too little brain outside it to set the threshold.
    """
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring_px + 1,) * 2)
    grown = cv2.dilate(region.astype(np.uint8), kernel).astype(bool)
    ring = grown & ~region & brain
    ref = image[brain & ~grown].astype(np.float64)
    if ring.sum() == 0 or ref.size < 50:
        return None
    med = float(np.median(ref))
    mad = float(np.median(np.abs(ref - med))) * 1.4826
    return ring, ring & (image > med + 3 * mad)


def peritumoral_oedema(
    image: np.ndarray,
    region: np.ndarray,
    brain: np.ndarray,
    sp: Spacing,
    sequence: str | None,
    spacing_note: str,
    ring_mm: float = 15.0,
) -> SpatialParameter:
    """Area of hyperintense brain in a ring around the region, on T2 or FLAIR images only."""
    method = (
        "Oedema is visible only on T2-weighted or FLAIR images. When the sequence is known to be one of "
        "these, the ESTIMATE is the area of hyperintense brain (above median + 3 robust SD of the brain) "
        f"in a ring up to {ring_mm:g} mm around the region."
    )
    if sequence not in ("T2", "FLAIR"):
        why = "sequence unknown" if sequence is None else f"{sequence} sequence"
        return make_parameter(
            "peritumoral_oedema",
            "not assessable on this image",
            "",
            method,
            "not_assessable",
            f"not assessable on this image ({why}; needs T2 or FLAIR)",
        )
    ring_px = max(round(ring_mm / sp.mean) if sp.unit == "mm" else 20, 1)
    rings = _hyperintense_ring(image, region, brain, ring_px)
    if rings is None:
        return make_parameter(
            "peritumoral_oedema", "not assessable (no surrounding brain)", "", method, "not_assessable"
        )
    ring, hyper = rings
    area = region_area(hyper, sp)
    return make_parameter(
        "peritumoral_oedema",
        round(area, 2),
        sp.area_unit,
        method + spacing_note,
        "estimated",
        f"~{_fmt(area, sp.area_unit)} of hyperintense tissue around the region ({sequence})",
        ring_fraction=round(float(hyper.sum() / ring.sum()), 3),
    )


def _rcbv_reference(region: np.ndarray, brain: np.ndarray, midline: MidlineEstimate | None) -> tuple[np.ndarray, str]:
    """Reference pixels for rCBV: the region mirrored across the midline, else the brain away from the region."""
    ref = np.zeros_like(region)
    if midline is not None:
        ys, xs = np.nonzero(region)
        mx = np.round(2 * np.array([midline.column_at(float(y)) for y in ys]) - xs).astype(int)
        ok = (mx >= 0) & (mx < region.shape[1])
        ref[ys[ok], mx[ok]] = True
        ref &= brain & ~region
        if ref.sum() >= 0.5 * region.sum():
            return ref, "mirror region"
    return brain & ~cv2.dilate(region.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool), "remaining brain"


def rcbv(
    perfusion: np.ndarray | None,
    region: np.ndarray,
    brain: np.ndarray,
    midline: MidlineEstimate | None,
    prediction: str | None,
) -> SpatialParameter:
    """Mean CBV in the region over that of a reference (mirror region or remaining brain), from a perfusion map.

    Raises:
        ValueError: The perfusion map is not on the image's grid.
    """
    method = (
        "rCBV needs perfusion MRI (DSC/DCE): mean CBV in the region divided by the mean CBV of the "
        "mirror-image region across the midline (or of the remaining brain when no midline is found)."
    )
    if perfusion is None:
        return make_parameter(
            "rcbv",
            "not measurable from a structural image",
            "ratio",
            method,
            "not_assessable",
            "not measurable from a structural image (no perfusion map supplied)",
        )
    if prediction == NO_TUMOUR or not region.any():
        return make_parameter("rcbv", NOT_APPLICABLE_NO_TUMOUR, "ratio", method, "not_applicable")
    if perfusion.shape != region.shape:
        raise ValueError(f"perfusion map {perfusion.shape} does not match the image {region.shape}")
    ref, ref_note = _rcbv_reference(region, brain, midline)
    denom = float(perfusion[ref].mean()) if ref.any() else 0.0
    if denom <= 0:
        return make_parameter("rcbv", "not assessable (no reference perfusion)", "ratio", method, "not_assessable")
    ratio = float(perfusion[region].mean()) / denom
    return make_parameter(
        "rcbv", round(ratio, 3), "ratio", method, "measured", f"{ratio:.2f} (reference: {ref_note})", reference=ref_note
    )


def confidence(probability: float, agreement: float | None, agreement_method: str) -> SpatialParameter:
    """The predicted class's probability as a level, with the explanation methods' agreement."""
    method = (
        "Softmax probability of the predicted class (not calibrated against clinical outcomes); "
        f"explanation agreement: {agreement_method}."
    )
    level = "high" if probability >= 0.9 else "moderate" if probability >= 0.7 else "low"
    agree_text = f"; method agreement {agreement:.2f}" if agreement is not None else "; method agreement not computed"
    return make_parameter(
        "confidence",
        round(float(probability), 4),
        "probability",
        method,
        "measured",
        f"{probability:.1%} ({level}){agree_text}",
        probability=round(float(probability), 4),
        agreement=None if agreement is None else round(float(agreement), 4),
        level=level,
    )
