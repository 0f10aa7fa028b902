import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from brainxai.cli import app
from brainxai.constants import CLASSES
from brainxai.data.sources import SourceLabel
from brainxai.evaluation.by_source import by_source_markdown, load_source_labels, source_metrics, sources_of
from brainxai.evaluation.metrics import proportion_bootstrap_ci


def _probs(pred: list[int], n_classes: int = 4) -> np.ndarray:
    return np.eye(n_classes)[pred] * 0.9 + 0.025


def test_source_metrics_by_hand():
    classes = list(CLASSES)  # glioma, meningioma, notumor, pituitary
    y = np.array([0, 0, 0, 0, 1, 2, 2, 2, 2, 3])
    pred = [0, 0, 0, 2, 1, 2, 2, 2, 0, 3]
    sources = ["figshare"] * 4 + ["sartaj"] * 2 + ["br35h"] * 3 + ["figshare"]
    m = source_metrics(y, _probs(pred), sources, classes, n_boot=200)
    assert list(m) == ["figshare", "sartaj", "br35h"]
    fig = m["figshare"]
    assert fig["n"] == 5 and fig["accuracy"] == pytest.approx(4 / 5)
    assert set(fig["per_class"]) == {"glioma", "pituitary"}  # classes it does not have are absent
    assert fig["per_class"]["glioma"]["recall"] == pytest.approx(0.75) and fig["per_class"]["glioma"]["support"] == 4
    lo, hi = fig["per_class"]["glioma"]["recall_ci95"]
    assert 0 <= lo <= 0.75 <= hi <= 1
    assert fig["per_class"]["pituitary"]["recall_ci95"] == [1.0, 1.0]
    notumor = m["br35h"]["per_class"]["notumor"]
    assert set(m["br35h"]["per_class"]) == {"notumor"}
    assert notumor["support"] == 3 and notumor["recall"] == pytest.approx(2 / 3)
    assert notumor["recall_wilson95"][0] < 2 / 3 < notumor["recall_wilson95"][1]
    assert fig["per_class"]["pituitary"]["recall_wilson95"][0] < 1.0  # 1 of 1 is no certainty
    assert m["br35h"]["confusion_matrix"][0] == [0, 0, 0, 0] and m["br35h"]["confusion_matrix"][2] == [1, 0, 2, 0]
    assert m["sartaj"]["accuracy"] == 1.0 and set(m["sartaj"]["per_class"]) == {"meningioma", "notumor"}

    lines = "\n".join(by_source_markdown({"raw": m}, classes, []))
    assert "not** leave-one-source-out" in lines and "| br35h | 3 |" in lines and "—" in lines
    assert "leave-one-source-out figures" in "\n".join(by_source_markdown({"raw": m}, classes, ["br35h"]))


def test_proportion_bootstrap_ci():
    hits = np.array([1] * 90 + [0] * 10, dtype=bool)
    lo, hi = proportion_bootstrap_ci(hits, n_boot=2000, seed=1)
    assert lo < 0.9 < hi and hi - lo < 0.15 and lo > 0.8
    assert proportion_bootstrap_ci(hits, n_boot=2000, seed=1) == (lo, hi)  # seeded
    assert proportion_bootstrap_ci([], n_boot=100) is None
    assert proportion_bootstrap_ci(hits, n_boot=0) is None


def test_sources_of_accepts_root_or_test_folder_paths():
    labels = [SourceLabel("Testing/glioma/a.jpg", "Testing", "glioma", "figshare", "r", "g1")]
    assert sources_of(["Testing/glioma/a.jpg"], labels, "Testing") == ["figshare"]
    assert sources_of(["glioma/a.jpg", "glioma/b.jpg"], labels, "Testing") == ["figshare", "unknown"]


@pytest.fixture()
def kaggle_sample(mri_root, tmp_path):
    """3 Kaggle-named images per class, split and source block (RGB/L, below/above the no-tumour threshold)."""
    root = tmp_path / "ds"
    for split in ("Training", "Testing"):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            files = sorted((mri_root / split / c).glob("*.jpg"))
            for f in files[:3] + files[-3:]:
                shutil.copy(f, root / split / c / f.name)
    return root


def test_evaluate_by_source(kaggle_sample, random_checkpoint, tmp_path):
    out = tmp_path / "eval"
    args = ["evaluate", "--data", str(kaggle_sample), "--checkpoint", str(random_checkpoint), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--n-boot", "50", "--device", "cpu", "--by-source", "auto"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"raw", "dedup", "by_source"}
    raw = metrics["by_source"]["raw"]
    # Testing: tumour classes 3 SARTAJ (RGB, lowest numbers) + 3 figshare (L) each; no tumour 3 + 3.
    assert {s: e["n"] for s, e in raw.items()} == {"figshare": 9, "sartaj": 12, "br35h": 3}
    assert set(raw["br35h"]["per_class"]) == {"notumor"} and "notumor" not in raw["figshare"]["per_class"]
    assert sum(e["n"] for e in metrics["by_source"]["dedup"].values()) == metrics["dedup"]["n"]
    report = (out / "report.md").read_text()
    assert "## By source" in report and "not** leave-one-source-out" in report
    assert "sartaj" in result.output

    # A sources CSV written by `brainxai sources` gives the same labels as "auto".
    csv_path = tmp_path / "sources.csv"
    result = CliRunner().invoke(
        app, ["sources", str(kaggle_sample), "--out", str(csv_path), "--cache-dir", str(tmp_path / "c")]
    )
    assert result.exit_code == 0, result.output
    assert "48 images" in result.output
    assert load_source_labels(csv_path, kaggle_sample, None, False) == load_source_labels(
        "auto", kaggle_sample, tmp_path / "c", False
    )
