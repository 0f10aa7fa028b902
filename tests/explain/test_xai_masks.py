"""The xai-benchmark with lesion masks: mask metrics, per-class figures, the in-painting drop, and the
guarantee that an old box CSV (no mask column) gives the figures committed in ``benchmarks/xai``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from brainxai.cli import app
from brainxai.data.lesion import inpaint_lesion
from brainxai.inference import Classifier
from brainxai.xai_benchmark import (
    MASK_METRICS,
    METRICS,
    energy_in_mask,
    inpaint_regions,
    load_box_images,
    mask_to_input,
    per_class_summary,
    placed_mask_metrics,
    pointing_game_mask,
    read_boxes,
    reliance_summary,
    run_xai_benchmark,
    score_fn,
)

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "benchmarks" / "xai"


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    """EfficientNet-Lite0 (ImageNet backbone, random head) at 64 px: real architecture, quick."""
    from brainxai.models import create_model
    from brainxai.models.checkpoint import CheckpointMeta, save_checkpoint

    torch.manual_seed(0)
    model = create_model("efficientnet-lite0", pretrained=True, img_size=64)
    cfg = model.brainxai_config
    path = tmp_path_factory.mktemp("xai_masks") / "lite64"
    save_checkpoint(
        path, model, CheckpointMeta(model="efficientnet-lite0", classes=list(cfg.classes), preprocess=cfg.preprocess)
    )
    return path


@pytest.fixture(scope="module")
def masks_root(shared_data: Path) -> Path:
    root = shared_data / "figshare-masks-dev"
    if not (root / "slices.csv").is_file():
        pytest.skip("figshare-masks-dev not available")
    return root


def _write_csv(path: Path, rows: list[dict[str, str]], drop: tuple[str, ...] = ()) -> Path:
    fields = [k for k in rows[0] if k not in drop]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def three_slices(masks_root: Path) -> list[dict[str, str]]:
    """One slice per class of figshare-masks-dev, in the slices.csv layout."""
    with open(masks_root / "slices.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return list({r["label"]: r for r in rows}.values())


# --- the mask metrics on hand-made maps -------------------------------------------------------------------


def test_mask_metrics_on_a_hand_made_map_and_mask() -> None:
    mask = np.zeros((40, 40), bool)
    mask[10:20, 10:20] = True  # 100 pixels
    relevance = np.zeros((40, 40), np.float32)
    relevance[15, 15] = 3.0  # the peak, inside the mask
    relevance[30:32, 30:35] = 1.0  # 10 pixels of 1.0 outside
    relevance[0, 0] = -5.0  # negative relevance is not energy
    assert pointing_game_mask(relevance, mask, tolerance=0)
    assert energy_in_mask(relevance, mask) == pytest.approx(3.0 / 13.0)
    # Peak 12 px right of the mask's edge column 19: a hit from tolerance 12 (Euclidean), a miss below.
    moved = np.zeros_like(relevance)
    moved[15, 31] = 1.0
    assert pointing_game_mask(moved, mask, tolerance=12) and not pointing_game_mask(moved, mask, tolerance=11.9)
    # Diagonal: from (25, 25) to the corner (19, 19) is 6 * sqrt(2) = 8.49 px.
    diag = np.zeros_like(relevance)
    diag[25, 25] = 1.0
    assert pointing_game_mask(diag, mask, tolerance=8.5) and not pointing_game_mask(diag, mask, tolerance=8.4)
    # Ties at the maximum: a hit when any is within tolerance.
    tie = np.zeros_like(relevance)
    tie[0, 39] = tie[12, 12] = 2.0
    assert pointing_game_mask(tie, mask, tolerance=0)
    # Nothing positive, or no lesion: a miss and no energy.
    assert (
        not pointing_game_mask(-np.ones_like(relevance), mask) and energy_in_mask(-np.ones_like(relevance), mask) == 0
    )
    assert (
        not pointing_game_mask(relevance, np.zeros_like(mask)) and energy_in_mask(relevance, np.zeros_like(mask)) == 0
    )
    assert placed_mask_metrics(relevance, mask, 0) == {
        "pointing_game_mask": 1.0,
        "energy_in_mask": pytest.approx(3 / 13),
    }
    with pytest.raises(ValueError, match="differ in shape"):
        energy_in_mask(relevance, mask[:-1])


def test_mask_to_input_crops_and_scales_like_the_box() -> None:
    mask = np.zeros((100, 200), bool)
    mask[40:60, 120:140] = True
    # Crop x 100..200, y 0..100 -> a 50 x 50 input: scale 0.5 on both axes.
    small = mask_to_input(mask, (100, 0, 200, 100), 50)
    ys, xs = np.nonzero(small)
    assert small.shape == (50, 50) and small.dtype == bool
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (20, 29, 10, 19)


def test_inpaint_regions_keep_the_control_off_the_lesion() -> None:
    mask = np.zeros((32, 32), bool)
    mask[10:14, 4:8] = True  # far from the midline: the mirrored area (cols 24..27) is disjoint
    lesion, control, overlap = inpaint_regions(mask, dilate_px=1)
    assert lesion.sum() == control.sum() and overlap == 0.0 and not (lesion & control).any()
    assert np.array_equal(control, lesion[:, ::-1])
    centred = np.zeros((32, 32), bool)
    centred[10:14, 14:20] = True  # straddles the midline (pituitary-like)
    lesion, control, overlap = inpaint_regions(centred, dilate_px=1)
    assert not (lesion & control).any() and 0.0 < overlap < 1.0
    mirrored = lesion[:, ::-1]
    assert overlap == pytest.approx(1 - control.sum() / mirrored.sum())
    _, control, overlap = inpaint_regions(np.zeros((8, 8), bool))
    assert not control.any() and np.isnan(overlap)


def test_per_class_and_reliance_summaries() -> None:
    rows = [
        {
            "label": "glioma",
            "pointing_game": 1.0,
            "energy_in_box": 0.5,
            "pointing_game_mask": 1.0,
            "energy_in_mask": 0.4,
        },
        {
            "label": "glioma",
            "pointing_game": 0.0,
            "energy_in_box": 0.1,
            "pointing_game_mask": 0.0,
            "energy_in_mask": 0.0,
        },
        {
            "label": "pituitary",
            "pointing_game": 1.0,
            "energy_in_box": 0.3,
            "pointing_game_mask": 0.0,
            "energy_in_mask": 0.2,
        },
    ]
    got = per_class_summary(rows)
    assert got["glioma"] == {
        "n": 2,
        "pointing_game": 0.5,
        "energy_in_box": pytest.approx(0.3),
        "pointing_game_mask": 0.5,
        "energy_in_mask": pytest.approx(0.2),
    }
    assert list(got) == ["glioma", "pituitary"] and got["pituitary"]["n"] == 1
    box_only = [{k: v for k, v in r.items() if k not in MASK_METRICS} for r in rows]
    assert set(per_class_summary(box_only)["glioma"]) == {"n", "pointing_game", "energy_in_box"}

    info = [
        {"label": "glioma", "inpaint_drop": 0.5, "mirror_inpaint_drop": 0.0, "mirror_overlap": 0.0},
        {"label": "glioma", "inpaint_drop": 0.1, "mirror_inpaint_drop": 0.02, "mirror_overlap": 0.2},
        {"label": "glioma", "inpaint_drop": 0.3, "mirror_inpaint_drop": None, "mirror_overlap": 1.0},
        {"label": "glioma", "inpaint_drop": None, "mirror_inpaint_drop": None, "mirror_overlap": None},
    ]
    assert reliance_summary(info) == {
        "glioma": {
            "median_drop": pytest.approx(0.3),
            "mirrored_median_drop": pytest.approx(0.01),
            "n": 3,
            "mirrored_n": 2,
            "mirrored_median_overlap": pytest.approx(0.2),
        }
    }


def test_read_boxes_with_a_mask_column(tmp_path: Path) -> None:
    p = tmp_path / "slices.csv"
    p.write_text(
        "file,mask,label,patient,width,height,x0,y0,x1,y1\nimages/a.jpg,masks/a.png,glioma,P1,512,512,1,2,9,9\n"
    )
    (rec,) = read_boxes(p)
    assert rec.mask == tmp_path / "masks" / "a.png" and rec.box == (1, 2, 9, 9)
    p.write_text("file,mask,label,width,height,x0,y0,x1,y1\nimages/a.jpg,,glioma,512,512,1,2,9,9\n")
    with pytest.raises(ValueError, match=r"slices.csv:2: empty 'mask'"):
        read_boxes(p)


# --- runs ---------------------------------------------------------------------------------------------------


def test_mask_csv_adds_figures_and_changes_none(small_checkpoint, masks_root, three_slices, tmp_path) -> None:
    """The same three slices with and without the mask column: every box figure identical; the mask
    figures, per_class and reliance added; the in-painting drop recomputed by hand for one slice."""
    classifier = Classifier.load(small_checkpoint, device="cpu")
    kwargs = {"methods": ["gradcam"], "images_root": masks_root, "steps": 2, "sanity": False, "progress": False}
    with_masks = _write_csv(tmp_path / "masks.csv", three_slices)
    boxes_only = _write_csv(tmp_path / "boxes.csv", three_slices, drop=("mask",))
    # The mask run through the CLI (which also prints the mask pointing game), the box run through the API.
    cli = CliRunner().invoke(
        app,
        ["xai-benchmark", "--boxes", str(with_masks), "--images-root", str(masks_root), "--methods", "gradcam"]
        + ["--checkpoint", str(small_checkpoint), "--out", str(tmp_path / "m"), "--steps", "2", "--no-sanity"]
        + ["--target", "predicted"],
    )
    assert cli.exit_code == 0, cli.output
    assert "gradcam          pointing game" in cli.output and ", on the mask " in cli.output
    run_xai_benchmark(boxes_only, tmp_path / "b", classifier, target="predicted", **kwargs)
    m = json.loads((tmp_path / "m" / "xai.json").read_text())
    b = json.loads((tmp_path / "b" / "xai.json").read_text())
    assert set(b) == {"gradcam"} and set(m) == {"gradcam", "reliance"}
    for key in METRICS:
        if key != "ms_per_image":
            assert m["gradcam"][key] == b["gradcam"][key], key
    assert set(b["gradcam"]) == {*METRICS, "n", "per_class"}
    assert set(m["gradcam"]) == {*METRICS, *MASK_METRICS, "n", "per_class"}
    labels = [r["label"] for r in three_slices]
    assert list(m["gradcam"]["per_class"]) == labels
    for label in labels:
        entry = m["gradcam"]["per_class"][label]
        assert entry["n"] == 1 and set(entry) == {"n", "pointing_game", "energy_in_box", *MASK_METRICS}
        assert {k: entry[k] for k in ("n", "pointing_game", "energy_in_box")} == b["gradcam"]["per_class"][label]
        assert 0.0 <= entry["energy_in_mask"] <= entry["energy_in_box"] + 1e-9  # the mask lies inside its box
    assert set(m["reliance"]) == set(labels)
    assert all(r["n"] == 1 and -1.0 <= r["median_drop"] <= 1.0 for r in m["reliance"].values())

    # The per-image rows: the box columns agree, the mask run adds its columns.
    def rows(path: Path) -> list[dict[str, str]]:
        with open(path / "xai_per_image.csv") as fh:
            return list(csv.DictReader(fh))

    rm, rb = rows(tmp_path / "m"), rows(tmp_path / "b")
    assert list(rb[0]) == list(rm[0])[: len(rb[0])]
    assert {"pointing_game_mask", "energy_in_mask", "inpaint_drop", "mirror_inpaint_drop"} <= set(rm[0])
    for x, y in zip(rm, rb, strict=True):
        assert all(x[k] == y[k] for k in y)

    # The in-painting drop, by hand: the annotated class (not the predicted target) on the model input.
    data = load_box_images(read_boxes(with_masks, masks_root), classifier)
    i = 0
    label = classifier.classes.index(three_slices[i]["label"])
    mask = mask_to_input(data.masks[i], data.crops[i], data.prepared.shape[1])
    lesion, _, _ = inpaint_regions(mask)
    p = score_fn(classifier, label)(
        np.stack([data.prepared[i], inpaint_lesion(data.prepared[i], lesion, 0)]).astype(np.float32)
    )
    assert float(rm[i]["inpaint_drop"]) == pytest.approx(float(p[0] - p[1]), abs=1e-5)
    assert m["reliance"][three_slices[i]["label"]]["median_drop"] == pytest.approx(float(p[0] - p[1]), abs=1e-6)

    md = (tmp_path / "m" / "xai.md").read_text()
    assert "## Does the model need the tumour? (in-painting drop)" in md and "## Per class" in md
    assert "| gradcam |" in md.split("## Per class")[1] and "**In-painting drop**" in md
    md_b = (tmp_path / "b" / "xai.md").read_text()
    assert "## Per class" in md_b and "in-painting" not in md_b.lower()


def test_old_box_csv_gives_the_committed_figures(boxes_csv, tmp_path) -> None:
    """Three of the 60 box images, Grad-CAM, the shipped model: the figures of benchmarks/xai/xai_per_image.csv.

    Box metrics must match to the six significant digits written; model-output figures (deletion/insertion
    AUC, box occlusion drop) to 1e-3, as batching three images instead of eight moves float sums slightly.
    The committed figures are the shipped checkpoint's as it loads (input harmonisation included, since the
    benchmark was regenerated on 2026-12-01).
    """
    committed = {}
    with open(COMMITTED / "xai_per_image.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            committed[(r["method"], r["file"])] = r
    with open(boxes_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    picked = [rows[0], rows[25], rows[45]]  # a pituitary, a meningioma, a glioma
    few = _write_csv(tmp_path / "few.csv", picked)
    classifier = Classifier.load(device="cpu")
    results = run_xai_benchmark(
        few,
        tmp_path / "out",
        classifier,
        methods=["gradcam"],
        images_root=boxes_csv.parent,
        sanity=False,
        progress=False,
    )
    assert set(json.loads((tmp_path / "out" / "xai.json").read_text())) == {"gradcam"}  # no reliance without masks
    with open(tmp_path / "out" / "xai_per_image.csv", newline="") as fh:
        mine = list(csv.DictReader(fh))
    with open(COMMITTED / "xai_per_image.csv", newline="") as fh:
        committed_header = next(csv.reader(fh))
    assert list(mine[0]) == [k for k in committed_header if not k.startswith("nearest_train")]
    for r in mine:
        ref = committed[("gradcam", r["file"])]
        for key in ("pointing_game", "energy_in_box", "iou", "region_in_box", "box_in_region", "sharpness"):
            assert r[key] == ref[key], (r["file"], key)
        for key in ("deletion_auc", "insertion_auc", "box_occlusion_drop", "mirror_occlusion_drop"):
            assert float(r[key]) == pytest.approx(float(ref[key]), abs=1e-3), (r["file"], key)
    gradcam = results["gradcam"]
    assert gradcam["pointing_game"] == pytest.approx(
        np.mean([float(committed[("gradcam", r["file"])]["pointing_game"]) for r in mine])
    )
    assert {c: e["n"] for c, e in gradcam["per_class"].items()} == {"pituitary": 1, "meningioma": 1, "glioma": 1}
