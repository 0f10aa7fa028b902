"""Shared fixtures: the real dataset beside the checkout, and small checkpoints built on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (the Kaggle dataset and the figshare boxes). CI always has it."""
    if not (SHARED_DATA / "brain-tumor-mri").is_dir():
        pytest.fail(f"shared dataset not found at {SHARED_DATA}; see README 'Dataset layout'")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mri_root(shared_data: Path) -> Path:
    return shared_data / "brain-tumor-mri"


@pytest.fixture(scope="session")
def boxes_csv(shared_data: Path) -> Path:
    return shared_data / "figshare-boxes-dev" / "boxes.csv"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return REPO_ROOT / "src" / "brainxai" / "samples"


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained efficientnet-lite0 checkpoint (ImageNet backbone, random head), seeded.

    For plumbing tests that need a checkpoint file but not accuracy.
    """
    from brainxai.models import create_model
    from brainxai.models.checkpoint import CheckpointMeta, save_checkpoint

    torch.manual_seed(0)
    model = create_model("efficientnet-lite0", pretrained=True)
    cfg = model.brainxai_config
    path = tmp_path_factory.mktemp("ckpt") / "random"
    save_checkpoint(
        path,
        model,
        CheckpointMeta(model="efficientnet-lite0", classes=list(cfg.classes), preprocess=cfg.preprocess),
    )
    return path


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _head_with_patch(head: int, patch: int) -> np.ndarray:
    """A 120x160 elliptic head of intensity ``head`` on black, with one 30x20 patch of intensity ``patch``."""
    yy, xx = np.mgrid[:120, :160]
    img = np.zeros((120, 160), np.uint8)
    img[((xx - 79.5) / 70) ** 2 + ((yy - 59.5) / 50) ** 2 <= 1] = head
    img[60:80, 70:100] = patch
    return img


@pytest.fixture()
def dark_scan() -> np.ndarray:
    """A head below the crop threshold 45 but above the fallback 20, with a bright patch: threshold 45 alone
    keeps the patch only (the failure seen on dark scans); the fallback finds the head."""
    return _head_with_patch(40, 90)


@pytest.fixture()
def failed_crop_scan() -> np.ndarray:
    """A head below both crop thresholds with a bright patch: the crop keeps 4% of the image."""
    return _head_with_patch(17, 60)
