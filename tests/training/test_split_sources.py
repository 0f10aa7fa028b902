"""Leave-one-source-out training: ``exclude_sources`` drops a source and its mirrored twins before the split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from brainxai.constants import CLASSES
from brainxai.models import get_model_config
from brainxai.training.split import training_split
from brainxai.training.trainer import TrainConfig

_TOKEN = {"glioma": "gl", "meningioma": "me", "notumor": "no", "pituitary": "pi"}


def _blobs(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.asarray(Image.fromarray(rng.integers(0, 255, (8, 8)).astype(np.uint8)).resize((96, 96), Image.BICUBIC))


def _kaggle_root(tmp_path: Path) -> Path:
    """Training: per tumour class 2 RGB (SARTAJ) + 2 L (figshare) images, no tumour 2 SARTAJ + 2 Br35H.

    Testing: one L glioma that is the mirror image of the RGB Training glioma 0001, one unrelated image per other class.
    """
    root = tmp_path / "ds"
    seed = 0
    for c in CLASSES:
        (root / "Training" / c).mkdir(parents=True)
        for n in (1, 2, 500, 501):
            seed += 1
            img = Image.fromarray(_blobs(seed))
            rgb = c == "notumor" or n < 10
            (img.convert("RGB") if rgb else img).save(root / "Training" / c / f"Tr-{_TOKEN[c]}_{n:04d}.jpg")
    for c, name, mode in (
        ("meningioma", "Te-me_0200", "L"),
        ("notumor", "Te-no_0001", "RGB"),
        ("pituitary", "Te-pi_0001", "RGB"),
    ):
        (root / "Testing" / c).mkdir(parents=True)
        Image.fromarray(_blobs(100 + len(c))).convert(mode).save(root / "Testing" / c / f"{name}.jpg")
    (root / "Testing" / "glioma").mkdir(parents=True)
    src = np.asarray(Image.open(root / "Training/glioma/Tr-gl_0001.jpg").convert("L"))
    Image.fromarray(np.ascontiguousarray(src[:, ::-1])).save(root / "Testing/glioma/Te-gl_0300.jpg")
    return root


def test_exclude_sources_drops_the_source_and_its_twins(tmp_path):
    root = _kaggle_root(tmp_path)
    preprocess = get_model_config("efficientnet-lite0").preprocess
    kw = dict(val_fraction=0.0, seed=0, cache_dir=None, progress=False)
    full = training_split(root, preprocess, **kw)
    split = training_split(root, preprocess, exclude_sources=("figshare",), **kw)
    gone = sorted(p.relative_to(root / "Training").as_posix() for p in split.excluded_by_source)
    # 2 figshare images per tumour class, and the SARTAJ glioma whose mirror image is a figshare test image.
    assert gone == sorted(
        [f"{c}/Tr-{_TOKEN[c]}_{n:04d}.jpg" for c in ("glioma", "meningioma", "pituitary") for n in (500, 501)]
        + ["glioma/Tr-gl_0001.jpg"]
    )
    assert np.bincount(split.labels, minlength=4).tolist() == [1, 2, 4, 2]
    assert split.fingerprint == full.fingerprint and split.excluded == []
    br35h = training_split(root, preprocess, exclude_sources=("br35h",), **kw)
    assert np.bincount(br35h.labels, minlength=4).tolist() == [4, 4, 2, 4]


def test_train_config_records_exclude_sources():
    config = TrainConfig(data="d", exclude_sources=("sartaj",))
    assert config.to_dict()["exclude_sources"] == ("sartaj",)
    assert TrainConfig(data="d").exclude_sources == ()


def test_train_cli_passes_exclude_source(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import brainxai.training.trainer as trainer
    from brainxai.cli import app

    seen = {}

    def fake_train(config, resume=False):
        seen["config"] = config
        raise ValueError("stop here")

    monkeypatch.setattr(trainer, "train", fake_train)
    args = ["train", "--data", str(tmp_path), "--exclude-source", "figshare", "--exclude-source", "br35h"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "stop here" in result.output
    assert seen["config"].exclude_sources == ("figshare", "br35h")
