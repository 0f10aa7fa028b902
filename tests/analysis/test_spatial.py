"""Spatial parameters on synthetic masks of known geometry."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from brainxai.analysis.spatial import (
    PARAMETER_KEYS,
    Spacing,
    compute_spatial_parameters,
    ellipse_axes,
    ellipsoid_volume,
    estimate_midline,
    feret_diameters,
    glcm_contrast,
    region_area,
    surface_distance,
)

H = W = 200


def disk(cx: float, cy: float, r: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.circle(m, (int(cx), int(cy)), r, 1, -1)
    return m.astype(bool)


def brain_phantom(septum_offset: int = 0, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An axial-like phantom: elliptic brain, dark falx line front and back, ventricles around a septum."""
    yy, xx = np.mgrid[:H, :W]
    brain = ((xx - 100) / 70) ** 2 + ((yy - 100) / 90) ** 2 <= 1
    img = np.where(brain, 120.0, 0.0)
    img[(np.abs(xx - 100) <= 1) & brain & ((yy < 60) | (yy > 140))] = 30
    xs = 100 + septum_offset
    img[(np.abs(xx - xs) <= 1) & (yy >= 60) & (yy <= 140)] = 200
    for s in (-1, 1):
        img[((xx - (xs + s * 12)) / 6) ** 2 + ((yy - 100) / 20) ** 2 <= 1] = 20
    if rng is not None:
        img = img + rng.normal(0, 5, img.shape) * brain
    return np.clip(img, 0, 255).astype(np.uint8), brain


def params_by_key(params: list) -> dict:
    return {p.key: p for p in params}


# -- geometry helpers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("r", [10, 25, 40])
def test_disk_area_is_pi_r_squared(r: int) -> None:
    m = disk(100, 100, r)
    assert region_area(m) == pytest.approx(math.pi * r**2, rel=0.04)
    assert region_area(m, Spacing(0.5, 0.5, "mm")) == pytest.approx(math.pi * r**2 * 0.25, rel=0.04)


def test_area_with_anisotropic_spacing_is_count_times_pixel_area() -> None:
    m = disk(100, 100, 30)
    assert region_area(m, Spacing(0.5, 0.8, "mm")) == pytest.approx(m.sum() * 0.4)


def test_disk_diameters_and_axes() -> None:
    r = 30
    longest, across = feret_diameters(disk(100, 100, r))
    assert 2 * r <= longest <= 2 * r + 2
    assert 2 * r <= across <= 2 * r + 2
    major, minor = ellipse_axes(disk(100, 100, r))
    assert major == pytest.approx(2 * r, abs=1.5) and minor == pytest.approx(2 * r, abs=1.5)


def test_ellipse_axes_and_volume_estimate() -> None:
    m = np.zeros((H, W), np.uint8)
    cv2.ellipse(m, (100, 100), (40, 20), 30, 0, 360, 1, -1)
    major, minor = ellipse_axes(m.astype(bool), Spacing(0.5, 0.5, "mm"))
    assert major == pytest.approx(40, abs=1.0) and minor == pytest.approx(20, abs=1.0)
    assert ellipsoid_volume(40, 20) == pytest.approx(math.pi / 6 * 40 * 20 * 20)
    longest, across = feret_diameters(m.astype(bool), Spacing(0.5, 0.5, "mm"))
    assert longest == pytest.approx(40, abs=1.2) and across == pytest.approx(20, abs=1.2)


def test_surface_distance() -> None:
    brain = disk(100, 100, 80)
    deep = disk(100, 100, 10)
    assert surface_distance(deep, brain) == pytest.approx(70, abs=1.5)
    assert surface_distance(deep, brain, Spacing(0.5, 0.5, "mm")) == pytest.approx(35, abs=0.8)
    edge = disk(100, 175, 10)
    assert surface_distance(edge, brain) <= 1.0


def test_glcm_contrast_known_values() -> None:
    mask = np.ones((20, 20), bool)
    assert glcm_contrast(np.full((20, 20), 77, np.uint8), mask) == 0.0
    checker = (np.indices((20, 20)).sum(0) % 2 * 255).astype(np.uint8)
    # Horizontal and vertical neighbours differ by 15 levels, diagonal ones not at all: about half of 225.
    assert glcm_contrast(checker, mask) == pytest.approx(225 * 760 / (760 + 722), rel=1e-6)


# -- midline -----------------------------------------------------------------------------------------------


def test_midline_shift_of_a_displaced_septum(rng: np.random.Generator) -> None:
    img, brain = brain_phantom(septum_offset=6, rng=rng)
    est = estimate_midline(img, brain, spacing=Spacing(0.5, 0.5, "mm"))
    assert est is not None
    assert est.shift == pytest.approx(3.0, abs=0.5)  # 6 px x 0.5 mm, toward the image right
    img, brain = brain_phantom(septum_offset=-8, rng=rng)
    assert estimate_midline(img, brain).shift == pytest.approx(-8, abs=1.0)


def test_midline_of_a_symmetric_phantom_is_unshifted(rng: np.random.Generator) -> None:
    img, brain = brain_phantom(0, rng=rng)
    est = estimate_midline(img, brain)
    assert est is not None and abs(est.shift) < 1.0
    assert est.column_at(100) == pytest.approx(100, abs=1.0)


def test_midline_not_found_without_structure(rng: np.random.Generator) -> None:
    brain = disk(100, 100, 80)
    assert estimate_midline(np.where(brain, 120, 0).astype(np.uint8), brain) is None
    noisy = np.where(brain, rng.integers(60, 200, (H, W)), 0).astype(np.uint8)
    assert estimate_midline(noisy, brain) is None


def test_coarse_symmetry_search_finds_the_column_of_the_full_search(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brainxai.analysis.region import brain_mask
    from brainxai.analysis.spatial import midline
    from brainxai.io import read_scan
    from brainxai.pipeline.demo import sample_scans

    cases = [brain_phantom(offset, rng=rng) for offset in (-8, 0, 6)]
    for path in sample_scans().values():
        pixels = read_scan(path).pixels
        cases.append((pixels, brain_mask(pixels)))
    found = {}
    for step in (1, 2):
        monkeypatch.setattr(midline, "_COARSE_STEP", step)
        found[step] = [estimate_midline(img, brain) for img, brain in cases]
    assert sum(e is not None for e in found[1]) >= 5
    assert found[2] == found[1]  # bit-identical: same columns scored around the same peak


# -- the ten parameters ----------------------------------------------------------------------------------


def test_ten_parameters_for_a_left_disk(rng: np.random.Generator) -> None:
    img, brain = brain_phantom(0, rng=rng)
    region = disk(72, 95, 12)  # 28 px = 14 mm from the edge of the head
    img[region] = 180
    params = compute_spatial_parameters(img, region, brain, (0.5, 0.5), 0.91, 0.4, prediction="glioma")
    assert [p.key for p in params] == list(PARAMETER_KEYS)
    for p in params:
        d = p.to_dict()
        assert {"name", "value", "unit", "method"} <= d.keys() and d["method"]
    json.dumps([p.to_dict() for p in params])
    by = params_by_key(params)
    assert by["hemisphere"].value == "left"
    assert "radiological" in by["hemisphere"].method
    assert by["area_volume"].unit == "mm², mm³"
    assert by["area_volume"].value["area"] == pytest.approx(region.sum() * 0.25)
    assert by["area_volume"].status == "estimated" and "ESTIMATE" in by["area_volume"].method
    assert by["maximum_dimensions"].value["max_diameter"] == pytest.approx(12, abs=1.0)
    assert by["spatial_relation"].value == "intra-axial"
    assert by["texture"].value == "homogeneous"
    assert isinstance(by["midline_shift"].value, float) and by["midline_shift"].value < 1.0
    assert by["peritumoral_oedema"].value == "not assessable on this image"
    assert by["rcbv"].value == "not measurable from a structural image"
    assert by["confidence"].value == pytest.approx(0.91)
    assert by["confidence"].details["agreement"] == pytest.approx(0.4)


def test_right_midline_and_surface_regions(rng: np.random.Generator) -> None:
    img, brain = brain_phantom(0, rng=rng)
    right = params_by_key(compute_spatial_parameters(img, disk(150, 110, 10), brain, None, 0.8, None))
    assert right["hemisphere"].value == "right"
    centre = params_by_key(compute_spatial_parameters(img, disk(100, 40, 15), brain, None, 0.8, None))
    assert centre["hemisphere"].value == "midline"
    assert centre["anatomical_region"].value == "frontal lobe"
    surface = params_by_key(compute_spatial_parameters(img, disk(100, 14, 8), brain, None, 0.8, None))
    assert surface["spatial_relation"].value == "extra-axial"
    sellar = compute_spatial_parameters(img, disk(100, 100, 8), brain, None, 0.8, None, prediction="pituitary")
    assert params_by_key(sellar)["anatomical_region"].value == "sellar / suprasellar region"


def test_unknown_spacing_reports_pixels_never_millimetres(rng: np.random.Generator) -> None:
    img, brain = brain_phantom(0, rng=rng)
    region = disk(60, 90, 12)
    params = compute_spatial_parameters(img, region, brain, None, 0.9, 0.5, prediction="meningioma")
    for p in params:
        assert "mm" not in p.unit and "mm" not in p.to_dict()["text"]
    by = params_by_key(params)
    assert by["area_volume"].unit == "px², px³"
    assert by["area_volume"].value["area"] == pytest.approx(region.sum())
    assert "Pixel spacing unknown" in by["area_volume"].method
    assumed = params_by_key(compute_spatial_parameters(img, region, brain, (1.0, 1.0), 0.9, 0.5, spacing_assumed=True))
    assert assumed["area_volume"].unit == "mm², mm³" and "ASSUMED" in assumed["area_volume"].method


def test_no_tumour_makes_region_parameters_not_applicable(rng: np.random.Generator) -> None:
    img, brain = brain_phantom(0, rng=rng)
    params = params_by_key(
        compute_spatial_parameters(img, disk(60, 90, 12), brain, (0.5, 0.5), 0.97, 0.3, prediction="notumor")
    )
    for key in (
        "anatomical_region",
        "hemisphere",
        "spatial_relation",
        "area_volume",
        "maximum_dimensions",
        "texture",
        "peritumoral_oedema",
    ):
        assert params[key].value == "not applicable (no tumour region)"
        assert params[key].status == "not_applicable"
    assert params["confidence"].value == pytest.approx(0.97)
    assert isinstance(params["midline_shift"].value, float)


def test_empty_region_and_non_axial_plane(rng: np.random.Generator) -> None:
    img, brain = brain_phantom(0, rng=rng)
    empty = params_by_key(
        compute_spatial_parameters(img, np.zeros_like(brain), brain, None, 0.6, None, prediction="glioma")
    )
    assert empty["area_volume"].status == "not_assessable"
    sag = params_by_key(compute_spatial_parameters(img, disk(60, 90, 12), brain, None, 0.6, None, plane="sagittal"))
    assert sag["hemisphere"].status == "not_assessable"
    assert sag["midline_shift"].status == "not_assessable"


def test_texture_categories(rng: np.random.Generator) -> None:
    img, brain = brain_phantom(0, rng=rng)
    region = disk(60, 90, 15)
    img[region] = rng.integers(20, 250, int(region.sum()))
    by = params_by_key(compute_spatial_parameters(img, region, brain, None, 0.9, None))
    assert by["texture"].value == "markedly heterogeneous"
    assert by["texture"].details["coefficient_of_variation"] > 0.3
    assert by["texture"].details["glcm_contrast"] > 10


def test_oedema_estimate_on_flair(rng: np.random.Generator) -> None:
    img, brain = brain_phantom(0, rng=rng)
    region = disk(60, 90, 10)
    ring = disk(60, 90, 16) & ~region
    img[ring] = 230
    by = params_by_key(compute_spatial_parameters(img, region, brain, (1.0, 1.0), 0.9, None, sequence="FLAIR"))
    assert by["peritumoral_oedema"].status == "estimated"
    assert by["peritumoral_oedema"].value == pytest.approx(ring.sum(), rel=0.05)
    assert by["peritumoral_oedema"].unit == "mm²"


def test_rcbv_from_a_perfusion_map(rng: np.random.Generator) -> None:
    img, brain = brain_phantom(0, rng=rng)
    region = disk(60, 90, 10)
    cbv = np.where(brain, 1.0, 0.0)
    cbv[region] = 3.0
    by = params_by_key(compute_spatial_parameters(img, region, brain, None, 0.9, None, perfusion=cbv))
    assert by["rcbv"].value == pytest.approx(3.0)
    assert by["rcbv"].details["reference"] == "mirror region"
