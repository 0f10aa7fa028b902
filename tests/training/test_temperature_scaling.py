"""Temperature scaling of real checkpoints: fitted by the trainer, applied by the Classifier,
refitted by ``brainxai calibrate`` on the rebuilt validation split (and refused on other data)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from brainxai.cli import app
from brainxai.constants import CLASSES
from brainxai.evaluation.calibration import nll
from brainxai.evaluation.evaluate import evaluate
from brainxai.inference import Classifier
from brainxai.models.checkpoint import CheckpointError, file_sha256, load_checkpoint
from brainxai.training.split import training_split
from brainxai.training.trainer import TrainConfig, train


def _copy_dataset(mri_root: Path, root: Path, n_train: int = 8, n_test: int = 2) -> Path:
    for split, n in (("Training", n_train), ("Testing", n_test)):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for f in sorted((mri_root / split / c).glob("*.jpg"))[40 : 40 + n]:
                shutil.copy(f, root / split / c / f.name)
    return root


@pytest.fixture(scope="module")
def tiny_run(mri_root, tmp_path_factory):
    """A 1-epoch cnn-lstm run on 8 training images per class (6 used), and its dataset."""
    base = tmp_path_factory.mktemp("calib")
    data = _copy_dataset(mri_root, base / "ds")
    config = TrainConfig(
        data=str(data),
        model="cnn-lstm",
        out=str(base / "run"),
        epochs=1,
        batch_size=8,
        limit_per_class=6,
        val_fraction=0.5,
        seed=1,
        device="cpu",
        cache_dir=None,
        progress=False,
    )
    return data, train(config)


def _copy_checkpoint(result, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy(result.checkpoint.with_suffix(suffix), dest / f"best{suffix}")
    return dest / "best"


def _set_meta(stem: Path, **fields) -> None:
    path = stem.with_suffix(".json")
    meta = json.loads(path.read_text())
    for k, v in fields.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    path.write_text(json.dumps(meta))


def test_trainer_fits_the_temperature_on_its_validation_split(tiny_run):
    data, result = tiny_run
    meta = json.loads(result.checkpoint.with_suffix(".json").read_text())
    cal = meta["calibration"]
    assert meta["temperature"] > 0 and cal["method"] == "temperature scaling"
    assert cal["fitted_on"] == "validation split of Training (seed 1, fraction 0.5, at most 6 images per class)"
    assert cal["n"] == result.extra["n_val"] == 12
    assert cal["nll_after"] <= cal["nll_before"]
    # The stored figures are those of the model's own logits on exactly that split.
    clf = Classifier.load(result.checkpoint, device="cpu")
    split = training_split(data, clf.preprocess, val_fraction=0.5, seed=1, limit_per_class=6, progress=False)
    logits, y = clf.logits_prepared(split.images[split.val_idx]), split.labels[split.val_idx]
    assert cal["nll_before"] == pytest.approx(nll(logits, y), abs=1e-6)
    assert cal["nll_after"] == pytest.approx(nll(logits, y, meta["temperature"]), abs=1e-6)
    print(
        f"\ntrainer: T={meta['temperature']:.4f} n={cal['n']} NLL {cal['nll_before']:.4f}->{cal['nll_after']:.4f} "
        f"ECE {cal['ece_before']:.4f}->{cal['ece_after']:.4f}"
    )


def test_classifier_divides_the_logits_by_the_checkpoint_temperature(tiny_run, tmp_path):
    _, result = tiny_run
    stem = _copy_checkpoint(result, tmp_path / "t2")
    _set_meta(stem, temperature=2.0)
    clf = Classifier.load(stem, device="cpu")
    assert clf.temperature == 2.0
    rng = np.random.default_rng(0)
    prepared = np.stack([clf.prepare(rng.integers(0, 255, (90, 80), dtype=np.uint8)) for _ in range(4)])
    with torch.no_grad():  # the unfolded model, computed independently of predict_proba_prepared
        logits = clf.model(clf.tensor(prepared)).double()
    probs = clf.predict_proba_prepared(prepared)
    assert np.allclose(probs, torch.softmax(logits / 2.0, 1).numpy(), atol=1e-6)
    assert np.allclose(clf.logits_prepared(prepared), logits.numpy(), atol=1e-5)
    assert (probs.argmax(1) == logits.numpy().argmax(1)).all()
    plain = torch.softmax(logits, 1).numpy()
    assert not np.allclose(probs, plain, atol=1e-4)  # the temperature did change the numbers
    # Explanations see the raw model: the Classifier's model is untouched by the temperature.
    assert clf.model is clf.checkpoint.model

    # A JSON written before temperatures existed loads with T = 1 (plain softmax).
    _set_meta(stem, temperature=None, calibration=None)
    old = Classifier.load(stem, device="cpu")
    assert old.temperature == 1.0 and old.checkpoint.meta.calibration == {}
    assert np.allclose(old.predict_proba_prepared(prepared), plain, atol=1e-6)

    for bad in (0, -1.0, "2", float("nan")):
        _set_meta(stem, temperature=bad)
        with pytest.raises(CheckpointError, match="temperature"):
            load_checkpoint(stem)


def test_calibrate_cli_rebuilds_the_split_and_refuses_other_data(tiny_run, tmp_path):
    data, result = tiny_run
    trained = json.loads(result.checkpoint.with_suffix(".json").read_text())
    stem = _copy_checkpoint(result, tmp_path / "ck")
    _set_meta(stem, temperature=None, calibration=None)
    # The same files at another path (the recorded path may be another machine's) are accepted.
    moved = shutil.copytree(data, tmp_path / "elsewhere" / "ds")
    args = ["calibrate", "--checkpoint", str(stem), "--device", "cpu", "--cache-dir", str(tmp_path / "cache")]
    ok = CliRunner().invoke(app, [*args, "--data", str(moved)])
    assert ok.exit_code == 0, ok.output
    assert "temperature" in ok.output and "NLL" in ok.output and "ECE" in ok.output
    meta = json.loads(stem.with_suffix(".json").read_text())
    # The rebuilt validation split is the trainer's: same images, same fit.
    assert meta["temperature"] == pytest.approx(trained["temperature"], rel=1e-6)
    for k, v in trained["calibration"].items():
        assert meta["calibration"][k] == (pytest.approx(v, rel=1e-6) if isinstance(v, float) else v)
    assert meta["history"] == trained["history"] and meta["recipe"] == trained["recipe"]
    assert Classifier.load(stem, device="cpu").temperature == meta["temperature"]
    print(f"\ncalibrate: {ok.output.strip()}")

    # One training image fewer: another dataset, so the split would differ. Nothing is written.
    (moved / "Training" / "glioma" / sorted(p.name for p in (moved / "Training" / "glioma").iterdir())[0]).unlink()
    before = stem.with_suffix(".json").read_bytes()
    bad = CliRunner().invoke(app, [*args, "--data", str(moved)])
    assert bad.exit_code == 1
    assert "fingerprint" in bad.output and trained["dataset_fingerprint"] in bad.output
    assert stem.with_suffix(".json").read_bytes() == before

    # A checkpoint with no recorded fingerprint cannot be calibrated.
    _set_meta(stem, dataset_fingerprint=None)
    none = CliRunner().invoke(app, [*args, "--data", str(data)])
    assert none.exit_code == 1 and "fingerprint" in none.output


def test_evaluation_report_names_the_temperature(tiny_run, tmp_path):
    data, result = tiny_run
    stem = _copy_checkpoint(result, tmp_path / "ck")
    for t, expected in ((1.0, False), (1.7, True)):
        _set_meta(stem, temperature=t)
        out = tmp_path / f"eval{t}"
        evaluate(data, out, checkpoint=stem, n_boot=0, device="cpu", cache_dir=None, progress=False)
        report = (out / "report.md").read_text()
        assert ("temperature T = 1.7000" in report) is expected
        assert ("validation split of Training (seed 1" in report) is expected


def test_calibrate_from_carries_a_temperature_over_to_a_refit(tiny_run, tmp_path):
    data, result = tiny_run
    source = json.loads(result.checkpoint.with_suffix(".json").read_text())
    refit = train(
        TrainConfig(
            data=str(data),
            model="cnn-lstm",
            out=str(tmp_path / "refit"),
            epochs=1,
            batch_size=8,
            limit_per_class=6,
            val_fraction=0.0,
            lr_schedule="cosine",
            seed=1,
            device="cpu",
            cache_dir=None,
            progress=False,
        )
    )
    stem = refit.checkpoint.with_suffix("")
    assert Classifier.load(stem, device="cpu").temperature == 1.0
    base = ["calibrate", "--checkpoint", str(stem), "--device", "cpu", "--cache-dir", str(tmp_path / "cache")]

    # A refit has no validation split of its own to fit on: the error points to --from.
    own = CliRunner().invoke(app, [*base, "--data", str(data)])
    assert own.exit_code == 1 and "--from" in own.output and "no validation split" in own.output
    for args in ([], ["--data", str(data), "--from", str(result.checkpoint)]):
        bad = CliRunner().invoke(app, [*base, *args])
        assert bad.exit_code == 1 and "either --data" in bad.output

    ok = CliRunner().invoke(app, [*base, "--from", str(result.checkpoint)])
    assert ok.exit_code == 0, ok.output
    assert "carried over" in ok.output
    meta = json.loads(stem.with_suffix(".json").read_text())
    assert meta["temperature"] == source["temperature"]
    cal = meta["calibration"]
    # The figures are the source's, and the record says where the temperature was fitted.
    assert {k: cal[k] for k in ("n", "nll_before", "nll_after", "method")} == {
        k: source["calibration"][k] for k in ("n", "nll_before", "nll_after", "method")
    }
    assert cal["fitted_on"].startswith(source["calibration"]["fitted_on"] + " of another checkpoint (sha256 ")
    assert cal["fitted_on"].endswith("carried over unchanged")
    assert cal["carried_over_from_sha256"] == file_sha256(result.checkpoint)
    assert cal["fitted_on"].split("sha256 ")[1].startswith(cal["carried_over_from_sha256"][:16])
    assert Classifier.load(stem, device="cpu").temperature == source["temperature"]

    # Another architecture's temperature is refused; nothing is written.
    other = _copy_checkpoint(result, tmp_path / "other")
    _set_meta(other, model="resnet18")
    before = stem.with_suffix(".json").read_bytes()
    wrong = CliRunner().invoke(app, [*base, "--from", str(other)])
    assert wrong.exit_code == 1 and "same model and classes" in wrong.output
    assert stem.with_suffix(".json").read_bytes() == before

    # A source that was never calibrated has nothing to carry over; nothing is written.
    plain = _copy_checkpoint(result, tmp_path / "plain")
    _set_meta(plain, temperature=None, calibration=None)
    before = stem.with_suffix(".json").read_bytes()
    none = CliRunner().invoke(app, [*base, "--from", str(plain)])
    assert none.exit_code == 1 and "no fitted temperature" in none.output
    assert stem.with_suffix(".json").read_bytes() == before
