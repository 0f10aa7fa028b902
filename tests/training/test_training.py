import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from brainxai.cli import app
from brainxai.inference import Classifier
from brainxai.models import create_model, get_model_config
from brainxai.models.checkpoint import CheckpointError, load_checkpoint
from brainxai.training import trainer as trainer_mod
from brainxai.training.schedules import apply_phase, progressive_schedule
from brainxai.training.trainer import TrainConfig, Trainer, resolve_amp, train


def _config(mri_root, out, **kw):
    base = dict(
        data=str(mri_root),
        model="cnn-lstm",
        out=str(out),
        epochs=1,
        batch_size=8,
        limit_per_class=6,
        seed=1,
        device="cpu",
        cache_dir=None,
        progress=False,
    )
    return TrainConfig(**(base | kw))


def test_one_epoch_checkpoint_reloads_and_predicts_identically(mri_root, tmp_path):
    result = train(_config(mri_root, tmp_path / "run"))
    assert result.checkpoint.is_file() and result.best_epoch == 1
    meta = json.loads(result.checkpoint.with_suffix(".json").read_text())
    assert meta["model"] == "cnn-lstm" and meta["classes"] == ["glioma", "meningioma", "notumor", "pituitary"]
    assert meta["preprocess"] == {"img_size": 64, "channels": 1, "normalize": "unit", "crop": True}
    assert meta["recipe"]["lr"] == 1e-3 and len(meta["dataset_fingerprint"]) == 16
    assert meta["history"][0]["epoch"] == 1 and "val_loss" in meta["history"][0]
    assert (tmp_path / "run" / "history.csv").read_text().startswith("epoch,phase,train_loss")

    # Reload: the checkpoint's preprocessing is restored and predictions match the trained model.
    clf = Classifier.load(result.checkpoint, device="cpu")
    assert clf.preprocess.img_size == 64 and clf.preprocess.channels == 1
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["model"]
    model = create_model("cnn-lstm", pretrained=False)
    model.load_state_dict(state)
    model.eval()
    rng = np.random.default_rng(0)
    scans = [rng.integers(0, 255, (90, 80), dtype=np.uint8) for _ in range(3)]
    prepared = np.stack([clf.prepare(s) for s in scans])
    # The trainer fitted a softmax temperature on the validation split; probabilities use it.
    assert clf.temperature == meta["temperature"] > 0 and meta["calibration"]["n"] == result.extra["n_val"]
    with torch.no_grad():
        ref = torch.softmax(model(clf.tensor(prepared)) / clf.temperature, 1).numpy()
    assert np.allclose(clf.predict_proba_prepared(prepared), ref, atol=1e-6)
    assert [p.label for p in clf.predict(scans)] == [clf.classes[i] for i in ref.argmax(1)]


def test_resume_after_interruption_matches_uninterrupted_run(mri_root, tmp_path, monkeypatch):
    full = train(_config(mri_root, tmp_path / "full", epochs=3))

    real = trainer_mod._run_epoch
    calls = {"train": 0}

    def killed_mid_epoch_3(model, loader, device, loss_fn, optimizer, *args):
        if optimizer is not None:
            calls["train"] += 1
            if calls["train"] == 3:
                raise KeyboardInterrupt  # as if the process were killed during epoch 3
        return real(model, loader, device, loss_fn, optimizer, *args)

    monkeypatch.setattr(trainer_mod, "_run_epoch", killed_mid_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train(_config(mri_root, tmp_path / "resumed", epochs=3))
    monkeypatch.setattr(trainer_mod, "_run_epoch", real)
    partial = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert [h["epoch"] for h in partial] == [1, 2]

    resumed = train(_config(mri_root, tmp_path / "resumed", epochs=3), resume=True)
    strip = lambda hist: [{k: v for k, v in h.items() if not k.endswith("time_s")} for h in hist]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    a = load_checkpoint(full.checkpoint).model.state_dict()
    b = load_checkpoint(resumed.checkpoint).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_time_budget_cuts_the_epoch_validates_and_saves_without_a_resume_point(mri_root, tmp_path):
    # 4 classes x 6 images, 80/20 split -> 20 training images = 3 batches of 8; a spent budget stops after one.
    result = train(_config(mri_root, tmp_path / "budget", epochs=3, time_budget_s=1e-9))
    assert [h["epoch"] for h in result.history] == [1]
    assert result.history[0]["epoch_fraction"] == pytest.approx(1 / 3, abs=1e-3)
    assert result.extra["time_budget_spent"] is True
    assert result.checkpoint.is_file() and result.best_epoch == 1
    assert not (tmp_path / "budget" / "last.pt").exists()

    unlimited = train(_config(mri_root, tmp_path / "full", epochs=2))
    assert [h["epoch_fraction"] for h in unlimited.history] == [1.0, 1.0]
    assert unlimited.extra["time_budget_spent"] is False


def test_progressive_phases_freeze_everything_else():
    cfg = get_model_config("resnet18")
    phases = progressive_schedule(cfg)
    assert [(p.lr, p.epochs) for p in phases] == [(1e-3, 15), (1e-4, 20), (5e-5, 15)]
    assert [p.trainable for p in phases] == [("fc",), ("fc", "layer4"), ("fc", "layer4", "layer3")]
    model = create_model("resnet18", pretrained=False)
    params = apply_phase(model, phases[1])
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc", "layer4"}
    assert len(params) == sum(1 for p in model.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="stages"):
        progressive_schedule(cfg, epochs=(1, 1, 1, 1), lrs=(1, 1, 1, 1))


def test_progressive_training_leaves_frozen_layers_untouched(mri_root, tmp_path):
    torch.manual_seed(1)
    initial = create_model("cnn-lstm", pretrained=False).state_dict()
    result = train(
        _config(mri_root, tmp_path / "prog", schedule="progressive", phase_epochs=(1, 1), phase_lrs=(1e-3, 1e-4))
    )
    assert [h["phase"] for h in result.history] == ["phase1:classifier", "phase2:classifier+lstm"]
    trained = load_checkpoint(result.checkpoint).model.state_dict()
    # features.0 is never unfrozen by two phases; BatchNorm statistics stay frozen too.
    for k in ("features.0.0.weight", "features.0.1.running_mean"):
        assert torch.equal(trained[k], initial[k])
    assert not torch.equal(trained["classifier.3.weight"], initial["classifier.3.weight"])


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing")


def test_resolve_amp_is_bf16_autocast_on_cuda_by_default_and_on_request_on_cpu():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # resolve_amp only reads .type; no GPU needed
    assert resolve_amp("auto", cpu) is False
    assert resolve_amp("off", cpu) is False
    assert resolve_amp("bf16", cpu) is True  # asked for: faster on CPUs with AMX
    assert resolve_amp("auto", cuda) is True
    assert resolve_amp("bf16", cuda) is True
    assert resolve_amp("off", cuda) is False
    with pytest.raises(ValueError, match="CUDA device or the CPU"):
        resolve_amp("bf16", torch.device("mps"))
    for bad in ("fp16", "on", ""):
        with pytest.raises(ValueError, match="auto, bf16 or off"):
            resolve_amp(bad, cpu)
        with pytest.raises(ValueError):
            resolve_amp(bad, cuda)


def test_cpu_bf16_training_runs_under_autocast_and_records_it(mri_root, tmp_path, monkeypatch):
    seen = []
    real = trainer_mod._run_epoch

    def spy(model, loader, device, loss_fn, optimizer, desc, progress, deadline=None, amp=False):
        seen.append(amp)
        return real(model, loader, device, loss_fn, optimizer, desc, progress, deadline, amp)

    monkeypatch.setattr(trainer_mod, "_run_epoch", spy)
    result = train(_config(mri_root, tmp_path / "bf16", amp="bf16"))
    assert seen == [True, True]  # the training and the validation pass
    assert json.loads(result.checkpoint.with_suffix(".json").read_text())["recipe"]["amp"] == "bf16"
    assert all(
        torch.isfinite(v).all()
        for v in load_checkpoint(result.checkpoint).model.state_dict().values()
        if v.is_floating_point()
    )


def test_refit_without_validation_keeps_the_last_epoch_and_stop_after_keeps_the_schedule(mri_root, tmp_path):
    kw = dict(val_fraction=0.0, lr_schedule="cosine", epochs=3, patience=1)
    # --stop-after 2 of a 3-epoch cosine schedule, then resumed to the end ...
    part = train(_config(mri_root, tmp_path / "refit", stop_after=2, **kw))
    assert [h["epoch"] for h in part.history] == [1, 2] and part.best_epoch == 2 and part.best_val_loss is None
    assert all(h["val_loss"] is None and h["val_accuracy"] is None for h in part.history)
    assert part.extra["n_val"] == 0 and part.extra["n_train"] == 24  # all 4 x 6 images train
    # The rates are those of the 3-epoch schedule, not of a 2-epoch one.
    assert [h["lr"] for h in part.history] == pytest.approx([1e-3, 7.525e-4], rel=1e-9)
    meta = json.loads(part.checkpoint.with_suffix(".json").read_text())
    assert meta["recipe"]["stop_after"] == 2 and meta["recipe"]["val_fraction"] == 0.0
    assert meta["metrics"] == {"best_epoch": 2, "val_loss": None, "val_accuracy": None}
    assert meta["temperature"] == 1.0 and not meta.get("calibration")  # nothing to fit on
    # The checkpoint is the last epoch's model (no validation loss can pick another), even with
    # patience 1, which a run with validation could have stopped on.
    last = torch.load(tmp_path / "refit" / "last.pt", weights_only=False)["model"]
    kept = load_checkpoint(part.checkpoint).model.state_dict()
    assert all(torch.equal(kept[k], last[k]) for k in kept)
    again = train(_config(mri_root, tmp_path / "refit", stop_after=2, **kw), resume=True)
    assert [h["epoch"] for h in again.history] == [1, 2]  # already there: nothing more is trained

    resumed = train(_config(mri_root, tmp_path / "refit", **kw), resume=True)
    full = train(_config(mri_root, tmp_path / "full", **kw))
    # ... equals the uninterrupted 3-epoch refit.
    strip = lambda hist: [{k: v for k, v in h.items() if not k.endswith("time_s")} for h in hist]  # noqa: E731
    assert strip(resumed.history) == strip(full.history) and resumed.best_epoch == 3
    a = load_checkpoint(full.checkpoint).model.state_dict()
    b = load_checkpoint(resumed.checkpoint).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_refit_refuses_the_plateau_schedule_and_a_bad_stop_after(mri_root, tmp_path):
    with pytest.raises(ValueError, match="plateau schedule reads the validation loss"):
        train(_config(mri_root, tmp_path / "p", val_fraction=0.0, lr_schedule="plateau"))
    with pytest.raises(ValueError, match="--stop-after must be at least 1"):
        train(_config(mri_root, tmp_path / "s", stop_after=0))


def test_cosine_schedule_records_the_rate_used_in_each_epoch(mri_root, tmp_path):
    lr, epochs = 1e-3, 3
    eta_min = lr * 0.01
    result = train(_config(mri_root, tmp_path / "cos", epochs=epochs, lr=lr, lr_schedule="cosine"))
    # Epoch t (0-based) runs at the closed-form cosine rate for step t of T = the phase's epochs.
    expected = [eta_min + (lr - eta_min) * (1 + math.cos(math.pi * t / epochs)) / 2 for t in range(epochs)]
    assert (
        expected[0] == pytest.approx(lr)
        and expected[1] == pytest.approx(7.525e-4)
        and expected[2] == pytest.approx(2.575e-4)
    )
    assert [h["lr"] for h in result.history] == pytest.approx(expected, rel=1e-9)
    assert json.loads(result.checkpoint.with_suffix(".json").read_text())["recipe"]["lr_schedule"] == "cosine"


def test_plateau_schedule_records_the_rate_used_in_each_epoch(mri_root, tmp_path):
    # lr_patience=0: the rate halves right after any epoch whose val loss is not a new best
    # (ReduceLROnPlateau's default relative threshold 1e-4).
    lr = 1e-3
    result = train(_config(mri_root, tmp_path / "plateau", epochs=3, lr=lr, lr_patience=0, patience=10))
    hist = result.history
    assert hist[0]["lr"] == lr and hist[1]["lr"] == lr
    improved = hist[1]["val_loss"] < hist[0]["val_loss"] * (1 - 1e-4)
    assert hist[2]["lr"] == pytest.approx(lr if improved else lr * 0.5)


def test_worker_processes_do_not_change_the_result(mri_root, tmp_path):
    runs = [train(_config(mri_root, tmp_path / f"w{w}", workers=w)) for w in (0, 2)]
    strip = lambda hist: [{k: v for k, v in h.items() if not k.endswith("time_s")} for h in hist]  # noqa: E731
    assert strip(runs[0].history) == strip(runs[1].history)
    a, b = (torch.load(tmp_path / f"w{w}" / "last.pt", weights_only=False)["model"] for w in (0, 2))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_validation_loss_ignores_label_smoothing(mri_root, tmp_path, monkeypatch):
    # Capture the validation set the trainer builds, so the loss can be recomputed on exactly it.
    val_sets = []
    real_data = Trainer._data

    def spy(self, preprocess):
        out = real_data(self, preprocess)
        val_sets.append(out[1])
        return out

    monkeypatch.setattr(Trainer, "_data", spy)
    plain = train(_config(mri_root, tmp_path / "plain"))
    smooth = train(_config(mri_root, tmp_path / "smooth", label_smoothing=0.3))
    # Smoothing changes the training objective (same data, same seed, same initial weights).
    assert abs(plain.history[0]["train_loss"] - smooth.history[0]["train_loss"]) > 1e-3

    val = val_sets[1]
    x = torch.stack([val[i][0] for i in range(len(val))])
    y = torch.as_tensor(val.labels)
    model = Classifier.load(smooth.checkpoint, device="cpu").model
    with torch.no_grad():
        logits = model(x)
    row = smooth.history[0]
    plain_ce = F.cross_entropy(logits, y).item()
    smoothed_ce = F.cross_entropy(logits, y, label_smoothing=0.3).item()
    assert row["val_loss"] == pytest.approx(plain_ce, abs=1e-4)
    assert abs(row["val_loss"] - smoothed_ce) > 1e-3  # the check can tell the two losses apart
    assert row["val_accuracy"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert smooth.best_val_loss == pytest.approx(plain_ce, abs=1e-4)


def test_train_cli_exposes_the_new_options_and_rejects_an_unknown_lr_schedule(mri_root, tmp_path):
    result = CliRunner().invoke(app, ["train", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for option in ("--lr-schedule", "--amp", "--workers", "--label-smoothing", "--exclude-twins-of"):
        assert option in result.output

    result = CliRunner().invoke(
        app,
        [
            "train",
            "--data",
            str(mri_root),
            "--model",
            "cnn-lstm",
            "--out",
            str(tmp_path / "o"),
            "--limit-per-class",
            "6",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--scratch",
            "--lr-schedule",
            "foo",
        ],
    )
    assert result.exit_code == 1
    assert "error:" in result.output and "foo" in result.output and "cosine" in result.output
    assert not (tmp_path / "o" / "best.safetensors").exists()


def test_exclude_twins_of_keeps_an_evaluation_set_out_and_calibrate_rebuilds_the_same_split(
    mri_root, boxes_csv, tmp_path
):
    import imagehash
    from PIL import Image

    from brainxai.training.calibrate import calibrate_checkpoint

    result = train(_config(mri_root, tmp_path / "run", exclude_twins_of=str(boxes_csv)))
    meta = json.loads(result.checkpoint.with_suffix(".json").read_text())
    assert meta["recipe"]["exclude_twins_of"] == str(boxes_csv)
    excluded = meta["recipe"]["data_info"]["excluded_twins"]
    assert excluded == result.extra["excluded_twins"]
    # The 60 box images include figshare slices that the Kaggle Training split holds (42 of them).
    assert len(excluded) >= 42
    box_hashes = [
        imagehash.phash(Image.open(p).convert("L")) for p in sorted((boxes_csv.parent / "images").glob("*.jpg"))
    ]
    training = mri_root / "Training"
    for rel in excluded[:10]:  # each one, or its mirror image, is within 4 bits of a box image (checked independently)
        img = Image.open(training / rel).convert("L")
        h, h_mirror = imagehash.phash(img), imagehash.phash(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
        assert min(min(h - b, h_mirror - b) for b in box_hashes) <= 4, rel
    # calibrate rebuilds the run's validation split from the recipe, exclusion included.
    report = calibrate_checkpoint(result.checkpoint, mri_root, device="cpu", cache_dir=None, progress=False)
    assert report["n"] == result.extra["n_val"]


def test_init_from_starts_at_the_checkpoints_weights_and_records_it(mri_root, tmp_path, monkeypatch):
    first = train(_config(mri_root, tmp_path / "a"))
    start = load_checkpoint(first.checkpoint).model.state_dict()
    seen: dict[str, torch.Tensor] = {}
    original = trainer_mod._run_epoch

    def spy(model, *args, **kwargs):  # the weights the first optimisation step starts from
        if not seen:
            seen.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        return original(model, *args, **kwargs)

    monkeypatch.setattr(trainer_mod, "_run_epoch", spy)
    second = train(_config(mri_root, tmp_path / "b", init_from=str(first.checkpoint), lr=1e-4))
    assert all(torch.equal(seen[k], start[k]) for k in start)
    meta = json.loads(second.checkpoint.with_suffix(".json").read_text())
    assert meta["recipe"]["init_from"] == str(first.checkpoint)
    assert second.extra["init_from"]["sha256"] == load_checkpoint(first.checkpoint).sha256


def test_init_from_another_architecture_is_a_clear_error(mri_root, tmp_path):
    first = train(_config(mri_root, tmp_path / "a"))
    with pytest.raises(CheckpointError, match="'cnn-lstm' checkpoint"):
        train(_config(mri_root, tmp_path / "b", model="resnet18", pretrained=False, init_from=str(first.checkpoint)))
