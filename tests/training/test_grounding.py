"""Lesion-grounded training: the explanation loss by hand, the mask head, and each kind end to end."""

import csv
import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from brainxai.cli import app
from brainxai.inference import Classifier
from brainxai.models import create_model
from brainxai.training.grounding import (
    Grounding,
    cam_outside,
    dilate,
    input_gradient_outside,
    mask_loss,
    outside_share,
    rrr_penalty,
)
from brainxai.training.trainer import TrainConfig, train

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


def _linear(w0: np.ndarray) -> nn.Module:
    """Two logits of a 4x4 one-channel input: class 0 weighs the pixels by ``w0``, class 1 by nothing."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor(np.stack([w0.ravel(), np.zeros(16)]), dtype=torch.float32))
    return model


def _inside():
    m = np.zeros((4, 4), np.float32)
    m[:2, :2] = 1  # the mask: 4 pixels inside, 12 outside
    return m


@pytest.mark.parametrize(("outside_weight", "expected"), [(0.0, 0.0), (1.0, 12 / 28), (-3.0, 12 * 9 / (16 + 12 * 9))])
def test_rrr_penalty_matches_the_hand_computation(outside_weight, expected):
    # d log p_0 / dx = (1 - p_0) w0 - p_1 * 0 = p_1 w0: the saliency is p_1^2 w0^2, so the outside share is
    # n_out b^2 / (n_in a^2 + n_out b^2) with a = 2 inside and b outside, whatever p_1 is.
    w0 = np.where(_inside() > 0, 2.0, outside_weight)
    model = _linear(w0)
    x = torch.rand(3, 1, 4, 4, requires_grad=True)
    logits = model(x)
    y = torch.zeros(3, dtype=torch.long)
    region = torch.tensor(_inside()).expand(3, 4, 4)
    share = input_gradient_outside(x, logits, y, region)
    assert share.detach().numpy() == pytest.approx([expected] * 3, abs=1e-6)
    penalty = rrr_penalty(x, logits, y, region, torch.tensor([True, False, True]))
    assert float(penalty.detach()) == pytest.approx(expected, abs=1e-6)
    if expected == 0.0:
        assert float(penalty.detach()) == 0.0  # exactly zero when all gradient mass lies in the mask


def test_rrr_penalty_trains_the_weights_towards_the_mask_by_double_backprop():
    model = _linear(np.ones((4, 4)))
    x = torch.rand(8, 1, 4, 4)
    y = torch.zeros(8, dtype=torch.long)
    region = torch.tensor(_inside()).expand(8, 4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    first = None
    for _ in range(20):
        xi = x.clone().requires_grad_(True)
        penalty = rrr_penalty(xi, model(xi), y, region, torch.ones(8, dtype=torch.bool))
        first = float(penalty.detach()) if first is None else first
        opt.zero_grad()
        penalty.backward()
        assert model[1].weight.grad is not None and model[1].weight.grad.abs().sum() > 0
        opt.step()
    assert first == pytest.approx(12 / 16, abs=1e-6) and float(penalty.detach()) < 0.5 * first


def test_cam_penalty_is_the_share_of_grad_cam_mass_in_cells_off_the_mask():
    # A GAP + linear head: Grad-CAM of class 0 is relu(sum_k w_0k A_k) / (h w), so with one channel and
    # w_00 = 2 it is proportional to A. A lesion in the input's top-left 4x4 pixels touches cell (0, 0).
    feats = torch.zeros(2, 1, 4, 4)
    feats[0, 0, 0, 0] = 1.0  # all mass in the lesion's cell
    feats[1, 0, 0, 0], feats[1, 0, 3, 3], feats[1, 0, 2, 1] = 1.0, 2.0, 1.0  # 3 of 4 parts outside
    feats.requires_grad_(True)
    logits = torch.cat([2 * feats.mean(dim=(1, 2, 3))[:, None], torch.zeros(2, 1)], dim=1)
    region = torch.zeros(2, 16, 16)
    region[:, :4, :4] = 1
    share = cam_outside(feats, logits, torch.zeros(2, dtype=torch.long), region)
    assert share.detach().tolist() == pytest.approx([0.0, 0.75])
    assert float(share[0].detach()) == 0.0
    share.sum().backward()  # differentiable in the features (hence in the encoder)
    assert feats.grad is not None and feats.grad[1].abs().sum() > 0


def test_outside_share_and_dilation():
    sal = torch.zeros(2, 5, 5)
    sal[0, 2, 2] = 1.0
    sal[0, 0, 0] = 3.0
    region = torch.zeros(2, 5, 5)
    region[:, 2, 2] = 1
    assert outside_share(sal, region).tolist() == pytest.approx([0.75, 0.0])  # no mass at all: 0
    grown = dilate(region[:, None], 1)[:, 0]
    assert grown[0].sum() == 9 and grown[0, 1:4, 1:4].all()


def test_mask_loss_rewards_the_right_mask_and_uses_empty_no_tumour_masks():
    mask = torch.zeros(2, 1, 8, 8)
    mask[0, :, 2:6, 2:6] = 1
    has, empty = torch.tensor([True, False]), torch.tensor([False, True])
    good = torch.where(torch.nn.functional.adaptive_avg_pool2d(mask, (4, 4)) > 0.5, 8.0, -8.0)
    assert float(mask_loss(good, mask, has, empty)) < 0.01
    assert float(mask_loss(-good, mask, has, empty)) > 1.0
    assert float(mask_loss(good, mask, torch.tensor([False, False]), torch.tensor([False, False]))) == 0.0


def test_multitask_head_hooks_the_encoder_and_leaves_the_classifier_unchanged():
    torch.manual_seed(0)
    model = create_model("cnn-lstm", pretrained=False)
    x = torch.rand(2, 1, 64, 64)
    before = model.eval()(x).detach()
    g = Grounding("multitask")
    g.attach(model, 64, torch.device("cpu"))
    assert g.head is not None and len(g.parameters()) == 4
    batch = [x, torch.tensor([0, 2]), torch.zeros(2, 1, 64, 64), torch.tensor([1.0, 0.0]), torch.zeros(2)]
    batch[2][0, :, 10:30, 10:30] = 1
    loss, logits, target, term = g.batch_loss(model.eval(), batch, nn.CrossEntropyLoss(), amp=False)
    assert logits.shape == (2, 4) and torch.allclose(logits, before) and term > 0
    loss.backward()
    assert all(p.grad is not None for p in g.parameters())
    with pytest.raises(ValueError, match="rrr"):
        Grounding("gradcam")


def test_multitask_inpaint_adds_the_no_tumour_target_and_an_empty_mask_for_in_painted_slices():
    torch.manual_seed(0)
    model = create_model("cnn-lstm", pretrained=False).eval()
    x = torch.rand(3, 1, 64, 64)
    y = torch.tensor([0, 0, 2])
    mask = torch.zeros(3, 1, 64, 64)
    mask[:2, :, 10:30, 10:30] = 1  # slices 0 and 1 have a lesion mask; slice 1 was in-painted
    has, inpainted = torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    both = Grounding("multitask-inpaint", weight=0.5)
    both.attach(model, 64, torch.device("cpu"))
    loss, logits, target, term = both.batch_loss(model, [x, y, mask, has, inpainted], nn.CrossEntropyLoss(), False)
    assert target.tolist() == [0, 2, 2]  # the in-painted glioma counts as "no tumour"
    soft = torch.tensor([0.1, 0.0, 0.9, 0.0])
    extra = -(soft * torch.log_softmax(logits[1], 0)).sum()
    base = nn.CrossEntropyLoss()(logits[[0, 2]], y[[0, 2]])
    kept = torch.tensor([True, False, False])
    head_term = float(term) - float(extra)
    expected = base + 0.5 * extra + 0.5 * head_term
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    # The head's target: slice 0's lesion, slice 1 empty (in-painted), slice 2 empty (no tumour).
    both._features.clear()
    model(x)
    head_out = both.head(both._features[-1])
    wanted = mask_loss(head_out, mask * kept[:, None, None, None], kept, torch.tensor([False, True, True]))
    assert head_term == pytest.approx(float(wanted), rel=1e-4)
    assert "head" in both.summary() and "target" in both.summary()


def _slice(seed: int, cls: int, size: int = 80):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    head = ((xx - size / 2) / (size * 0.42)) ** 2 + ((yy - size / 2) / (size * 0.46)) ** 2 <= 1
    img = np.where(head, rng.integers(50, 110, (size, size)), 0).astype(np.uint8)
    lesion = np.zeros((size, size), bool)
    if CLASSES[cls] != "notumor":
        cy, cx = rng.integers(25, 55, size=2)
        lesion = ((xx - cx) / (4 + 3 * cls)) ** 2 + ((yy - cy) / 6) ** 2 <= 1
        img[lesion] = 200 + 15 * cls
    return img, lesion


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """Training/ with 4 classes x 8 synthetic slices, and a BRISC-like set naming every tumour image as a twin."""
    root = tmp_path_factory.mktemp("grounding")
    brisc = root / "brisc"
    (brisc / "images").mkdir(parents=True)
    (brisc / "masks").mkdir()
    rows = [["file", "mask", "label", "plane", "brisc_split", "width", "height", "kaggle_twin"]]
    for c, cls in enumerate(CLASSES):
        (root / "data" / "Training" / cls).mkdir(parents=True)
        for i in range(8):
            img, lesion = _slice(100 * c + i, c)
            cv2.imwrite(str(root / "data" / "Training" / cls / f"{cls}_{i}.png"), img)
            if cls != "notumor":
                name = f"{cls}_{i}"
                cv2.imwrite(str(brisc / "images" / f"{name}.png"), cv2.resize(img, (256, 256)))
                up = cv2.resize(lesion.astype(np.uint8) * 255, (256, 256), interpolation=cv2.INTER_NEAREST)
                cv2.imwrite(str(brisc / "masks" / f"{name}.png"), up)
                rows.append(
                    [
                        f"images/{name}.png",
                        f"masks/{name}.png",
                        cls,
                        "axial",
                        "train",
                        256,
                        256,
                        f"Training/{cls}/{name}.png",
                    ]
                )
    with open(brisc / "slices.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return root / "data", brisc


def _config(data, out, **kw):
    base = dict(
        data=str(data),
        model="cnn-lstm",
        out=str(out),
        epochs=1,
        batch_size=8,
        seed=1,
        device="cpu",
        cache_dir=None,
        progress=False,
        pretrained=False,
        val_fraction=0.25,
    )
    return TrainConfig(**(base | kw))


@pytest.mark.parametrize(
    "kind",
    [  # rrr runs fast in the CLI test below; these two take 15-25 s on a loaded 2-core CPU
        pytest.param("rrr", marks=pytest.mark.slow),
        pytest.param("multitask", marks=pytest.mark.slow),
        pytest.param("cam", marks=pytest.mark.slow),
        pytest.param("multitask-inpaint", marks=pytest.mark.slow),
        "inpaint",
    ],
)
def test_each_grounding_kind_trains_records_and_reloads(tiny_data, tmp_path, kind):
    data, brisc = tiny_data
    result = train(
        _config(data, tmp_path / kind, grounding=kind, grounding_weight=0.5, masks_brisc=str(brisc), augment="mr")
    )
    meta = json.loads(result.checkpoint.with_suffix(".json").read_text())
    assert meta["recipe"]["grounding"] == kind and meta["recipe"]["grounding_weight"] == 0.5
    assert meta["recipe"]["augment"] == "mr" and meta["recipe"]["grounding_info"]["kind"] == kind
    masks = meta["recipe"]["data_info"]["masks"]
    assert masks["found"]["counts"] == {"brisc": {"glioma": 8, "meningioma": 8, "pituitary": 8}}
    assert masks["n_train_with_mask"] == 18 and masks["train_with_mask_per_class"]["notumor"] == 0
    row = result.history[0]
    assert row["grounding"] == kind and np.isfinite(row["grounding_loss"]) and row["grounding_loss"] > 0
    clf = Classifier.load(result.checkpoint, device="cpu")  # the classifier alone, unchanged in shape
    probs = clf.predict_proba_prepared(np.zeros((2, 64, 64), np.uint8))
    assert probs.shape == (2, 4)
    assert (tmp_path / kind / "mask_head.safetensors").is_file() == kind.startswith("multitask")


def test_grounding_needs_masks_and_a_known_kind_and_the_cli_records_the_preset(tiny_data, tmp_path):
    data, brisc = tiny_data
    with pytest.raises(ValueError, match="masks"):
        _config(data, tmp_path / "x", grounding="rrr")
    with pytest.raises(ValueError, match="augment"):
        _config(data, tmp_path / "x", augment="heavy")
    assert _config(data, tmp_path / "x", augment=False).augment == "none"  # old recipes stored a bool
    with pytest.raises(ValueError, match="inpaint-fill"):
        _config(data, tmp_path / "x", grounding="inpaint", masks_brisc=str(brisc), inpaint_fill="blur")
    with pytest.raises(ValueError, match="inpaint-class.*'tumour'"):
        _config(data, tmp_path / "x", grounding="inpaint", masks_brisc=str(brisc), inpaint_classes=("tumour",))
    base = ["train", "--data", str(data), "--model", "cnn-lstm", "--epochs", "1", "--device", "cpu", "--scratch"]
    base += ["--cache-dir", str(tmp_path / "cache"), "--val-fraction", "0.25", "--batch-size", "8"]
    bad = CliRunner().invoke(
        app, [*base, "--out", str(tmp_path / "bad"), "--grounding", "gradcam", "--masks-brisc", str(brisc)]
    )
    assert bad.exit_code == 1 and "rrr" in bad.output
    ok = CliRunner().invoke(
        app,
        [*base, "--out", str(tmp_path / "ok"), "--augment", "mr", "--grounding", "rrr", "--masks-brisc", str(brisc)],
    )
    assert ok.exit_code == 0, ok.output
    recipe = json.loads((tmp_path / "ok" / "best.json").read_text())["recipe"]
    assert recipe["augment"] == "mr" and recipe["grounding"] == "rrr" and recipe["masks_brisc"] == str(brisc)
    inpaint = ["--grounding", "inpaint", "--masks-brisc", str(brisc), "--inpaint-control-p", "0.5"]
    inpaint += ["--inpaint-fill", "transplant", "--inpaint-class", "meningioma", "--inpaint-class", "pituitary"]
    ok = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "inpaint"), *inpaint])
    assert ok.exit_code == 0, ok.output
    recipe = json.loads((tmp_path / "inpaint" / "best.json").read_text())["recipe"]
    assert recipe["inpaint_control_p"] == 0.5 and recipe["inpaint_fill"] == "transplant"
    assert recipe["inpaint_classes"] == ["meningioma", "pituitary"]
    plain = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "plain"), "--no-augment"])
    assert plain.exit_code == 0, plain.output
    assert json.loads((tmp_path / "plain" / "best.json").read_text())["recipe"]["augment"] == "none"
