"""No-tumour slices for the segmenter: empty masks accepted for them only, extra folders split by group,
the loss on empty targets, and the false-positive rate measured with the pipeline's disagreement rule."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from segfiles import head, write_csv, write_seg_folder

from brainxai.analysis.lesion import MIN_LESION_AREA_MODEL_PX
from brainxai.data.preprocess import PreprocessConfig
from brainxai.data.seg_dataset import (
    SegDataError,
    load_seg_data,
    patient_folds,
    read_slices,
    read_sources,
    source_folds,
    source_split,
)
from brainxai.evaluation.segmentation import (
    classifier_grid_scale,
    flags_lesion,
    patient_bootstrap,
    summarise,
)
from brainxai.training.segmentation import seg_loss

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "src/brainxai/weights/segmentation.safetensors"


def _negatives_folder(root: Path, n: int = 6) -> Path:
    """BRISC-like: no patient column, no-tumour rows without a mask file (one with an empty mask file), one glioma."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for i in range(n):
        cv2.imwrite(str(root / "images" / f"no_{i}.png"), head())
        rows.append([f"images/no_{i}.png", "", "notumor"])
    cv2.imwrite(str(root / "masks" / "no_0.png"), np.zeros((80, 80), np.uint8))
    rows[0][1] = "masks/no_0.png"
    rows.append(["images/gl.png", "", "glioma"])  # no mask: an error unless filtered out (--extra-labels notumor)
    write_csv(root, rows, ("file", "mask", "label"))
    return root


# --- loader ---------------------------------------------------------------------------------------------------


def test_loader_accepts_empty_no_tumour_masks_and_groups_extra_slices(tmp_path: Path) -> None:
    main = write_seg_folder(tmp_path / "main", n_patients=4)
    extra = _negatives_folder(tmp_path / "neg")
    data = load_seg_data(main, PreprocessConfig(img_size=32), extra=[extra], extra_labels=["notumor"], progress=False)
    assert len(data.slices) == 8 + 6
    negative = data.labels == "notumor"
    assert negative.sum() == 6 and not data.masks[negative].any() and data.masks[~negative].any(axis=(1, 2)).all()
    assert data.slices[8].mask is not None and data.slices[9].mask is None  # empty file and empty cell alike
    # No patient column: each slice its own group, named after the folder so it never meets a main patient.
    groups = [s.patient for s in data.slices if s.extra]
    assert len(set(groups)) == 6 and all(g.startswith("neg:images/no_") for g in groups)
    assert not any(s.extra for s in data.slices[:8])


def test_loader_rejects_an_empty_tumour_mask_and_a_non_empty_no_tumour_mask(tmp_path: Path) -> None:
    main = write_seg_folder(tmp_path / "main", n_patients=4)
    extra = _negatives_folder(tmp_path / "neg")
    # The glioma row of the extra folder has an empty mask cell: an error for a tumour label.
    with pytest.raises(SegDataError, match=r"line 8: empty mask"):
        read_slices(extra, require_patient=False)
    cv2.imwrite(str(extra / "masks" / "no_0.png"), np.pad(np.full((4, 4), 255, np.uint8), 38))
    with pytest.raises(SegDataError, match=r"no_0\.png of a notumor slice holds 16 tumour pixel"):
        load_seg_data(main, PreprocessConfig(img_size=32), extra=[extra], extra_labels=["notumor"], progress=False)
    cv2.imwrite(str(main / "masks" / "glioma_1_0.png"), np.zeros((80, 80), np.uint8))
    with pytest.raises(SegDataError, match=r"glioma_1_0\.png is empty"):
        load_seg_data(main, PreprocessConfig(img_size=32), progress=False)


def test_extra_labels_filter_and_patient_column_required_only_in_the_main_folder(tmp_path: Path) -> None:
    extra = _negatives_folder(tmp_path / "neg")
    with pytest.raises(SegDataError, match="lacks the column"):
        read_slices(extra)  # as a main folder it needs patients
    with pytest.raises(SegDataError, match="has no rows with label meningioma"):
        read_slices(extra, ["meningioma"], require_patient=False)


# --- split ----------------------------------------------------------------------------------------------------


def test_extra_groups_respect_the_split_and_leave_the_patient_folds_unchanged(tmp_path: Path) -> None:
    main = write_seg_folder(tmp_path / "main", n_patients=6, per_patient=3)
    extra = _negatives_folder(tmp_path / "neg", n=9)
    slices = read_sources(main, [extra], ["notumor"])
    folds = source_folds(slices, 2, seed=3)
    main_only = read_slices(main)
    expected = patient_folds([s.patient for s in main_only], [s.label for s in main_only], 2, seed=3)
    np.testing.assert_array_equal(folds[: len(main_only)], expected)  # the main folds as without extras
    for group in {s.patient for s in slices}:
        assert len({int(f) for s, f in zip(slices, folds) if s.patient == group}) == 1
    extra_folds = folds[[s.extra for s in slices]]
    assert sorted(np.bincount(extra_folds).tolist()) == [4, 5]  # dealt over both folds
    train, val = source_split(slices, 0.5, seed=3)
    assert not {slices[i].patient for i in train} & {slices[i].patient for i in val}
    assert source_split(slices, 0.0)[1].size == 0


def test_train_seg_cli_with_extra_data_records_it_and_splits_by_group(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from brainxai.cli import app

    main = write_seg_folder(tmp_path / "main", n_patients=4)
    extra = _negatives_folder(tmp_path / "neg")
    out = tmp_path / "run"
    torch.set_num_threads(1)
    res = CliRunner().invoke(
        app,
        ["train-seg", "--data", str(main), "--extra-data", str(extra), "--extra-labels", "notumor", "--out",
         str(out), "--img-size", "32", "--epochs", "1", "--batch-size", "4", "--folds", "2", "--fold", "1",
         "--device", "cpu", "--no-hflip"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "best.json").read_text())
    (record,) = meta["recipe"]["extra_data"]
    assert record["folder"] == str(extra) and record["labels"] == ["notumor"] and record["slices"] == 6
    assert record["groups"] == 6 and record["per_label"] == {"notumor": 6} and len(record["fingerprint"]) == 16
    split = meta["split"]
    assert not set(split["train_patients"]) & set(split["val_patients"])
    assert split["train_slices"] + split["val_slices"] == 14
    assert any(p.startswith("neg:") for p in split["val_patients"])
    assert any(p.startswith("neg:") for p in split["train_patients"])
    row = meta["history"][0]
    assert {"val_dice", "val_dice_tumour", "val_nonempty_no_tumour"} <= set(row)


# --- loss -----------------------------------------------------------------------------------------------------


def test_loss_on_empty_targets() -> None:
    empty = torch.zeros(2, 1, 16, 16)
    # An empty prediction of an empty target: soft Dice (1 + 0) / (0 + 0 + 1) = 1 and BCE ~ 0, so loss ~ 0.
    assert float(seg_loss(torch.full((2, 1, 16, 16), -20.0), empty)) < 1e-6
    # A confident 4x4 false lesion on one slice: Dice term (1 - 1/17) / 2 for that slice alone.
    logits = torch.full((2, 1, 16, 16), -20.0)
    logits[0, 0, :4, :4] = 20.0
    loss = float(seg_loss(logits, empty, bce_weight=0.0))
    assert loss == pytest.approx((1 - 1 / 17) / 2, abs=1e-4)
    # A tumour slice segmented exactly still scores ~0 next to an empty one.
    target = (logits > 0).float()
    assert float(seg_loss(logits, target)) < 1e-6


# --- false-positive rate --------------------------------------------------------------------------------------


def test_flags_lesion_uses_the_pipeline_threshold_on_the_classifier_grid() -> None:
    mask = np.zeros((64, 64), bool)
    mask[:10, :10] = True  # 100 px on a grid where one pixel is one classifier pixel
    assert MIN_LESION_AREA_MODEL_PX == 100.0
    assert flags_lesion(mask, 1.0)
    assert not flags_lesion(mask, 0.99)  # 99 px² on the classifier's grid
    assert flags_lesion(mask, 4.0) and not flags_lesion(np.zeros((64, 64), bool), 10.0)
    # The scale is the classifier crop's: no crop, 448 px slice onto 224 px -> a quarter of a pixel each.
    image = np.full((448, 448), 120, np.uint8)
    assert classifier_grid_scale(image, PreprocessConfig(img_size=224, crop=False)) == pytest.approx(0.25)


def _rows() -> list[dict[str, object]]:
    tumour = [
        {"label": "glioma", "patient": "A", "dice": 0.8, "iou": 0.7, "hd95_px": 3.0, "area_rel_error": 0.1},
        {"label": "glioma", "patient": "B", "dice": 0.4, "iou": 0.3, "hd95_px": 9.0, "area_rel_error": 0.5},
    ]
    common = {"dice": 0.0, "iou": 0.0, "hd95_px": float("inf"), "area_rel_error": float("nan")}
    flags = [True, False, False, False, "True", "False", "False", "False"]  # CSV text accepted too
    negatives = [{**common, "label": "notumor", "patient": f"n{i}", "sizeable_lesion": f} for i, f in enumerate(flags)]
    return tumour + negatives


def test_false_positive_rate_and_tumour_figures_unchanged_by_negatives() -> None:
    rows = _rows()
    result, tumour_only = summarise(rows), summarise(rows[:2])
    assert result["false_positive_rate"] == pytest.approx(2 / 8) and result["n_no_tumour"] == 8
    assert result["per_class"]["notumor"] == {"n": 8, "false_positive_rate": pytest.approx(0.25)}
    for key in ("n", "dice_mean", "iou_mean", "detected", "hd95_px_median", "area_rel_error_median"):
        assert result[key] == tumour_only[key]
    assert result["n"] == 2 and result["dice_mean"] == pytest.approx(0.6)
    ci = patient_bootstrap(rows, n_boot=300)
    lo, hi = ci["false_positive_rate"]
    assert 0.0 <= lo <= 0.25 <= hi <= 1.0 and hi - lo > 0.1
    assert ci["dice_mean"] == patient_bootstrap(rows[:2], n_boot=300)["dice_mean"]
    only_negatives = summarise(rows[2:])
    assert only_negatives["n"] == 0 and only_negatives["dice_mean"] is None
    assert only_negatives["false_positive_rate"] == pytest.approx(0.25)


def test_evaluate_seg_reports_the_false_positive_rate(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from brainxai.cli import app
    from brainxai.training.segmentation import SegTrainConfig, train_segmenter

    main = write_seg_folder(tmp_path / "main", n_patients=4)
    extra = _negatives_folder(tmp_path / "neg")
    torch.set_num_threads(1)
    run = tmp_path / "run"
    train_segmenter(
        SegTrainConfig(
            data=str(main),
            extra_data=[str(extra)],
            extra_labels=["notumor"],
            out=str(run),
            img_size=32,
            epochs=1,
            batch_size=4,
            folds=2,
            fold=0,
            device="cpu",
            cache_dir=None,
            progress=False,
        )  # fmt: skip
    )
    res = CliRunner().invoke(
        app,
        ["evaluate-seg", "--data", str(main), "--extra-data", str(extra), "--extra-labels", "notumor",
         "--checkpoint", str(run / "best.safetensors"), "--out", str(tmp_path / "ev"), "--only-validation",
         "--n-boot", "50", "--device", "cpu"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    seg = json.loads((tmp_path / "ev" / "seg.json").read_text())
    split = json.loads((run / "best.json").read_text())["split"]
    n_neg = sum(p.startswith("neg:") for p in split["val_patients"])
    assert seg["n_no_tumour"] == n_neg > 0 and seg["per_class"]["notumor"]["n"] == n_neg
    assert seg["n"] + n_neg == split["val_slices"] and 0.0 <= seg["false_positive_rate"] <= 1.0
    assert seg["disagreement_min_area_model_grid_px"] == MIN_LESION_AREA_MODEL_PX
    assert len(seg["ci95"]["false_positive_rate"]) == 2 and "dice_mean" in seg["ci95"]
    with open(tmp_path / "ev" / "per_slice.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {"area_model_grid_px", "sizeable_lesion"} <= set(rows[0])
    assert "False-positive rate" in (tmp_path / "ev" / "report.md").read_text()


# --- the shipped segmenter -------------------------------------------------------------------------------------


@pytest.mark.skipif(not SHIPPED.is_file(), reason="no segmenter shipped")
def test_shipped_segmenter_sees_no_lesion_on_the_no_tumour_sample_and_outlines_the_tumour_samples(
    samples_dir: Path,
) -> None:
    """The demo no-tumour scan gets no disagreement warning; the three tumour samples still get a sizeable mask."""
    from brainxai.evaluation.segmentation import shipped_classifier_preprocess
    from brainxai.io.raster import read_raster
    from brainxai.segmentation import Segmenter

    seg = Segmenter.load(device="cpu")
    pre = shipped_classifier_preprocess()
    for name in ("notumor", "glioma", "meningioma", "pituitary"):
        image = read_raster(samples_dir / f"{name}.jpg")
        mask = seg.segment(image)
        area = float(mask.sum()) * classifier_grid_scale(image, pre)
        assert flags_lesion(mask, classifier_grid_scale(image, pre)) == (name != "notumor"), (name, area)
