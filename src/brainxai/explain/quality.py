"""Quality metrics for relevance maps: pure functions on arrays.

Boxes are ``(x0, y0, x1, y1)`` in pixels of the map they are compared with, ``x0``/``y0`` inclusive and
``x1``/``y1`` exclusive.

- :func:`pointing_game`: is the map's maximum within ``tolerance`` pixels of the box (Zhang et al.,
  2018, "Top-down neural attention by excitation backprop"; 15 px at the original resolution).
- :func:`energy_in_box`: share of the positive relevance that lies inside the box (the
  "energy-based pointing game" of Score-CAM, Wang et al., 2020).
- :func:`iou_with_box`: intersection over union of a region mask with the box.
- :func:`perturbation_curve` / :func:`perturbation_auc`: deletion and insertion (Petsiuk et al.,
  2018, RISE): the target probability while the most relevant pixels are removed (deletion; lower
  area is better) or revealed (insertion; higher is better).
- :func:`rank_correlation`: Spearman correlation of two maps, for the model-randomisation sanity check
  (Adebayo et al., 2018): a map that does not change when the weights are randomised does not
  explain the model.
- :func:`sharpness`: the variance of the Laplacian of the map scaled to [0, 1] (the focus measure of
  Pech-Pacheco et al., 2000), the usual way to put a number on "Grad-CAM++ gives sharper maps". It
  measures high-frequency detail, not where the map points.
- :func:`grid_energy`: the share of the map's spectral energy at a network's stride frequencies, the
  checkerboard that strided convolutions print into a map. It measures an artefact, not where the
  map points.

:func:`centre_map` is the trivial baseline of the box metrics (Zhang et al.'s "center" baseline): a
map that ignores the image and peaks at its centre. Tumours near the middle of the head hit it.

One figure here describes the model, not a map: :func:`occlusion_drop`, how much the target
probability falls when the annotated box is blacked out. Where it barely falls, the model decided
without the lesion, and a faithful map has no reason to point at it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import cv2
import numpy as np

from brainxai.util.stats import spearman

Box = tuple[int, int, int, int]

#: Pointing-game tolerance in pixels at the original resolution (Zhang et al., 2018).
POINTING_TOLERANCE = 15


def _clean(relevance: np.ndarray) -> np.ndarray:
    if relevance.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {relevance.shape}")
    return np.nan_to_num(relevance.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def box_mask(shape: tuple[int, int], box: Box) -> np.ndarray:
    """Bool mask of ``box`` (clipped to the image)."""
    h, w = shape
    x0, y0, x1, y1 = (int(v) for v in box)
    mask = np.zeros((h, w), bool)
    mask[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)] = True
    return mask


def distance_to_box(point: tuple[float, float], box: Box) -> float:
    """Euclidean distance in pixels from pixel ``(x, y)`` to the box (0 inside)."""
    x, y = point
    x0, y0, x1, y1 = box
    # The last pixel inside is x1 - 1 / y1 - 1 (exclusive ends).
    dx = max(x0 - x, 0.0, x - (x1 - 1))
    dy = max(y0 - y, 0.0, y - (y1 - 1))
    return float(np.hypot(dx, dy))


def pointing_game(relevance: np.ndarray, box: Box, tolerance: float = POINTING_TOLERANCE) -> bool:
    """Whether the map's maximum lies within ``tolerance`` pixels of the box.

    Several pixels sharing the maximum count as a hit when any of them is within tolerance. A map
    without positive values (nothing pointed at) is a miss.
    """
    r = _clean(relevance)
    peak = r.max()
    if peak <= 0:
        return False
    ys, xs = np.nonzero(r == peak)
    return any(distance_to_box((float(x), float(y)), box) <= tolerance for x, y in zip(xs, ys, strict=True))


def energy_in_box(relevance: np.ndarray, box: Box) -> float:
    """Share of positive relevance inside the box, in [0, 1] (0 for a map without positive values)."""
    pos = np.maximum(_clean(relevance), 0.0)
    total = pos.sum()
    if total <= 0:
        return 0.0
    return float(pos[box_mask(pos.shape, box)].sum() / total)


def iou_with_box(region: np.ndarray, box: Box) -> float:
    """Intersection over union of a bool region with the box (0 when both are empty)."""
    region = region.astype(bool)
    b = box_mask(region.shape, box)
    union = np.logical_or(region, b).sum()
    return float(np.logical_and(region, b).sum() / union) if union else 0.0


def region_box_overlap(region: np.ndarray, box: Box) -> tuple[float | None, float]:
    """How a bool region sits against the box: (share of the region inside it, share of the box covered).

    IoU mixes the two; they tell a region that is a small core of the tumour (first near 1, second small)
    from one that lies beside it (both small). The first is None for an empty region.
    """
    region = region.astype(bool)
    b = box_mask(region.shape, box)
    inside = float(np.logical_and(region, b).sum())
    n_region, n_box = float(region.sum()), float(b.sum())
    return (inside / n_region if n_region else None), (inside / n_box if n_box else 0.0)


def relevance_order(relevance: np.ndarray) -> np.ndarray:
    """Flat pixel indices from most to least relevant (ties keep raster order)."""
    return np.argsort(-_clean(relevance).ravel(), kind="stable")


def perturbation_curve(
    score_fn: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    relevance: np.ndarray,
    mode: Literal["deletion", "insertion"],
    baseline: np.ndarray,
    steps: int = 20,
) -> tuple[np.ndarray, np.ndarray]:
    """The target score while pixels are removed or revealed in order of relevance.

    Args:
        score_fn: Maps a ``(K, H, W)`` float batch of images to ``(K,)`` scores (the target
            probability).
        image: ``(H, W)`` image (the model input before normalisation).
        relevance: ``(H, W)`` map.
        mode: ``"deletion"``: start from the image and replace the most relevant pixels with the
            baseline; ``"insertion"``: start from the baseline and put the image's most relevant pixels
            back.
        baseline: ``(H, W)`` image standing for "no information".
        steps: Number of equal steps from 0 % to 100 % of the pixels.

    Returns:
        Fractions of pixels changed (``steps + 1`` values from 0 to 1) and the scores.
    """
    if image.shape != relevance.shape or image.shape != baseline.shape:
        raise ValueError(f"shapes differ: image {image.shape}, relevance {relevance.shape}, baseline {baseline.shape}")
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    order = relevance_order(relevance)
    n = order.size
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fractions * n).astype(int)
    start, source = (image, baseline) if mode == "deletion" else (baseline, image)
    start_flat, source_flat = start.astype(np.float32).ravel(), source.astype(np.float32).ravel()
    batch = np.empty((len(counts), n), np.float32)
    for i, k in enumerate(counts):
        batch[i] = start_flat
        batch[i, order[:k]] = source_flat[order[:k]]
    scores = np.asarray(score_fn(batch.reshape(len(counts), *image.shape)), dtype=np.float64)
    return fractions, scores


def auc(fractions: np.ndarray, scores: np.ndarray) -> float:
    """Area under a curve sampled at ``fractions`` (trapezoid rule)."""
    f, s = np.asarray(fractions, np.float64), np.asarray(scores, np.float64)
    return float(np.sum((s[1:] + s[:-1]) * np.diff(f)) / 2.0)


def perturbation_auc(
    score_fn: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    relevance: np.ndarray,
    mode: Literal["deletion", "insertion"],
    baseline: np.ndarray,
    steps: int = 20,
) -> float:
    """Area under the deletion or insertion curve (see :func:`perturbation_curve`)."""
    return auc(*perturbation_curve(score_fn, image, relevance, mode, baseline, steps))


def blurred_baseline(image: np.ndarray, sigma_fraction: float = 0.05) -> np.ndarray:
    """A heavily blurred copy of the image (Gaussian, sigma = ``sigma_fraction`` x side): the insertion start."""
    sigma = sigma_fraction * max(image.shape)
    return cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigmaX=sigma, sigmaY=sigma)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps of the same shape (0 when either is constant).

    Non-finite values count as 0 (:func:`brainxai.util.stats.spearman` does the ranking).
    """
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}")
    rho = spearman(_clean(a), _clean(b))
    return 0.0 if rho is None else rho


def sharpness(relevance: np.ndarray) -> float:
    """Variance of the Laplacian of the positive map scaled to [0, 1].

    Higher means more edges and fine detail. Compare maps at the same resolution only: the value
    depends on the pixel grid.
    """
    pos = np.maximum(_clean(relevance), 0.0)
    peak = pos.max()
    if peak <= 0:
        return 0.0
    return float(cv2.Laplacian((pos / peak).astype(np.float64), cv2.CV_64F, ksize=3).var())


def box_to_input(box: Box, crop: Box, size: int) -> Box:
    """Maps a box in original pixels into the ``size`` x ``size`` model input made from ``crop``.

    The inverse of the placement in :func:`~brainxai.explain.views.relevance_to_original`: the crop is
    resized to the model input, so coordinates shift by the crop's corner and scale by its size. The
    result is rounded outwards (every input pixel the box touches) and clipped to the input; a box
    outside the crop becomes empty (``x0 == x1`` or ``y0 == y1``).
    """
    cx0, cy0, cx1, cy1 = crop
    if cx1 <= cx0 or cy1 <= cy0:
        raise ValueError(f"empty crop box {crop}")
    sx, sy = size / (cx1 - cx0), size / (cy1 - cy0)
    x0, y0, x1, y1 = box
    out = (
        int(np.floor((x0 - cx0) * sx)),
        int(np.floor((y0 - cy0) * sy)),
        int(np.ceil((x1 - cx0) * sx)),
        int(np.ceil((y1 - cy0) * sy)),
    )
    x0, y0, x1, y1 = (int(np.clip(v, 0, size)) for v in out)
    return (x0, y0, max(x0, x1), max(y0, y1))


def mirrored_box(box: Box, width: int) -> Box:
    """The box reflected left-right in an image ``width`` pixels wide (the same place, other hemisphere)."""
    x0, y0, x1, y1 = box
    return (width - x1, y0, width - x0, y1)


def occlusion_drop(
    score_fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray, box: Box, fill: float = 0.0
) -> float:
    """Target probability of the image minus that of the image with ``box`` set to ``fill``.

    Args:
        score_fn: Maps a ``(N, H, W)`` float batch to ``(N,)`` target probabilities.
        image: ``(H, W)`` model input (float, 0..255).
        box: Box in pixels of ``image``.
        fill: Value put into the box (0: black, the deletion baseline).

    Returns:
        The drop (negative when hiding the box raises the probability).
    """
    occluded = image.astype(np.float32).copy()
    occluded[box_mask(image.shape, box)] = fill
    scores = score_fn(np.stack([image.astype(np.float32), occluded]))
    return float(scores[0] - scores[1])


def centre_map(size: int, sigma_fraction: float = 0.25) -> np.ndarray:
    """A Gaussian peaked at the centre of a ``size`` x ``size`` input (sigma = ``sigma_fraction`` x side).

    The baseline every localisation figure should beat: it knows nothing about the image.
    """
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[:size, :size]
    sigma = sigma_fraction * size
    return np.exp(-((xx - c) ** 2 + (yy - c) ** 2) / (2.0 * sigma**2)).astype(np.float32)


#: Half-width, in cycles per pixel, of the band around each stride frequency that :func:`grid_energy`
#: counts: a lattice modulated by the map's content spreads its energy over a neighbourhood of the
#: lattice frequency as wide as the content's own spectrum.
GRID_BANDWIDTH = 1.0 / 32.0


def _circular_distance(freqs: np.ndarray, target: float) -> np.ndarray:
    d = np.abs(freqs - target) % 1.0
    return np.minimum(d, 1.0 - d)


def grid_energy(relevance: np.ndarray, stride: int = 2, bandwidth: float = GRID_BANDWIDTH) -> float:
    """Share of a map's spectral energy at the frequencies of a ``stride``-pixel lattice.

    Computed as ``sum(P[band]) / sum(P)`` where ``P = |FFT2(r - mean(r))|**2`` is the power spectrum
    of the map with its mean (the DC term) removed, and ``band`` holds every frequency ``(fy, fx)``
    (cycles per pixel, periodic in 1) within ``bandwidth`` of a lattice frequency ``(ky/stride,
    kx/stride)``, ``0 <= ky, kx < stride``, other than ``(0, 0)``. For ``stride=2`` these are the
    Nyquist row, column and corner ``(0, 1/2)``, ``(1/2, 0)``, ``(1/2, 1/2)``: a 2-pixel checkerboard or
    stripe pattern. ``stride=4`` adds the 4-pixel lattice that two stacked stride-2 layers print
    (frequencies 1/4 and 3/4) and includes the stride-2 ones.

    A checkerboard scores about 1, a smooth blob about 0, white noise the band's share of the
    spectrum (about ``(2 * bandwidth) ** 2 * (stride**2 - 1)``, 0.012 for the defaults).

    Returns:
        The share in [0, 1]; 0 for a constant map.
    """
    if stride < 2:
        raise ValueError(f"stride must be at least 2, got {stride}")
    r = _clean(relevance)
    power = np.abs(np.fft.fft2(r - r.mean())) ** 2
    total = float(power.sum())
    if total <= 0:
        return 0.0
    fy = np.fft.fftfreq(r.shape[0])[:, None]
    fx = np.fft.fftfreq(r.shape[1])[None, :]
    band = np.zeros(r.shape, bool)
    for ky in range(stride):
        for kx in range(stride):
            if ky == 0 and kx == 0:
                continue
            near_y = _circular_distance(fy, ky / stride) <= bandwidth
            near_x = _circular_distance(fx, kx / stride) <= bandwidth
            band |= near_y & near_x
    return float(power[band].sum() / total)
