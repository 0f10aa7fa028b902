"""The midline of an axial slice, found by left-right mirror symmetry, and its shift.

The ideal midline joins the symmetry centres of an anterior and a posterior band of the brain (where
the falx attaches); the central band's symmetry centre stands for the septum pellucidum. The shift is
the central point's perpendicular distance from the ideal line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from brainxai.analysis.spatial.geometry import Spacing

#: Bands compared for symmetry, as fractions of the brain's height: anterior, central, posterior.
_BANDS: tuple[tuple[float, float], ...] = ((0.08, 0.25), (0.40, 0.60), (0.75, 0.92))

Point = tuple[float, float]

#: Column step of the coarse symmetry search (1: score every column).
_COARSE_STEP = 2
#: Coarse columns this close to the best coarse score are climbed from (a correlation difference; a peak's
#: score falls by up to about 0.06 one column away on the slices checked).
_SEED_MARGIN = 0.15


@dataclass(frozen=True)
class MidlineEstimate:
    """The ideal midline (a line through the anterior and posterior symmetry centres) and the central one.

    Points are ``(row, col)`` in pixels. ``shift`` is the signed perpendicular distance of the central
    point from the ideal line, in the spacing's unit, positive toward the image's right.
    """

    anterior: Point
    posterior: Point
    central: Point
    shift: float
    quality: float

    def column_at(self, row: float) -> float:
        """Column of the ideal midline at ``row`` (pixels)."""
        (ya, xa), (yp, xp) = self.anterior, self.posterior
        if yp == ya:
            return xa
        return xa + (row - ya) * (xp - xa) / (yp - ya)


def _mirror_correlation(band: np.ndarray, valid: np.ndarray, p: int, half: int) -> float:
    """Correlation between the ``half`` columns left of padded column ``p`` (mirrored) and those right of it."""
    ok = valid[:, p - half : p][:, ::-1] & valid[:, p + 1 : p + 1 + half]
    if ok.sum() < 0.3 * ok.size:
        return -1.0
    a, b = band[:, p - half : p][:, ::-1][ok], band[:, p + 1 : p + 1 + half][ok]
    # The deviations are computed once and reused for the standard deviations: the same operations as
    # ndarray.std, so bit-identical results with fewer passes (this runs ~130 times per analysis).
    da, db = a - a.mean(), b - b.mean()
    sa, sb = np.sqrt((da * da).mean()), np.sqrt((db * db).mean())
    return float((da * db).mean() / (sa * sb)) if sa > 1e-6 and sb > 1e-6 else -1.0


def _symmetry_centre(band: np.ndarray, valid: np.ndarray, lo: int, hi: int, half: int) -> tuple[float, float]:
    """Column about which a horizontal band is most mirror-symmetric, and the correlation there."""
    w = band.shape[1]
    # Pad so windows may run past the image edge; padded pixels are simply not compared.
    band = np.pad(band, ((0, 0), (half, half + 1)))
    valid = np.pad(valid, ((0, 0), (half, half + 1)))
    first, last = max(lo, 1), min(hi, w - 2)
    if last < first:
        return float("nan"), -1.0
    scores: dict[int, float] = {}

    def score(c: int) -> float:
        if c not in scores:
            scores[c] = _mirror_correlation(band, valid, c + half, half)
        return scores[c]

    # Coarse to fine: every _COARSE_STEP-th column is scored, then the search climbs from every coarse column
    # within _SEED_MARGIN of the best coarse score. A band's score can have two sharp peaks (a few columns wide)
    # of nearly equal height, so the best coarse column alone may sit beside the wrong one; the margin covers the
    # drop from a peak to its nearest coarse column (checked against scoring every column: experiments/midline_search).
    for c in range(first, last + 1, _COARSE_STEP):
        score(c)
    top = max(scores.values())
    for seed in [c for c, v in scores.items() if v >= top - _SEED_MARGIN]:
        _climb(score, seed, first, last)
    best = max(scores, key=lambda c: (scores[c], -c))
    x = float(best)
    if first < best < last:
        # Parabolic refinement to sub-pixel precision.
        s0, s1, s2 = score(best - 1), scores[best], score(best + 1)
        denom = s0 - 2 * s1 + s2
        if denom < 0:
            x += 0.5 * (s0 - s2) / denom
    return x, scores[best]


def _climb(score: Callable[[int], float], c: int, first: int, last: int) -> None:
    """Moves from column ``c`` to a better neighbour within the coarse step until none is better."""
    while True:
        around = range(max(c - _COARSE_STEP + 1, first), min(c + _COARSE_STEP - 1, last) + 1)
        nxt = max(around, key=lambda n: (score(n), -n))
        if nxt == c:
            return
        c = nxt


def _band_centres(
    image: np.ndarray, brain: np.ndarray, exclude: np.ndarray | None, bounds: tuple[int, int, int, int]
) -> list[tuple[Point, float]]:
    """``((row, col), correlation)`` of the symmetry centre of each band in :data:`_BANDS`."""
    r0, r1, c0, c1 = bounds
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
    centres = []
    for f0, f1 in _BANDS:
        a, b = r0 + int(f0 * height), r0 + int(f1 * height)
        x, q = _symmetry_centre(smooth[a:b], valid[a:b], int(centre) - search, int(centre) + search, half)
        centres.append((((a + b - 1) / 2, x), q))
    return centres


def _signed_shift(
    anterior: Point, central: Point, posterior: Point, spacing: Spacing, max_tilt_deg: float
) -> float | None:
    """Signed distance of ``central`` from the anterior-posterior line; None when that line is too tilted."""
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
    return float(rel[0] * u[1] - rel[1] * u[0])


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
    bounds = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    (anterior, qa), (central, qc), (posterior, qp) = _band_centres(image, brain, exclude, bounds)
    quality = min(qa, qc, qp)
    if not np.isfinite([anterior[1], central[1], posterior[1]]).all() or quality < min_quality:
        return None
    shift = _signed_shift(anterior, central, posterior, spacing, max_tilt_deg)
    if shift is None or abs(shift) > 0.15 * (bounds[3] - bounds[2]) * spacing.col:
        return None
    return MidlineEstimate(anterior, posterior, central, shift, quality)
