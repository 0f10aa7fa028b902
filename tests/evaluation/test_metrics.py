import numpy as np
import pytest

from brainxai.evaluation.metrics import (
    bootstrap_ci,
    classification_metrics,
    confusion_matrix,
    expected_calibration_error,
    macro_f1,
    per_class_from_confusion,
    wilson_interval,
)

CLASSES = ["a", "b", "c"]


def test_confusion_and_per_class_by_hand():
    y = np.array([0, 0, 0, 1, 1, 2])
    p = np.array([0, 0, 1, 1, 2, 2])
    cm = confusion_matrix(y, p, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    rows = per_class_from_confusion(cm)
    # class 0: tp 2, fn 1, fp 0, tn 3
    assert rows[0]["precision"] == 1.0 and rows[0]["recall"] == pytest.approx(2 / 3)
    assert rows[0]["specificity"] == 1.0 and rows[0]["f1"] == pytest.approx(0.8)
    # class 1: tp 1, fn 1, fp 1, tn 3
    assert rows[1]["precision"] == 0.5 and rows[1]["recall"] == 0.5 and rows[1]["specificity"] == 0.75
    # class 2: tp 1, fn 0, fp 1, tn 4
    assert rows[2]["precision"] == 0.5 and rows[2]["recall"] == 1.0 and rows[2]["specificity"] == 0.8
    assert macro_f1(y, p, 3) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_classification_metrics_shape_and_auc():
    y = np.array([0, 1, 2, 0])
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    m = classification_metrics(y, probs, CLASSES, n_boot=50)
    assert m["n"] == 4 and m["accuracy"] == 1.0 and m["macro_f1"] == 1.0
    assert m["per_class"]["a"]["auc"] == 1.0
    assert set(m["per_class"]["b"]) == {"precision", "recall", "specificity", "f1", "auc", "support"}
    assert m["ci95"]["accuracy"] == [1.0, 1.0]
    with pytest.raises(ValueError):
        classification_metrics(y, probs[:, :2], CLASSES)


def test_auc_none_when_class_absent():
    y = np.array([0, 0, 1])
    probs = np.array([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.3, 0.7, 0.0]])
    m = classification_metrics(y, probs, CLASSES, n_boot=0)
    assert m["per_class"]["c"]["auc"] is None and "ci95" not in m
    assert m["macro_auc"] == 1.0


def test_ece_by_hand():
    # Two confident-correct (0.9) and two confident-wrong (0.9): |0.5 - 0.9| in one bin.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]])
    y = np.array([0, 0, 0, 0])
    assert expected_calibration_error(y, probs) == pytest.approx(0.4)
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(np.array([0, 1]), perfect) == 0.0


def test_bootstrap_ci_brackets_the_estimate():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    pred = np.where(rng.random(300) < 0.8, y, (y + 1) % 3)
    ci = bootstrap_ci(y, pred, 3, n_boot=300, seed=1)
    acc = np.mean(y == pred)
    assert ci["accuracy"][0] < acc < ci["accuracy"][1]
    assert ci["accuracy"][1] - ci["accuracy"][0] < 0.12
    assert bootstrap_ci(y, pred, 3, n_boot=300, seed=1) == ci


def test_wilson_interval_known_values():
    # Reference values from the closed form, worked by hand: p = 50/60, z = 1.959964.
    lo, hi = wilson_interval(50, 60)
    assert lo == pytest.approx(0.7197, abs=1e-4) and hi == pytest.approx(0.9068, abs=1e-4)
    # At the edges the interval stays inside [0, 1] and is not degenerate (the normal one would be [0, 0]).
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((1 - 0.2775, 1.0), abs=1e-4)


def test_wilson_interval_is_symmetric_and_narrows_with_n():
    for k, n in [(3, 7), (12, 60), (1, 2)]:
        lo, hi = wilson_interval(k, n)
        lo2, hi2 = wilson_interval(n - k, n)
        assert lo == pytest.approx(1 - hi2) and hi == pytest.approx(1 - lo2)
        assert lo <= k / n <= hi
    assert np.diff(wilson_interval(500, 600)) < np.diff(wilson_interval(50, 60))
    assert np.diff(wilson_interval(50, 60, confidence=0.99)) > np.diff(wilson_interval(50, 60))


@pytest.mark.parametrize("args", [(1, 0), (-1, 5), (6, 5), (2, 5, 1.0)])
def test_wilson_interval_rejects_bad_input(args):
    with pytest.raises(ValueError):
        wilson_interval(*args)
