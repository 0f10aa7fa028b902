"""The segmented tumour's measures on hand-made masks: area, diameters, relevance inside, disagreement rule."""

from __future__ import annotations

import numpy as np
import pytest

from brainxai.analysis.lesion import (
    MIN_LESION_AREA_MODEL_PX,
    disagreement,
    measure_lesion,
    relevance_in_tumour,
)


def square(n: int, side: int, at: int = 10) -> np.ndarray:
    mask = np.zeros((n, n), bool)
    mask[at : at + side, at : at + side] = True
    return mask


def test_area_and_diameters_of_a_square() -> None:
    lesion = measure_lesion(square(64, 10), (0.5, 0.8), model_scale=0.25)
    assert lesion.area_px == 100
    assert lesion.area_mm2 == pytest.approx(100 * 0.5 * 0.8)
    assert lesion.area_model_px == pytest.approx(25.0)
    # 10 x 10 pixels of 0.8 mm (columns) x 0.5 mm (rows): the diagonal is the longest.
    assert lesion.max_diameter == pytest.approx(np.hypot(8.0, 5.0), rel=1e-5)
    assert lesion.unit == "mm"
    in_px = measure_lesion(square(64, 10), None, model_scale=1.0)
    assert in_px.area_mm2 is None and in_px.unit == "px" and in_px.max_diameter == pytest.approx(np.hypot(10, 10))
    assert in_px.to_dict()["area_px"] == 100 and in_px.to_dict()["diameter_unit"] == "px"


def test_relevance_in_tumour_is_the_share_of_positive_mass() -> None:
    relevance = np.zeros((20, 20), np.float32)
    relevance[10:12, 10:12] = 3.0  # inside: 4 x 3 = 12
    relevance[0, 0] = 4.0  # outside: 4
    relevance[15, 15] = -100.0  # negative relevance does not count
    mask = square(20, 6, at=8)
    assert relevance_in_tumour(relevance, mask) == pytest.approx(12 / 16)
    assert relevance_in_tumour(-np.abs(relevance), mask) is None
    assert relevance_in_tumour(relevance, np.zeros_like(mask)) is None
    with pytest.raises(ValueError, match="same grid"):
        relevance_in_tumour(relevance, mask[:10])


def test_disagreement_rule_at_its_threshold() -> None:
    mask = square(64, 10)  # 100 px
    scale_at = MIN_LESION_AREA_MODEL_PX / 100
    at_threshold = measure_lesion(mask, None, model_scale=scale_at)
    below = measure_lesion(mask, None, model_scale=scale_at * 0.99)
    assert "classifier found no tumour" in (disagreement(False, at_threshold) or "")
    assert disagreement(False, below) is None
    assert disagreement(True, at_threshold) is None and disagreement(True, below) is None
    empty = measure_lesion(np.zeros((64, 64), bool), None, model_scale=1.0)
    assert "outlines no tumour" in (disagreement(True, empty) or "")
    assert disagreement(False, empty) is None
    with_mm = measure_lesion(mask, (0.5, 0.5), model_scale=scale_at)
    assert "25 mm²" in (disagreement(False, with_mm) or "")
