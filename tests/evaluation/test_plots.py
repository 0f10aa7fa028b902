"""Training-curve figure: what it draws for runs with and without a validation split."""

import matplotlib.pyplot as plt
import numpy as np

from brainxai.evaluation.plots import training_curves_figure


def _history(validated: bool) -> list[dict]:
    rows = []
    for e, phase in ((1, "a"), (2, "a"), (3, "b")):
        rows.append(
            {
                "epoch": e,
                "phase": phase,
                "train_loss": 1.0 / e,
                "train_accuracy": 0.5 + 0.1 * e,
                "val_loss": 1.2 / e if validated else None,
                "val_accuracy": 0.4 + 0.1 * e if validated else None,
            }
        )
    return rows


def test_training_curves_draw_validation_only_when_there_is_one():
    with_val = training_curves_figure(_history(True))
    loss_ax, acc_ax = with_val.axes
    assert [ln.get_label() for ln in loss_ax.get_lines() if not ln.get_label().startswith("_")] == [
        "train",
        "validation",
    ]
    assert np.allclose(loss_ax.get_lines()[1].get_ydata(), [1.2, 0.6, 0.4])
    assert loss_ax.get_title() == "loss"
    # One dotted phase boundary, between epochs 2 and 3.
    assert [ln.get_xdata()[0] for ln in acc_ax.get_lines() if ln.get_linestyle() == ":"] == [2.5]
    plt.close(with_val)

    refit = training_curves_figure(_history(False))
    loss_ax, acc_ax = refit.axes
    assert [ln.get_label() for ln in acc_ax.get_lines() if not ln.get_label().startswith("_")] == ["train"]
    assert np.allclose(acc_ax.get_lines()[0].get_ydata(), [0.6, 0.7, 0.8])
    assert loss_ax.get_title() == "loss (no validation split)"
    plt.close(refit)
