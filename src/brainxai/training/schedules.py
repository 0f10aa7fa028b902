"""Training schedules: which parameters train, at which learning rate, for how many epochs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from brainxai.models.registry import ModelConfig, get_submodule

#: Default learning rates and epochs of the three progressive phases.
PROGRESSIVE_LRS: tuple[float, float, float] = (1e-3, 1e-4, 5e-5)
PROGRESSIVE_EPOCHS: tuple[int, int, int] = (15, 20, 15)


@dataclass(frozen=True)
class Phase:
    """One stage of a schedule.

    Attributes:
        name: Shown in logs and history.
        lr: Learning rate of the phase's fresh Adam optimiser.
        epochs: Maximum epochs (early stopping may end the phase sooner).
        trainable: Module paths to train; ``None`` trains the whole model.
    """

    name: str
    lr: float
    epochs: int
    trainable: tuple[str, ...] | None = None


def single_schedule(epochs: int, lr: float) -> list[Phase]:
    """Whole model, one learning rate."""
    return [Phase("all", lr, epochs, None)]


def progressive_schedule(
    config: ModelConfig,
    epochs: Sequence[int] = PROGRESSIVE_EPOCHS,
    lrs: Sequence[float] = PROGRESSIVE_LRS,
) -> list[Phase]:
    """Head only, then + the last stage, then + the stage before (one phase per entry of ``epochs``).

    Args:
        config: The model's config; its ``stages`` name the module groups from the head backwards.
        epochs: Epochs per phase.
        lrs: Learning rate per phase.
    """
    if len(epochs) != len(lrs):
        raise ValueError(f"{len(epochs)} phase lengths but {len(lrs)} learning rates")
    if len(epochs) > len(config.stages):
        raise ValueError(f"{config.name} defines {len(config.stages)} stages, cannot run {len(epochs)} phases")
    phases = []
    for i, (n, lr) in enumerate(zip(epochs, lrs)):
        modules = tuple(m for group in config.stages[: i + 1] for m in group)
        phases.append(Phase(f"phase{i + 1}:" + "+".join(g[0] for g in config.stages[: i + 1]), lr, int(n), modules))
    return phases


def apply_phase(model: nn.Module, phase: Phase) -> list[nn.Parameter]:
    """Sets ``requires_grad`` for the phase and returns the trainable parameters.

    Frozen parameters get no gradient, so autograd never back-propagates through the frozen early
    layers: on a CPU this is most of the saving of a progressive schedule.
    """
    if phase.trainable is None:
        for p in model.parameters():
            p.requires_grad_(True)
        return list(model.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    params: list[nn.Parameter] = []
    for path in phase.trainable:
        for p in get_submodule(model, path).parameters():
            p.requires_grad_(True)
            params.append(p)
    return params


def set_train_mode(model: nn.Module, phase: Phase) -> None:
    """Training mode for trained modules only; frozen ones (and their BatchNorm statistics) stay in eval."""
    if phase.trainable is None:
        model.train()
        return
    model.eval()
    for path in phase.trainable:
        get_submodule(model, path).train()
