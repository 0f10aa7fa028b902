"""Pictures of an explanation: heatmap, overlay, relevance mask and region outline.

All functions return ``(H, W, 3)`` RGB ``uint8`` arrays at the resolution of the image they are
given. Relevance maps are resized to it when their shape differs (bilinear); a map computed on the
cropped model input is first placed back into the scan with :func:`relevance_to_original`.

Display scaling: only positive relevance (evidence for the explained class) is shown, divided by
its 99.5th percentile so a few extreme pixels (common with LRP) do not wash the rest out.
"""

from __future__ import annotations

import cv2
import numpy as np

from brainxai.analysis.region import brain_mask, relevance_region
from brainxai.constants import CLASS_TITLES, NO_TUMOUR

#: RGB colours of the mask view.
REGION_COLOUR = (40, 90, 255)  # blue: relevance region
BORDER_COLOUR = (255, 0, 0)  # red: its border
BRAIN_COLOUR = (0, 200, 70)  # green: head outside the region
OUTLINE_COLOUR = (255, 40, 40)

#: Opacity of the colour fills in the mask view.
MASK_ALPHA = 0.45


def relevance_to_original(
    relevance: np.ndarray, box: tuple[int, int, int, int], original_shape: tuple[int, int]
) -> np.ndarray:
    """Places a model-input map back into the scan it came from.

    Preprocessing crops the scan to ``box`` and resizes the crop to a square; this undoes the resize
    (bilinear) and puts the map inside the box, with zero relevance outside it.

    Args:
        relevance: ``(S, S)`` map at model-input resolution.
        box: ``(x0, y0, x1, y1)`` crop box in original pixels, ``x1``/``y1`` exclusive (as returned by
            ``prepare_with_box``).
        original_shape: ``(H, W)`` of the original scan.

    Returns:
        ``(H, W)`` float32 map.
    """
    h, w = original_shape
    x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ValueError(f"crop box {box} does not fit an image of shape {original_shape}")
    out = np.zeros((h, w), np.float32)
    out[y0:y1, x0:x1] = cv2.resize(relevance.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    return out


def _fit(relevance: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    r: np.ndarray = relevance.astype(np.float32)
    if r.shape != shape:
        r = cv2.resize(r, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return r


def normalise_relevance(relevance: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """Positive relevance scaled to [0, 1] by its ``percentile`` (0 where there is none)."""
    r = np.nan_to_num(relevance.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    pos = np.maximum(r, 0.0)
    nonzero = pos[pos > 0]
    if nonzero.size == 0:
        return np.zeros_like(pos)
    scale = float(np.percentile(nonzero, percentile))
    if scale <= 0:
        scale = float(nonzero.max())
    return np.clip(pos / scale, 0.0, 1.0)


def _gray_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        return image.astype(np.uint8)
    return np.repeat(image.astype(np.uint8)[..., None], 3, axis=2)


#: Top of the "hot" colour map used: 215 of 255 ends at bright yellow, before the white that would
#: read as "no colour" on an overlay.
_HOT_TOP = 215


def heatmap_image(relevance: np.ndarray) -> np.ndarray:
    """Positive relevance in warm colours (black, red, orange, yellow: the "hot" colour map)."""
    level = np.round(normalise_relevance(relevance) * _HOT_TOP).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(level, cv2.COLORMAP_HOT), cv2.COLOR_BGR2RGB)


def overlay_image(image: np.ndarray, relevance: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The heatmap blended onto the scan.

    Each pixel's opacity is ``alpha`` x its normalised relevance, so pixels without evidence show the
    scan unchanged and ``alpha`` sets the strongest tint.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = _gray_rgb(image).astype(np.float32)
    r = _fit(relevance, base.shape[:2])
    weight = (alpha * normalise_relevance(r))[..., None]
    heat = heatmap_image(r).astype(np.float32)
    return np.round(base * (1.0 - weight) + heat * weight).astype(np.uint8)


def _line_width(shape: tuple[int, ...]) -> int:
    return max(1, round(max(shape[:2]) / 250))


def region_border(region: np.ndarray, width: int = 1) -> np.ndarray:
    """The inner border of a mask, ``width`` pixels thick."""
    m = region.astype(np.uint8)
    if not m.any():
        return np.zeros(region.shape, bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    return region.astype(bool) & ~cv2.erode(m, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)


def mask_image(image: np.ndarray, region: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Pixel-wise relevance mask: region blue, its border red, the rest of the head green.

    The colours are blended onto the scan (opacity :data:`MASK_ALPHA`; the border is opaque) so the
    anatomy stays visible; background outside the head is left as it is.
    """
    out = _gray_rgb(image).astype(np.float32)
    region = region.astype(bool)
    rest = brain.astype(bool) & ~region
    for mask, colour in ((rest, BRAIN_COLOUR), (region, REGION_COLOUR)):
        out[mask] = (1 - MASK_ALPHA) * out[mask] + MASK_ALPHA * np.asarray(colour, np.float32)
    out[region_border(region, _line_width(out.shape))] = BORDER_COLOUR
    return np.round(out).astype(np.uint8)


def outline_image(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The scan with the region's outline drawn on it."""
    out = np.ascontiguousarray(_gray_rgb(image))
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, OUTLINE_COLOUR, _line_width(out.shape) + 1)
    return out


class RenderedViews(dict):
    """The four views (``heatmap``, ``overlay``, ``mask``, ``outline``) plus how to caption them.

    Attributes:
        caption: One line saying what the views show.
        region_drawn: Whether a relevance region is drawn in ``mask`` and ``outline``.
        evidence_for_no_tumour: True when the maps show evidence for "no tumour" (drawn on request).
    """

    caption: str
    region_drawn: bool
    evidence_for_no_tumour: bool


def render_views(
    image: np.ndarray,
    relevance: np.ndarray,
    label: str,
    show_evidence: bool = False,
    alpha: float = 0.5,
    brain: np.ndarray | None = None,
    region: np.ndarray | None = None,
) -> RenderedViews:
    """All views of one explanation.

    For a tumour class the region is derived from the map (:func:`relevance_region`). For
    ``label == "notumor"`` there is no tumour to show: unless ``show_evidence`` is set, the heatmap is
    empty and the other views show the plain scan (the mask view: the head in green). With
    ``show_evidence`` the map and its region are drawn, captioned as evidence for "no tumour" and
    marked with a banner so the picture cannot pass for a tumour map.

    Args:
        image: ``(H, W)`` ``uint8`` scan (typically at original resolution).
        relevance: Map for ``label``; resized to the image when shapes differ.
        label: The explained class.
        show_evidence: Draw the map also for "no tumour".
        alpha: Overlay opacity.
        brain: Head mask of ``image`` (computed when omitted).
        region: Relevance region (computed when omitted).

    Returns:
        :class:`RenderedViews` with keys ``heatmap``, ``overlay``, ``mask``, ``outline``.
    """
    if image.ndim != 2:
        raise ValueError(f"render_views expects a 2-D grayscale scan, got shape {image.shape}")
    r = _fit(relevance, image.shape)
    if brain is None:
        brain = brain_mask(image)
    title = CLASS_TITLES.get(label, label)
    no_tumour = label == NO_TUMOUR
    views = RenderedViews()
    if no_tumour and not show_evidence:
        empty = np.zeros(image.shape, bool)
        views.update(
            heatmap=np.zeros((*image.shape, 3), np.uint8),
            overlay=_gray_rgb(image).copy(),
            mask=mask_image(image, empty, brain),
            outline=_gray_rgb(image).copy(),
        )
        views.caption = "Prediction: no tumour. No tumour region is drawn (evidence map available on request)."
        views.region_drawn = False
        views.evidence_for_no_tumour = False
        return views
    if region is None:
        region = relevance_region(r, brain)
    views.update(
        heatmap=heatmap_image(r),
        overlay=overlay_image(image, r, alpha),
        mask=mask_image(image, region, brain),
        outline=outline_image(image, region),
    )
    if no_tumour:
        views.caption = "Evidence for 'no tumour' (not a tumour region): where the model found support for no tumour."
        for key in views:
            views[key] = _banner(views[key], "EVIDENCE FOR 'NO TUMOUR'")
    else:
        views.caption = f"Relevance for '{title}': the region is derived from the map, not a segmentation."
    views.region_drawn = bool(region.any())
    views.evidence_for_no_tumour = no_tumour
    return views


def _banner(rgb: np.ndarray, text: str) -> np.ndarray:
    """Writes ``text`` on a dark strip across the top of the image."""
    out = np.ascontiguousarray(rgb.copy())
    h, w = out.shape[:2]
    (w1, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 2)
    scale = min(1.2, 0.9 * w / w1)  # fit the width
    thickness = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    strip = min(h, th + base + 8)
    out[:strip] = (out[:strip] * 0.3).astype(np.uint8)
    cv2.putText(
        out,
        text,
        (max(2, (w - tw) // 2), th + 4),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 255, 255),
        thickness,
        cv2.LINE_AA,
    )
    return out
