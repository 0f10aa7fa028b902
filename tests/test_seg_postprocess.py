"""The tumour mask made from a probability map: hysteresis, largest component, hole filling, old checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from brainxai.io import read_raster
from brainxai.segmentation.postprocess import PostProcess, mask_rule, probability_mask

SHIPPED = Path(__file__).resolve().parents[1] / "src/brainxai/weights/segmentation.safetensors"
needs_shipped = pytest.mark.skipif(not SHIPPED.is_file(), reason="no segmenter shipped")


def _two_rims() -> np.ndarray:
    """A confident core (0.9) with a faint rim (0.5) touching it, and a faint blob (0.5) touching nothing."""
    prob = np.zeros((40, 40), np.float32)
    prob[10:20, 10:20] = 0.9
    prob[10:20, 20:26] = 0.5  # connected to the core
    prob[21, 26] = 0.5  # two rows below the rim's corner (19, 25): not connected
    prob[30:35, 30:35] = 0.5  # no seed
    return prob


def test_hysteresis_keeps_the_connected_rim_and_drops_the_seedless_blob() -> None:
    prob = _two_rims()
    plain = probability_mask(prob, 0.8)
    grown = probability_mask(prob, 0.8, PostProcess("hysteresis", low=0.4))
    assert plain.sum() == 100
    assert grown.sum() == 100 + 60  # core + rim; the blob and the isolated pixel stay out
    assert grown[10:20, 20:26].all() and not grown[30:35, 30:35].any() and not grown[21, 26]
    # 8-connectivity: a diagonal neighbour of the rim joins.
    prob[20, 26] = 0.5
    assert probability_mask(prob, 0.8, PostProcess("hysteresis", low=0.4))[20, 26]
    # Below ``low``: the rim is not grown into.
    assert probability_mask(prob, 0.8, PostProcess("hysteresis", low=0.6)).sum() == 100


def test_largest_component_and_hole_filling() -> None:
    prob = np.zeros((30, 30), np.float32)
    prob[2:12, 2:12] = 0.95  # 100 px ring with a 4x4 hole
    prob[5:9, 5:9] = 0.1
    prob[20:25, 20:25] = 0.95  # 25 px
    lcc = probability_mask(prob, 0.8, PostProcess(largest_component=True))
    assert lcc.sum() == 100 - 16 and not lcc[20:25, 20:25].any()
    filled = probability_mask(prob, 0.8, PostProcess(fill_holes=True))
    assert filled.sum() == 100 + 25 and filled[5:9, 5:9].all()
    both = probability_mask(prob, 0.8, PostProcess(largest_component=True, fill_holes=True))
    assert both.sum() == 100 and both[2:12, 2:12].all()
    # A notch open to the outside is not a hole; a mask touching the slice's border is handled like any other.
    edge = np.zeros((10, 10), np.float32)
    edge[0:5, 0:5] = 0.9
    edge[0:3, 2] = 0.0
    assert probability_mask(edge, 0.8, PostProcess(fill_holes=True)).sum() == 25 - 3


def test_empty_and_plain_maps_are_the_threshold() -> None:
    rng = np.random.default_rng(0)
    prob = rng.random((64, 48)).astype(np.float32)
    for post in (None, PostProcess(), PostProcess.from_dict(None), PostProcess.from_dict({"method": "threshold"})):
        assert np.array_equal(probability_mask(prob, 0.7, post), prob >= 0.7)
    full = PostProcess("hysteresis", 0.5, True, True)
    assert not probability_mask(np.full((8, 8), 0.6, np.float32), 0.8, full).any()  # no seed: nothing


def test_postprocess_json_round_trip_and_errors() -> None:
    post = PostProcess.from_dict({"method": "hysteresis", "low": 0.5, "largest_component": True, "fill_holes": False})
    assert post is not None and PostProcess.from_dict(post.to_dict()) == post
    assert post.describe() == "hysteresis down to 0.5, largest component"
    with pytest.raises(ValueError, match="low threshold"):
        PostProcess.from_dict({"method": "hysteresis"})
    with pytest.raises(ValueError, match="method"):
        PostProcess.from_dict({"method": "dilate"})
    with pytest.raises(ValueError, match="unknown key"):
        PostProcess.from_dict({"method": "threshold", "open": 2})


def test_mask_rule_in_words_names_every_step_and_reaches_the_pdf_and_the_sr() -> None:
    from brainxai.reporting.dicom.sr import tumour_method_text
    from brainxai.reporting.pdf import _segmentation_lines

    assert mask_rule(0.5, None) == mask_rule(0.5, PostProcess()) == "tumour probability ≥ 0.5"
    assert mask_rule(0.5, PostProcess(fill_holes=True)) == "tumour probability ≥ 0.5, holes filled"
    hysteresis = PostProcess("hysteresis", 0.5, largest_component=True)
    assert mask_rule(0.8, hysteresis) == "tumour probability ≥ 0.8, hysteresis down to 0.5, largest component"
    seg = {"status": "empty", "threshold": 0.8, "model": {"name": "m", "sha256": "0" * 64}}
    assert "(SHA-256 000000000000…, tumour probability ≥ 0.8)" in _segmentation_lines(seg)[0]  # older results
    seg["model"]["mask_rule"] = mask_rule(0.8, hysteresis)
    assert "tumour probability ≥ 0.8, hysteresis down to 0.5, largest component)" in _segmentation_lines(seg)[0]
    sr_text = tumour_method_text({"segmentation": seg})
    assert sr_text is not None and "(tumour probability ≥ 0.8, hysteresis down to 0.5, largest component)" in sr_text


@needs_shipped
def test_old_checkpoint_without_postprocess_gives_the_thresholded_mask(tmp_path: Path, samples_dir: Path) -> None:
    from brainxai.segmentation import Segmenter

    weights = tmp_path / "old.safetensors"
    shutil.copy(SHIPPED, weights)
    meta = json.loads(SHIPPED.with_suffix(".json").read_text())
    meta.pop("postprocess", None)
    weights.with_suffix(".json").write_text(json.dumps(meta))
    seg = Segmenter.load(weights, device="cpu", backend="torch")
    assert seg.postprocess is None and "postprocess" not in seg.info()
    image = read_raster(samples_dir / "glioma.jpg")
    prob = seg.probability([image])[0]
    assert np.array_equal(seg.segment(image), prob >= seg.threshold)
    noisy = np.random.default_rng(1).random((50, 50)).astype(np.float32)
    assert np.array_equal(seg.mask(noisy), noisy >= seg.threshold)


@needs_shipped
def test_shipped_mask_is_the_function_of_its_probability_map(samples_dir: Path) -> None:
    from brainxai.segmentation import Segmenter

    seg = Segmenter.load(device="cpu", backend="torch")
    meta = json.loads(SHIPPED.with_suffix(".json").read_text())
    post = PostProcess.from_dict(meta.get("postprocess"))
    assert seg.postprocess == post
    assert seg.info()["mask_rule"] == mask_rule(meta["threshold"], post)  # what the reports print
    image = read_raster(samples_dir / "glioma.jpg")
    mask = seg.segment(image)
    assert mask.any()
    assert np.array_equal(mask, probability_mask(seg.probability([image])[0], meta["threshold"], post))


def test_a_segmenter_takes_another_checkpoints_mask_rule() -> None:
    from brainxai.segmentation import Segmenter

    seg = Segmenter.__new__(Segmenter)  # the rule only: no weights needed
    seg.use_mask_rule({"threshold": 0.8, "postprocess": {"method": "hysteresis", "low": 0.4}})
    prob = _two_rims()
    assert seg.threshold == 0.8 and np.array_equal(
        seg.mask(prob), probability_mask(prob, 0.8, PostProcess("hysteresis", 0.4))
    )
    seg.use_mask_rule({"threshold": 0.5})
    assert seg.postprocess is None and np.array_equal(seg.mask(prob), prob >= 0.5)
