import json
import shutil

import pytest
from typer.testing import CliRunner

from brainxai.cli import app
from brainxai.constants import CLASSES


@pytest.fixture()
def small_dataset(mri_root, tmp_path):
    """4 test and 4 training images per class from the shared data, plus one planted test twin."""
    root = tmp_path / "ds"
    for split in ("Training", "Testing"):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for f in sorted((mri_root / split / c).glob("*.jpg"))[40:44]:
                shutil.copy(f, root / split / c / f.name)
    twin_src = sorted((root / "Training" / "glioma").glob("*.jpg"))[0]
    shutil.copy(twin_src, root / "Testing" / "glioma" / "twin.jpg")
    return root


def test_evaluate_writes_raw_and_dedup_metrics(small_dataset, random_checkpoint, tmp_path):
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--data",
            str(small_dataset),
            "--checkpoint",
            str(random_checkpoint),
            "--out",
            str(out),
            "--n-boot",
            "100",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"raw", "dedup"}
    assert metrics["raw"]["n"] == 17 and metrics["dedup"]["n"] <= 16
    for m in metrics.values():
        assert {"n", "accuracy", "macro_f1", "confusion_matrix", "per_class", "ci95", "ece"} <= set(m)
        assert set(m["per_class"]["glioma"]) >= {"precision", "recall", "specificity", "f1", "auc"}
        assert sum(map(sum, m["confusion_matrix"])) == m["n"]
    preds = (out / "predictions.csv").read_text().splitlines()
    assert len(preds) == 18 and "Testing/glioma/twin.jpg" in "".join(preds)
    for name in ("confusion_raw.png", "roc_dedup.png", "reliability_raw.png", "report.md"):
        assert (out / name).stat().st_size > 500
    assert "Research use only" in (out / "report.md").read_text()

    # --subset gives one result over exactly the listed images.
    subset = tmp_path / "subset.txt"
    listed = [p.split(",")[0] for p in preds[1:4]]
    subset.write_text("\n".join(listed) + "\n")
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--data",
            str(small_dataset),
            "--checkpoint",
            str(random_checkpoint),
            "--out",
            str(tmp_path / "e2"),
            "--subset",
            str(subset),
            "--n-boot",
            "0",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    single = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    assert single["n"] == 3 and "raw" not in single


def test_evaluate_rejects_unknown_subset_paths(small_dataset, random_checkpoint, tmp_path):
    subset = tmp_path / "subset.txt"
    subset.write_text("Testing/glioma/does-not-exist.jpg\n")
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--data",
            str(small_dataset),
            "--checkpoint",
            str(random_checkpoint),
            "--out",
            str(tmp_path / "e"),
            "--subset",
            str(subset),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 1 and "subset path" in result.output


def test_audit_cli_on_small_dataset(small_dataset, tmp_path):
    result = CliRunner().invoke(app, ["audit-data", str(small_dataset), "--out", str(tmp_path / "a" / "audit.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert report["test_with_train_twin"] >= 1
    assert "Testing/glioma/twin.jpg" not in (tmp_path / "a" / "audit_dedup_test.txt").read_text()
    assert (tmp_path / "a" / report["size_plot"]).stat().st_size > 1000


def test_train_cli_reports_bad_layout(tmp_path):
    (tmp_path / "glioma").mkdir()
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "expected DIR/<class>" in result.output
