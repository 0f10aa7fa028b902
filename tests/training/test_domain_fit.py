"""fit_domain: the out-of-domain statistics fitted on a training folder, or on a chosen part of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from brainxai.constants import CLASSES
from brainxai.data.dataset import discover_samples
from brainxai.inference import Classifier
from brainxai.training.domain import fit_domain


@pytest.fixture(scope="module")
def folder(mri_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Kaggle-layout root with 12 Training images per class (copies of the shared set's first ones)."""
    root = tmp_path_factory.mktemp("domain-data")
    for c in CLASSES:
        (root / "Training" / c).mkdir(parents=True)
        for src in sorted((mri_root / "Training" / c).glob("*.jpg"))[:12]:
            shutil.copy(src, root / "Training" / c / src.name)
    return root


def test_fit_on_chosen_samples_uses_those_alone(random_checkpoint: Path, folder: Path) -> None:
    clf = Classifier.load(random_checkpoint, device="cpu")
    everything = discover_samples(folder / "Training")
    # A leave-one-source-out pool, say: the first 8 of each class.
    pool = [s for c in range(len(CLASSES)) for s in [x for x in everything if x.label == c][:8]]
    fit = fit_domain(clf, folder, samples=pool, calibration_fraction=0.25, progress=False)
    split = fit.model.info["split"]
    assert sum(split["fit_counts"].values()) + sum(split["calibration_counts"].values()) == len(pool) == 32
    assert split["calibration_counts"] == dict.fromkeys(CLASSES, 2)
    pool_files = {str(s.path.relative_to(folder / "Training")) for s in pool}
    assert set(split["calibration_files"]) <= pool_files
    # The threshold is the calibration part's quantile: about 1 - q of those images lie above it.
    assert np.mean(fit.calibration_scores > fit.model.threshold) <= 0.125

    whole = fit_domain(clf, folder, calibration_fraction=0.25, progress=False)
    assert sum(whole.model.info["split"]["fit_counts"].values()) == 36  # 48 images, a quarter calibrates
    assert whole.model.info["dataset_fingerprint"] != fit.model.info["dataset_fingerprint"]
