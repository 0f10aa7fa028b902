"""The ten spatial parameters of a finding, measured from one 2-D slice.

Inputs are the display image, the explanation's region (a boolean mask: where the relevance map is
concentrated, *not* a segmentation), a brain mask and the pixel spacing. Every parameter carries its
unit and a one-line note on how it was obtained; anything a single slice cannot support is reported
as "not assessable" rather than as a number.

Image geometry conventions: rows run top to bottom, columns left to right. On an axial slice the top
of the image is taken as anterior. "Left" and "right" are sides of the *image*; which side of the
patient that is depends on the display convention (radiological: the patient's right is on the
image's left), which raster exports do not record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from brainxai.constants import NO_TUMOUR

#: Parameter keys, in report order.
PARAMETER_KEYS: tuple[str, ...] = (
    "anatomical_region",
    "hemisphere",
    "spatial_relation",
    "area_volume",
    "maximum_dimensions",
    "texture",
    "midline_shift",
    "peritumoral_oedema",
    "rcbv",
    "confidence",
)

PARAMETER_NAMES: dict[str, str] = {
    "anatomical_region": "Approximate anatomical region",
    "hemisphere": "Hemisphere",
    "spatial_relation": "Spatial relation (intra-/extra-axial)",
    "area_volume": "Region area and estimated volume",
    "maximum_dimensions": "Maximum dimensions",
    "texture": "Texture (intensity heterogeneity)",
    "midline_shift": "Midline shift",
    "peritumoral_oedema": "Peritumoral oedema",
    "rcbv": "Relative cerebral blood volume (rCBV)",
    "confidence": "Confidence",
}

NOT_APPLICABLE_NO_TUMOUR = "not applicable (no tumour region)"

#: Scalp plus skull: a region this close to the head mask's edge reaches the brain surface.
SURFACE_MARGIN_MM = 12.0
#: The same margin as a share of the head's width, for images without pixel spacing.
SURFACE_MARGIN_FRACTION = 0.07


@dataclass
class SpatialParameter:
    """One measured (or explicitly unmeasurable) parameter.

    Attributes:
        key: Stable identifier (see :data:`PARAMETER_KEYS`).
        name: Display name.
        value: A number, a category string, a dict of named numbers, or a "not ..." string.
        unit: Unit of the numbers in ``value`` ("" when dimensionless or categorical).
        method: One line on how the value was obtained.
        status: ``measured``, ``estimated``, ``not_assessable`` or ``not_applicable``.
        text: The value written for people, with units.
        details: Supporting numbers (for JSON consumers).
    """

    key: str
    name: str
    value: Any
    unit: str
    method: str
    status: str = "measured"
    text: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "method": self.method,
            "key": self.key,
            "status": self.status,
            "text": self.text or _default_text(self.value, self.unit),
            "details": self.details,
        }


def _default_text(value: Any, unit: str) -> str:
    if isinstance(value, float):
        return f"{value:.3g} {unit}".strip()
    return f"{value} {unit}".strip() if isinstance(value, (int, float)) else str(value)


def _param(key: str, value: Any, unit: str, method: str, status: str = "measured", text: str = "", **details: Any) -> SpatialParameter:
    return SpatialParameter(key, PARAMETER_NAMES[key], value, unit, method, status, text, details)


# --------------------------------------------------------------------------------------------------
# Geometry helpers (pure functions of masks and spacing)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spacing:
    """Pixel spacing as used for measurement: ``row`` and ``col`` sizes and their unit (``mm`` or ``px``)."""

    row: float = 1.0
    col: float = 1.0
    unit: str = "px"

    @classmethod
    def from_mm(cls, spacing_mm: tuple[float, float] | None) -> Spacing:
        if spacing_mm is None:
            return cls()
        return cls(float(spacing_mm[0]), float(spacing_mm[1]), "mm")

    @property
    def area_unit(self) -> str:
        return f"{self.unit}²"

    @property
    def volume_unit(self) -> str:
        return f"{self.unit}³"

    @property
    def mean(self) -> float:
        return (self.row + self.col) / 2


def region_area(mask: np.ndarray, spacing: Spacing = Spacing()) -> float:
    """Area of a mask: pixel count times the area of one pixel."""
    return float(np.count_nonzero(mask)) * spacing.row * spacing.col


def region_centroid(mask: np.ndarray) -> tuple[float, float]:
    """``(row, col)`` centroid in pixels."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError("empty mask has no centroid")
    return float(ys.mean()), float(xs.mean())


def ellipse_axes(mask: np.ndarray, spacing: Spacing = Spacing()) -> tuple[float, float]:
    """Full major and minor axis lengths of the ellipse with the mask's second moments.

    Moments are taken in physical units; each pixel contributes its own extent (``s²/12``), so a
    rasterised disk of radius ``r`` gives axes close to ``2r``.
    """
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return 0.0, 0.0
    pts = np.stack([xs * spacing.col, ys * spacing.row])
    cov = np.cov(pts, bias=True) if ys.size > 1 else np.zeros((2, 2))
    cov = cov + np.diag([spacing.col**2 / 12, spacing.row**2 / 12])
    eig = np.clip(np.linalg.eigvalsh(cov), 0, None)
    return 4 * math.sqrt(eig[1]), 4 * math.sqrt(eig[0])


def ellipsoid_volume(major: float, minor: float, depth: float | None = None) -> float:
    """Volume of an ellipsoid with full axes ``major``, ``minor`` and ``depth`` (default: ``minor``)."""
    depth = minor if depth is None else depth
    return math.pi / 6 * major * minor * depth


def feret_diameters(mask: np.ndarray, spacing: Spacing = Spacing()) -> tuple[float, float]:
    """Maximum Feret diameter of a mask and its width perpendicular to that diameter.

    Computed on the convex hull of the pixel squares' corners, in physical units.
    """
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return 0.0, 0.0
    corners = np.concatenate(
        [np.stack([xs + dx, ys + dy], axis=1) for dx in (-0.5, 0.5) for dy in (-0.5, 0.5)]
    ).astype(np.float32)
    hull = cv2.convexHull(corners).reshape(-1, 2).astype(np.float64)
    hull *= np.array([spacing.col, spacing.row])
    diff = hull[:, None, :] - hull[None, :, :]
    dist = np.sqrt((diff**2).sum(-1))
    i, j = np.unravel_index(int(np.argmax(dist)), dist.shape)
    longest = float(dist[i, j])
    if longest == 0:
        return 0.0, 0.0
    direction = (hull[j] - hull[i]) / longest
    normal = np.array([-direction[1], direction[0]])
    proj = hull @ normal
    return longest, float(proj.max() - proj.min())


def glcm_contrast(image: np.ndarray, mask: np.ndarray, levels: int = 16) -> float | None:
    """GLCM contrast inside a mask: 16 grey levels, distance 1, four directions, symmetric.

    Returns None when the mask holds no neighbouring pixel pairs.
    """
    q = (image.astype(np.int64) * levels) // 256
    h, w = q.shape
    glcm = np.zeros((levels, levels), dtype=np.float64)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        y0, y1 = 0, h - dy
        x0, x1 = max(0, -dx), w - max(0, dx)
        a_mask = mask[y0:y1, x0:x1] & mask[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
        a = q[y0:y1, x0:x1][a_mask]
        b = q[y0 + dy : y1 + dy, x0 + dx : x1 + dx][a_mask]
        np.add.at(glcm, (a, b), 1)
        np.add.at(glcm, (b, a), 1)
    total = glcm.sum()
    if total == 0:
        return None
    i, j = np.indices(glcm.shape)
    return float((glcm / total * (i - j) ** 2).sum())


def surface_distance(region: np.ndarray, brain: np.ndarray, spacing: Spacing = Spacing()) -> float:
    """Smallest distance from the region to the outside of the brain mask (0 when they touch)."""
    inside = region & brain
    if not inside.any() or (region & ~brain).any():
        return 0.0
    # Pad so the image border counts as outside the brain.
    padded = np.pad(brain.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    # distanceTransform measures to the centre of the nearest outside pixel; the edge is half a pixel nearer.
    return max(float(dist[inside].min()) - 0.5, 0.0) * spacing.mean


@dataclass(frozen=True)
class MidlineEstimate:
    """The ideal midline (a line through the anterior and posterior symmetry centres) and the central one.

    Points are ``(row, col)`` in pixels. ``shift`` is the signed perpendicular distance of the central
    point from the ideal line, in the spacing's unit, positive toward the image's right.
    """

    anterior: tuple[float, float]
    posterior: tuple[float, float]
    central: tuple[float, float]
    shift: float
    quality: float

    def column_at(self, row: float) -> float:
        (ya, xa), (yp, xp) = self.anterior, self.posterior
        if yp == ya:
            return xa
        return xa + (row - ya) * (xp - xa) / (yp - ya)


def _symmetry_centre(band: np.ndarray, valid: np.ndarray, lo: int, hi: int, half: int) -> tuple[float, float]:
    """Column about which a horizontal band is most mirror-symmetric, and the correlation there."""
    w = band.shape[1]
    # Pad so windows may run past the image edge; padded pixels are simply not compared.
    band = np.pad(band, ((0, 0), (half, half + 1)))
    valid = np.pad(valid, ((0, 0), (half, half + 1)))
    scores = []
    cols = list(range(max(lo, 1), min(hi, w - 2) + 1))
    for c in cols:
        p = c + half
        left = band[:, p - half : p][:, ::-1]
        right = band[:, p + 1 : p + 1 + half]
        ok = valid[:, p - half : p][:, ::-1] & valid[:, p + 1 : p + 1 + half]
        if ok.sum() < 0.3 * ok.size:
            scores.append(-1.0)
            continue
        a, b = left[ok], right[ok]
        sa, sb = a.std(), b.std()
        scores.append(float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb)) if sa > 1e-6 and sb > 1e-6 else -1.0)
    if not scores:
        return float("nan"), -1.0
    k = int(np.argmax(scores))
    best = float(cols[k])
    if 0 < k < len(scores) - 1:
        # Parabolic refinement to sub-pixel precision.
        s0, s1, s2 = scores[k - 1], scores[k], scores[k + 1]
        denom = s0 - 2 * s1 + s2
        if denom < 0:
            best += 0.5 * (s0 - s2) / denom
    return best, scores[k]


def estimate_midline(
    image: np.ndarray,
    brain: np.ndarray,
    exclude: np.ndarray | None = None,
    spacing: Spacing = Spacing(),
    min_quality: float = 0.4,
    max_tilt_deg: float = 20.0,
) -> MidlineEstimate | None:
    """Estimates the midline of an axial slice by left-right mirror symmetry.

    The ideal midline joins the symmetry centres of an anterior and a posterior band of the brain
    (where the falx attaches); the central band's symmetry centre stands for the septum pellucidum.
    Pixels in ``exclude`` (the tumour region) are left out of the comparison.

    Returns:
        The estimate, or None when the midline cannot be found (weak symmetry in any band, a
        tilted head, or an implausible result).
    """
    rows = np.flatnonzero(brain.any(axis=1))
    cols = np.flatnonzero(brain.any(axis=0))
    if rows.size < 20 or cols.size < 20:
        return None
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    c0, c1 = int(cols[0]), int(cols[-1]) + 1
    height, width = r1 - r0, c1 - c0
    sigma = max(width / 150, 0.8)
    smooth = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma)
    valid = np.ones_like(brain, dtype=bool)
    if exclude is not None and exclude.any():
        grow = max(round(width * 0.03), 1)
        valid = ~cv2.dilate(exclude.astype(np.uint8), np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)).astype(bool)
    centre = (c0 + c1) / 2
    search = round(0.12 * width)
    # A wide window: the outline and the ventricles together give a far steadier axis than either alone.
    half = max(round(0.4 * width), 3)

    def band_centre(f0: float, f1: float) -> tuple[tuple[float, float], float]:
        a, b = r0 + int(f0 * height), r0 + int(f1 * height)
        x, q = _symmetry_centre(smooth[a:b], valid[a:b], int(centre) - search, int(centre) + search, half)
        return ((a + b - 1) / 2, x), q

    anterior, qa = band_centre(0.08, 0.25)
    central, qc = band_centre(0.40, 0.60)
    posterior, qp = band_centre(0.75, 0.92)
    quality = min(qa, qc, qp)
    if not np.isfinite([anterior[1], central[1], posterior[1]]).all() or quality < min_quality:
        return None
    # Work in physical units so anisotropic pixels give true perpendicular distances.
    pa = np.array([anterior[1] * spacing.col, anterior[0] * spacing.row])
    pp = np.array([posterior[1] * spacing.col, posterior[0] * spacing.row])
    pc = np.array([central[1] * spacing.col, central[0] * spacing.row])
    axis = pp - pa
    length = float(np.linalg.norm(axis))
    if length == 0:
        return None
    tilt = math.degrees(math.atan2(abs(axis[0]), abs(axis[1])))
    if tilt > max_tilt_deg:
        return None
    u = axis / length
    rel = pc - pa
    # Cross product sign: positive when the central point lies toward the image's right (+x) of the line.
    shift = float(rel[0] * u[1] - rel[1] * u[0])
    if abs(shift) > 0.15 * width * spacing.col:
        return None
    return MidlineEstimate(anterior, posterior, central, shift, quality)


# --------------------------------------------------------------------------------------------------
# The ten parameters
# --------------------------------------------------------------------------------------------------


def _side_text(side: str, convention: str | None) -> str:
    patient = {"left": "right", "right": "left"}
    if side == "midline":
        return "midline (region crosses the image midline)"
    if convention == "radiological":
        return f"image {side} = patient's {patient[side]} (radiological display, from the file)"
    if convention == "neurological":
        return f"image {side} = patient's {side} (neurological display, from the file)"
    return f"image {side} (patient's {patient[side]} if displayed in the usual radiological convention)"


def _fmt(x: float, unit: str) -> str:
    if x >= 100:
        return f"{x:,.0f} {unit}"
    return f"{x:.1f} {unit}" if x >= 10 else f"{x:.2f} {unit}"


def compute_spatial_parameters(
    image: np.ndarray,
    region: np.ndarray,
    brain: np.ndarray,
    pixel_spacing_mm: tuple[float, float] | None,
    probability: float,
    agreement: float | None,
    *,
    prediction: str | None = None,
    agreement_method: str = "IoU of the relevance regions of two explanation methods",
    spacing_assumed: bool = False,
    plane: str | None = None,
    display_convention: str | None = None,
    sequence: str | None = None,
    perfusion: np.ndarray | None = None,
) -> list[SpatialParameter]:
    """Computes the ten spatial parameters of a finding on one slice.

    Args:
        image: ``(H, W)`` ``uint8`` display image.
        region: ``(H, W)`` bool mask of the explanation's region (same grid as ``image``).
        brain: ``(H, W)`` bool brain mask.
        pixel_spacing_mm: ``(row, col)`` spacing, or None (measurements are then in pixels).
        probability: The model's probability for its predicted class.
        agreement: Agreement between two explanation methods in [0, 1] (None if not computed).
        prediction: Predicted class; for ``notumor`` the region-based parameters are not applicable.
        agreement_method: How ``agreement`` was computed (goes into the method note).
        spacing_assumed: ``pixel_spacing_mm`` was assumed by the user, not read from the file.
        plane: ``axial``, ``coronal``, ``sagittal``, ``oblique`` or None (unknown; axial assumed).
        display_convention: ``radiological``, ``neurological`` or None (unknown).
        sequence: MR sequence if known (``T1``, ``T2``, ``FLAIR``...); oedema needs T2 or FLAIR.
        perfusion: Optional CBV map on the same grid; enables the rCBV ratio.

    Returns:
        Ten :class:`SpatialParameter`, in :data:`PARAMETER_KEYS` order.
    """
    if image.shape != region.shape or image.shape != brain.shape:
        raise ValueError(f"image {image.shape}, region {region.shape} and brain {brain.shape} must match")
    region = region.astype(bool)
    brain = brain.astype(bool)
    sp = Spacing.from_mm(pixel_spacing_mm)
    if sp.unit == "mm" and spacing_assumed:
        spacing_note = f" Pixel spacing {sp.row:g} x {sp.col:g} mm was ASSUMED by the user, not read from the file."
    elif sp.unit == "mm":
        spacing_note = f" Pixel spacing {sp.row:g} x {sp.col:g} mm from the file."
    else:
        spacing_note = " Pixel spacing unknown for this file, so sizes are in pixels."
    plane_known = plane or "axial (assumed; plane not recorded)"

    midline = estimate_midline(image, brain, exclude=region if region.any() else None, spacing=sp) \
        if plane in (None, "axial") else None
    params: dict[str, SpatialParameter] = {}
    params["midline_shift"] = _midline_param(midline, sp, plane, spacing_note)
    params["confidence"] = _confidence_param(probability, agreement, agreement_method)
    params["rcbv"] = _rcbv_param(perfusion, region, brain, midline, prediction)

    no_tumour = prediction == NO_TUMOUR
    empty = not region.any()
    region_keys = [k for k in PARAMETER_KEYS if k not in params]
    if no_tumour or empty:
        reason = NOT_APPLICABLE_NO_TUMOUR if no_tumour else "not assessable (the explanation highlighted no region)"
        status = "not_applicable" if no_tumour else "not_assessable"
        for key in region_keys:
            params[key] = _param(key, reason, "", "Region-based measurement; requires a tumour region.", status)
        return [params[k] for k in PARAMETER_KEYS]

    cy, cx = region_centroid(region)
    rows = np.flatnonzero(brain.any(axis=1))
    cols = np.flatnonzero(brain.any(axis=0))
    if rows.size and cols.size:
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    else:
        r0, r1, c0, c1 = 0, image.shape[0], 0, image.shape[1]
    mid_x = midline.column_at(cy) if midline is not None else (c0 + c1) / 2
    mid_source = "the estimated midline" if midline is not None else "the centre of the brain mask's width"
    half_w = max((c1 - c0) / 2, 1.0)
    u = (cx - mid_x) / half_w
    v = (cy - r0) / max(r1 - r0, 1)

    params["anatomical_region"] = _region_param(u, v, plane, prediction, plane_known)
    params["hemisphere"] = _hemisphere_param(region, mid_x, mid_source, plane, display_convention)
    params["spatial_relation"] = _relation_param(region, brain, sp)

    area = region_area(region, sp)
    major, minor = ellipse_axes(region, sp)
    volume = ellipsoid_volume(major, minor)
    params["area_volume"] = _param(
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

    longest, across = feret_diameters(region, sp)
    params["maximum_dimensions"] = _param(
        "maximum_dimensions",
        {"max_diameter": round(longest, 2), "perpendicular_diameter": round(across, 2)},
        sp.unit,
        "Maximum Feret diameter of the region (longest distance across its convex hull) and the width "
        "perpendicular to it, in-plane only." + spacing_note,
        "measured",
        f"{_fmt(longest, sp.unit)} x {_fmt(across, sp.unit)} (in-plane)",
    )
    params["texture"] = _texture_param(image, region)
    params["peritumoral_oedema"] = _oedema_param(image, region, brain, sp, sequence, spacing_note)
    return [params[k] for k in PARAMETER_KEYS]


def _region_param(u: float, v: float, plane: str | None, prediction: str | None, plane_known: str) -> SpatialParameter:
    method = (
        "Position of the region's centroid within the brain mask (left-right relative to the midline, "
        "front-back along the brain's height, top of the image = anterior), mapped to lobes with fixed "
        "thresholds. Approximate: one slice does not show its level, so temporal and parietal are not separated."
    )
    if plane not in (None, "axial"):
        return _param("anatomical_region", f"not assessable on a {plane} slice", "", method + f" Plane: {plane}.", "not_assessable")
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
    return _param(
        "anatomical_region", label, "", method + f" Plane: {plane_known}.", "estimated",
        f"{label} (approximate)", relative_position={"left_right": round(u, 3), "anterior_posterior": round(v, 3)},
    )


def _hemisphere_param(region: np.ndarray, mid_x: float, mid_source: str, plane: str | None, convention: str | None) -> SpatialParameter:
    conv = {"radiological": "radiological (from the file)", "neurological": "neurological (from the file)"}.get(
        convention or "", "not recorded in the file; the usual radiological display puts the patient's right on the image's left"
    )
    method = (
        f"Share of region pixels on each side of {mid_source}: more than 75% on one side gives that side, "
        f"otherwise midline. Sides are IMAGE sides; display convention: {conv}."
    )
    if plane == "sagittal":
        return _param("hemisphere", "not assessable on a sagittal slice", "", method, "not_assessable")
    xs = np.nonzero(region)[1]
    left = float((xs < mid_x).mean())
    side = "left" if left > 0.75 else "right" if left < 0.25 else "midline"
    return _param(
        "hemisphere", side, "", method, "measured", _side_text(side, convention),
        fraction_image_left=round(left, 3), midline_column=round(float(mid_x), 1),
    )


def _relation_param(region: np.ndarray, brain: np.ndarray, sp: Spacing) -> SpatialParameter:
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
        return _param("spatial_relation", "not assessable (no brain mask)", "", method, "not_assessable")
    dist = surface_distance(region, brain, sp)
    relation = "extra-axial" if dist <= margin else "intra-axial"
    text = (
        f"{relation} pattern: region reaches the brain surface ({_fmt(dist, sp.unit)} from the head's edge)"
        if relation == "extra-axial"
        else f"{relation} pattern: region {_fmt(dist, sp.unit)} from the head's edge"
    )
    return _param("spatial_relation", relation, "", method, "estimated", text,
                  distance_to_head_edge=round(dist, 2), distance_unit=sp.unit, margin=round(margin, 2))


def _texture_param(image: np.ndarray, region: np.ndarray) -> SpatialParameter:
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
        return _param("texture", "not assessable (region is black)", "", method, "not_assessable")
    category = "homogeneous" if cv < 0.15 else "mildly heterogeneous" if cv < 0.30 else "markedly heterogeneous"
    contrast_text = f", GLCM contrast {contrast:.2f}" if contrast is not None else ""
    return _param(
        "texture", category, "", method, "measured", f"{category} (CV {cv:.2f}{contrast_text})",
        coefficient_of_variation=round(cv, 4), glcm_contrast=None if contrast is None else round(contrast, 4),
    )


def _midline_param(midline: MidlineEstimate | None, sp: Spacing, plane: str | None, spacing_note: str) -> SpatialParameter:
    method = (
        "ESTIMATE: perpendicular distance between the central symmetry axis (septum level) and the line "
        "joining the anterior and posterior symmetry axes (falx), found by left-right mirror correlation "
        "with the tumour region left out. Not validated against manual measurement." + spacing_note
    )
    if plane not in (None, "axial"):
        return _param("midline_shift", f"not assessable on a {plane} slice", sp.unit, method, "not_assessable")
    if midline is None:
        return _param(
            "midline_shift", "not assessable (midline not found)", sp.unit, method, "not_assessable",
            "not assessable: no clear left-right symmetry axis on this slice",
        )
    shift = abs(midline.shift)
    direction = "toward the image right" if midline.shift > 0 else "toward the image left"
    text = f"~{_fmt(shift, sp.unit)} {direction}" if shift >= 0.05 else f"~0 {sp.unit} (none detected)"
    return _param(
        "midline_shift", round(shift, 2), sp.unit, method, "estimated", text,
        signed_shift=round(midline.shift, 2), symmetry_quality=round(midline.quality, 3),
    )


def _oedema_param(image: np.ndarray, region: np.ndarray, brain: np.ndarray, sp: Spacing,
                  sequence: str | None, spacing_note: str, ring_mm: float = 15.0) -> SpatialParameter:
    method = (
        "Oedema is visible only on T2-weighted or FLAIR images. When the sequence is known to be one of "
        "these, the ESTIMATE is the area of hyperintense brain (above median + 3 robust SD of the brain) "
        f"in a ring up to {ring_mm:g} mm around the region."
    )
    if sequence not in ("T2", "FLAIR"):
        why = "sequence unknown" if sequence is None else f"{sequence} sequence"
        return _param(
            "peritumoral_oedema", "not assessable on this image", "", method, "not_assessable",
            f"not assessable on this image ({why}; needs T2 or FLAIR)",
        )
    ring_px = max(round(ring_mm / sp.mean) if sp.unit == "mm" else 20, 1)
    grown = cv2.dilate(region.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring_px + 1,) * 2)).astype(bool)
    ring = grown & ~region & brain
    ref = image[brain & ~grown].astype(np.float64)
    if ring.sum() == 0 or ref.size < 50:
        return _param("peritumoral_oedema", "not assessable (no surrounding brain)", "", method, "not_assessable")
    med = float(np.median(ref))
    mad = float(np.median(np.abs(ref - med))) * 1.4826
    hyper = ring & (image > med + 3 * mad)
    area = region_area(hyper, sp)
    return _param(
        "peritumoral_oedema", round(area, 2), sp.area_unit, method + spacing_note, "estimated",
        f"~{_fmt(area, sp.area_unit)} of hyperintense tissue around the region ({sequence})",
        ring_fraction=round(float(hyper.sum() / ring.sum()), 3),
    )


def _rcbv_param(perfusion: np.ndarray | None, region: np.ndarray, brain: np.ndarray,
                midline: MidlineEstimate | None, prediction: str | None) -> SpatialParameter:
    method = (
        "rCBV needs perfusion MRI (DSC/DCE): mean CBV in the region divided by the mean CBV of the "
        "mirror-image region across the midline (or of the remaining brain when no midline is found)."
    )
    if perfusion is None:
        return _param("rcbv", "not measurable from a structural image", "ratio", method, "not_assessable",
                      "not measurable from a structural image (no perfusion map supplied)")
    if prediction == NO_TUMOUR or not region.any():
        return _param("rcbv", NOT_APPLICABLE_NO_TUMOUR, "ratio", method, "not_applicable")
    if perfusion.shape != region.shape:
        raise ValueError(f"perfusion map {perfusion.shape} does not match the image {region.shape}")
    ys, xs = np.nonzero(region)
    ref = np.zeros_like(region)
    if midline is not None:
        mx = np.round(2 * np.array([midline.column_at(y) for y in ys]) - xs).astype(int)
        ok = (mx >= 0) & (mx < region.shape[1])
        ref[ys[ok], mx[ok]] = True
        ref &= brain & ~region
        ref_note = "mirror region"
    if midline is None or ref.sum() < 0.5 * region.sum():
        ref = brain & ~cv2.dilate(region.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        ref_note = "remaining brain"
    denom = float(perfusion[ref].mean()) if ref.any() else 0.0
    if denom <= 0:
        return _param("rcbv", "not assessable (no reference perfusion)", "ratio", method, "not_assessable")
    ratio = float(perfusion[region].mean()) / denom
    return _param("rcbv", round(ratio, 3), "ratio", method, "measured", f"{ratio:.2f} (reference: {ref_note})",
                  reference=ref_note)


def _confidence_param(probability: float, agreement: float | None, agreement_method: str) -> SpatialParameter:
    method = (
        "Softmax probability of the predicted class (not calibrated against clinical outcomes); "
        f"explanation agreement: {agreement_method}."
    )
    level = "high" if probability >= 0.9 else "moderate" if probability >= 0.7 else "low"
    agree_text = f"; method agreement {agreement:.2f}" if agreement is not None else "; method agreement not computed"
    return _param(
        "confidence", round(float(probability), 4), "probability", method, "measured",
        f"{probability:.1%} ({level}){agree_text}",
        probability=round(float(probability), 4), agreement=None if agreement is None else round(float(agreement), 4),
        level=level,
    )
