"""The benchmark runner on three real images and the two CLI commands, with a small model."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from brainxai.cli import app
from brainxai.inference import Classifier
from brainxai.xai_benchmark import (
    METRICS,
    randomized_copy,
    read_boxes,
    run_xai_benchmark,
)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    """EfficientNet-Lite0 (ImageNet backbone, random head) at 64 px: real architecture, quick."""
    from brainxai.models import create_model
    from brainxai.models.checkpoint import CheckpointMeta, save_checkpoint

    torch.manual_seed(0)
    model = create_model("efficientnet-lite0", pretrained=True, img_size=64)
    cfg = model.brainxai_config
    path = tmp_path_factory.mktemp("xai") / "lite64"
    save_checkpoint(
        path, model, CheckpointMeta(model="efficientnet-lite0", classes=list(cfg.classes), preprocess=cfg.preprocess)
    )
    return path


@pytest.fixture(scope="module")
def three_boxes(tmp_path_factory, boxes_csv) -> Path:
    """One image per class, CSV in another folder (so --images-root is exercised)."""
    with open(boxes_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    picked = {r["label"]: r for r in rows}.values()
    out = tmp_path_factory.mktemp("boxes") / "three.csv"
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(picked)
    return out


def test_read_boxes(boxes_csv) -> None:
    recs = read_boxes(boxes_csv)
    assert len(recs) == 60
    assert all(r.path.is_file() for r in recs)
    assert {r.label for r in recs} == {"glioma", "meningioma", "pituitary"}
    assert all(r.box[2] > r.box[0] and r.box[3] > r.box[1] for r in recs)


def test_read_boxes_rejects_bad_files(tmp_path) -> None:
    p = tmp_path / "b.csv"
    p.write_text("file,label,x0,y0\na.jpg,glioma,1,2\n")
    with pytest.raises(ValueError, match="x1"):
        read_boxes(p)
    p.write_text("file,label,x0,y0,x1,y1\na.jpg,glioma,5,5,5,9\n")
    with pytest.raises(ValueError, match="empty box"):
        read_boxes(p)


def test_rank_agreement_keeps_the_report_conventions() -> None:
    from brainxai.xai_benchmark.metrics import rank_agreement

    assert np.isnan(rank_agreement([1.0, 2.0], [2.0, 1.0]))  # under three values: not reported
    assert rank_agreement([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]) == 0.0  # a constant side: no correlation
    assert rank_agreement([1.0, 2.0, 3.0, 4.0], [1.0, 4.0, 9.0, 16.0]) == pytest.approx(1.0)


def test_placed_box_metrics() -> None:
    from brainxai.xai_benchmark import placed_box_metrics

    mapped = np.zeros((64, 64), np.float32)
    mapped[20:30, 20:30] = 1.0
    brain = np.ones((64, 64), bool)
    inside = placed_box_metrics(mapped, (18, 18, 32, 32), brain)
    assert inside["pointing_game"] == 1.0 and inside["energy_in_box"] == pytest.approx(1.0)
    assert inside["region_in_box"] == pytest.approx(1.0) and 0.0 < inside["iou"] <= 1.0
    away = placed_box_metrics(mapped, (50, 50, 60, 60), brain, tolerance=5)
    assert away["pointing_game"] == 0.0 and away["energy_in_box"] == 0.0 and away["iou"] == 0.0


def test_randomized_copy_changes_weights_not_the_original(registered_factory) -> None:
    model = registered_factory("resnet18")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rand = randomized_copy(model, seed=0)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not torch.equal(rand.conv1.weight, model.conv1.weight)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = rand(x)
    assert torch.isfinite(out).all() and out.abs().max() > 1e-3  # not collapsed to subnormal values


def test_runner_on_three_images(small_checkpoint, three_boxes, boxes_csv, samples_dir, tmp_path) -> None:
    # A "training set" holding the three boxes' meningioma image, so one image counts as seen.
    with open(three_boxes, newline="") as fh:
        seen_file = next(r["file"] for r in csv.DictReader(fh) if r["label"] == "meningioma")
    train = tmp_path / "Training"
    for name in ("glioma", "meningioma", "notumor", "pituitary"):
        (train / name).mkdir(parents=True)
        shutil.copy(samples_dir / f"{name}.jpg", train / name / "sample.jpg")
    shutil.copy(boxes_csv.parent / seen_file, train / "meningioma" / "seen.jpg")
    classifier = Classifier.load(small_checkpoint, device="cpu")
    out = tmp_path / "xai"
    results = run_xai_benchmark(
        three_boxes,
        out,
        classifier,
        images_root=boxes_csv.parent,
        steps=4,
        batch_size=2,
        grid_images=3,
        train_data=train,
        progress=False,
    )
    assert list(results) == ["lrp", "gradcam", "gradcam++", "hirescam", "guided-backprop", "guided-gradcam"]
    for method, r in results.items():
        assert set(r) == {*METRICS, "n", "per_class"} and r["n"] == 3
        assert {c: e["n"] for c, e in r["per_class"].items()} == {"pituitary": 1, "meningioma": 1, "glioma": 1}
        for key in ("pointing_game", "energy_in_box", "iou", "deletion_auc", "insertion_auc"):
            assert 0.0 <= r[key] <= 1.0, (method, key)
        assert -1.0 <= r["sanity_rank_corr"] <= 1.0
        assert r["sharpness"] >= 0 and r["ms_per_image"] > 0
    on_disk = json.loads((out / "xai.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    md = (out / "xai.md").read_text()
    assert "| lrp |" in md and "Does sharpness agree with localisation?" in md and "Research use only" in md
    # Each row carries the 95% Wilson interval of its pointing game, and it brackets the figure.
    row = next(line for line in md.splitlines() if line.startswith("| lrp |")).split("|")
    lo, hi = (float(v) for v in row[3].strip(" []").split(","))
    assert lo <= results["lrp"]["pointing_game"] <= hi and hi - lo > 0.3  # three images: a wide interval
    assert "95% CI [" in md
    with open(out / "xai_per_image.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 18
    # The region against the box: two shares whose overlap, with the areas, gives back the IoU.
    for r in rows:
        if r["region_in_box"] == "":  # an empty region (the tiny test model's maps may have none)
            assert float(r["box_in_region"]) == 0.0 and float(r["iou"]) == 0.0
            continue
        inside, covered, iou = float(r["region_in_box"]), float(r["box_in_region"]), float(r["iou"])
        assert 0.0 <= inside <= 1.0 and 0.0 <= covered <= 1.0
        if inside > 0 and covered > 0:  # |R∩B| / |R∪B| with |R| = |R∩B|/inside and |B| = |R∩B|/covered
            assert iou == pytest.approx(1.0 / (1.0 / inside + 1.0 / covered - 1.0), rel=1e-4)
    assert any(r["region_in_box"] != "" for r in rows)  # the identity above was checked at least once
    assert "## The relevance region against the box" in md
    assert (out / "xai_grid.png").stat().st_size > 10_000

    # The model-level checks: one box occlusion drop per image, the same in every method's rows.
    drops = {(r["file"], r["method"]): float(r["box_occlusion_drop"]) for r in rows}
    for f in {r["file"] for r in rows}:
        assert len({v for (ff, _), v in drops.items() if ff == f}) == 1
    seen = {r["file"]: (r["nearest_train"], int(r["nearest_train_distance"])) for r in rows}
    assert seen[Path(seen_file).name] == ("meningioma/seen.jpg", 0)
    assert sum(d <= 4 for _, d in seen.values()) == 1
    subsets = json.loads((out / "xai_subsets.json").read_text())
    assert subsets["in the training data"]["n"] == 1 and subsets["in the training data"]["labels"]["meningioma"] == 1
    assert subsets["not in the training data"]["n"] == 2
    assert subsets["model uses the box"]["n"] + subsets["model does not use the box"]["n"] == 3
    uses = [f for f in {r["file"] for r in rows} if drops[(f, "lrp")] >= 0.1]
    assert subsets["model uses the box"]["n"] == len(uses)
    # A subset's pointing game is the mean of its images' hits.
    hits = {r["file"]: int(r["pointing_game"]) for r in rows if r["method"] == "gradcam"}
    assert subsets["in the training data"]["methods"]["gradcam"]["pointing_game"] == hits[Path(seen_file).name]
    assert "## Did the model use the tumour?" in md and "1 of 3 have a twin" in md
    # The centre baseline is scored like a method and reported beside them.
    centre = subsets["not in the training data"]["centre_baseline"]
    assert centre["n"] == 2 and 0.0 <= centre["energy_in_box"] <= 1.0 and centre["pointing_game"] in (0.0, 0.5, 1.0)
    assert "Centre baseline (" in md and "| *centre baseline* |" in md

    # A checkpoint trained with --exclude-twins-of never saw the files it records as excluded: the
    # same image is then not counted as a training image.
    classifier.checkpoint.meta.recipe["data_info"] = {"excluded_twins": ["meningioma/seen.jpg"]}
    run_xai_benchmark(
        three_boxes,
        tmp_path / "xai_excl",
        classifier,
        methods=["gradcam"],
        images_root=boxes_csv.parent,
        steps=2,
        batch_size=3,
        grid_images=1,
        sanity=False,
        train_data=train,
        progress=False,
    )
    subsets = json.loads((tmp_path / "xai_excl" / "xai_subsets.json").read_text())
    assert subsets["in the training data"]["n"] == 0 and subsets["not in the training data"]["n"] == 3
    assert "(`excluded_twins`: 1) are not counted" in (tmp_path / "xai_excl" / "xai.md").read_text()


def test_runner_reports_unsupported_methods(three_boxes, boxes_csv, tmp_path) -> None:
    from brainxai.models import create_model
    from brainxai.models.checkpoint import CheckpointMeta, save_checkpoint

    torch.manual_seed(0)
    model = create_model("cnn-lstm", pretrained=False)
    cfg = model.brainxai_config
    save_checkpoint(
        tmp_path / "lstm", model, CheckpointMeta(model="cnn-lstm", classes=list(cfg.classes), preprocess=cfg.preprocess)
    )
    classifier = Classifier.load(tmp_path / "lstm", device="cpu")
    results = run_xai_benchmark(
        three_boxes,
        tmp_path / "out",
        classifier,
        methods=["lrp", "gradcam"],
        images_root=boxes_csv.parent,
        steps=2,
        sanity=False,
        progress=False,
    )
    assert results["lrp"]["n"] == 0 and results["lrp"]["pointing_game"] is None and results["lrp"]["per_class"] == {}
    assert results["gradcam"]["n"] == 3 and results["gradcam"]["sanity_rank_corr"] is None
    assert "lrp cannot explain model 'cnn-lstm'" in (tmp_path / "out" / "xai.md").read_text()


def test_runner_rejects_unknown_labels(small_checkpoint, tmp_path, boxes_csv) -> None:
    p = tmp_path / "b.csv"
    p.write_text("file,label,width,height,x0,y0,x1,y1\nimages/x.jpg,astrocytoma,512,512,1,1,9,9\n")
    with pytest.raises(ValueError, match="astrocytoma"):
        run_xai_benchmark(p, tmp_path / "o", Classifier.load(small_checkpoint, device="cpu"), progress=False)


def test_cli_explain_writes_views(small_checkpoint, samples_dir, tmp_path) -> None:
    out = tmp_path / "exp"
    result = CliRunner().invoke(
        app,
        [
            "explain",
            str(samples_dir / "glioma.jpg"),
            "--method",
            "gradcam",
            "--target",
            "meningioma",
            "--checkpoint",
            str(small_checkpoint),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    for name in ("heatmap", "overlay", "mask", "outline"):
        assert (out / f"{name}.png").stat().st_size > 500
    rel = np.load(out / "relevance.npy")
    assert rel.shape == (64, 64) and np.isfinite(rel).all()
    meta = json.loads((out / "explanation.json").read_text())
    assert meta["target_label"] == "meningioma" and meta["method"] == "gradcam"
    assert meta["crop_warning"] is None
    assert "Research use only" in result.output


def test_cli_explain_reads_dicom(small_checkpoint, samples_dir, tmp_path) -> None:
    """``explain`` reads what ``analyze`` reads: a DICOM file gives the same map as the same pixels in a PNG."""
    from dicomfiles import IDENTITY_WINDOW, make_dicom
    from PIL import Image

    from brainxai.io import read_raster

    pixels = read_raster(samples_dir / "glioma.jpg")
    # The identity window: the DICOM holds the PNG's pixels.
    (tmp_path / "scan.dcm").write_bytes(make_dicom(pixels, spacing=None, window=IDENTITY_WINDOW, orientation=None))
    Image.fromarray(pixels).save(tmp_path / "scan.png")

    for name in ("scan.dcm", "scan.png"):
        result = CliRunner().invoke(
            app,
            [
                "explain",
                str(tmp_path / name),
                "--method",
                "gradcam",
                "--checkpoint",
                str(small_checkpoint),
                "--out",
                str(tmp_path / name.replace(".", "_")),
            ],
        )
        assert result.exit_code == 0, result.output
    dcm, png = tmp_path / "scan_dcm", tmp_path / "scan_png"
    meta = json.loads((dcm / "explanation.json").read_text())
    assert meta["original_shape"] == list(pixels.shape) and meta["image"].endswith("scan.dcm")
    assert meta["probabilities"] == json.loads((png / "explanation.json").read_text())["probabilities"]
    np.testing.assert_array_equal(np.load(dcm / "relevance.npy"), np.load(png / "relevance.npy"))
    assert (dcm / "overlay.png").stat().st_size > 500


def test_cli_explain_refuses_what_is_not_a_brain_scan(small_checkpoint, tmp_path) -> None:
    from PIL import Image

    Image.fromarray(np.full((128, 128), 120, np.uint8)).save(tmp_path / "grey.png")
    result = CliRunner().invoke(
        app,
        ["explain", str(tmp_path / "grey.png"), "--checkpoint", str(small_checkpoint), "--out", str(tmp_path / "e")],
    )
    assert result.exit_code == 1 and "uniform" in result.output and "Traceback" not in result.output


def test_cli_explain_warns_about_a_failed_crop(small_checkpoint, failed_crop_scan, tmp_path) -> None:
    from PIL import Image

    Image.fromarray(failed_crop_scan).save(tmp_path / "dark.png")
    result = CliRunner().invoke(
        app,
        [
            "explain",
            str(tmp_path / "dark.png"),
            "--method",
            "gradcam",
            "--checkpoint",
            str(small_checkpoint),
            "--out",
            str(tmp_path / "exp"),
        ],
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "exp" / "explanation.json").read_text())
    assert "kept only 4% of the image" in meta["crop_warning"]
    assert "Warning: The automatic head crop kept only 4%" in result.output


def test_cli_explain_no_tumour_needs_the_flag(small_checkpoint, samples_dir, tmp_path) -> None:
    args = [
        "explain",
        str(samples_dir / "notumor.jpg"),
        "--method",
        "lrp",
        "--target",
        "notumor",
        "--checkpoint",
        str(small_checkpoint),
    ]
    r1 = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")])
    r2 = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b"), "--show-evidence"])
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    assert json.loads((tmp_path / "a" / "explanation.json").read_text())["region_drawn"] is False
    assert "evidence for 'no tumour'" in r2.output.lower()


def test_cli_explain_errors(small_checkpoint, samples_dir, tmp_path) -> None:
    base = ["explain", str(samples_dir / "glioma.jpg"), "--checkpoint", str(small_checkpoint), "--out", str(tmp_path)]
    r = CliRunner().invoke(app, [*base, "--method", "occlusion"])
    assert r.exit_code == 1 and "unknown method" in r.output
    r = CliRunner().invoke(app, [*base, "--target", "astrocytoma"])
    assert r.exit_code == 1 and "unknown target class" in r.output


def test_cli_xai_benchmark(small_checkpoint, three_boxes, boxes_csv, tmp_path) -> None:
    out = tmp_path / "bench"
    r = CliRunner().invoke(
        app,
        [
            "xai-benchmark",
            "--boxes",
            str(three_boxes),
            "--images-root",
            str(boxes_csv.parent),
            "--methods",
            "gradcam,guided-backprop",
            "--checkpoint",
            str(small_checkpoint),
            "--out",
            str(out),
            "--steps",
            "2",
            "--no-sanity",
        ],
    )
    assert r.exit_code == 0, r.output
    assert set(json.loads((out / "xai.json").read_text())) == {"gradcam", "guided-backprop"}
    # The report says how it was made: the options given, in a line that runs as it reads.
    assert (
        f"- Command: `brainxai xai-benchmark --boxes {three_boxes} --images-root {boxes_csv.parent} --methods "
        f"gradcam,guided-backprop --checkpoint {small_checkpoint} --out {out} --steps 2 --no-sanity`"
    ) in (out / "xai.md").read_text()
    r = CliRunner().invoke(app, ["xai-benchmark", "--boxes", str(three_boxes), "--methods", "nope", "--out", str(out)])
    assert r.exit_code == 1 and "unknown method" in r.output
    # A --train-data folder that is not one folder per class is a clear error, not a traceback.
    (tmp_path / "flat").mkdir()
    r = CliRunner().invoke(
        app,
        [
            "xai-benchmark",
            "--boxes",
            str(three_boxes),
            "--images-root",
            str(boxes_csv.parent),
            "--methods",
            "gradcam",
            "--checkpoint",
            str(small_checkpoint),
            "--out",
            str(out),
            "--no-sanity",
            "--train-data",
            str(tmp_path / "flat"),
        ],
    )
    assert r.exit_code == 1 and "flat" in r.output and "Traceback" not in r.output
