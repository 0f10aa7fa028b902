"""The training loop: Adam + cross-entropy, ReduceLROnPlateau, early stopping, checkpoints, resume.

Outputs in ``out``:
  ``best.safetensors`` + ``best.json``   best-validation-loss checkpoint (the one to use), with its
                                        softmax temperature fitted on the validation split; without
                                        a split (``val_fraction=0``, a refit) the last epoch, T = 1
  ``last.pt``                           full state after the last completed epoch (for ``--resume``)
  ``history.csv`` / ``history.json``    one row per epoch
"""

from __future__ import annotations

import csv
import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from brainxai.constants import CLASSES
from brainxai.data.augment import AUGMENT_PRESETS, augmentation
from brainxai.data.dataset import MRIDataset
from brainxai.data.lesion import FILLS
from brainxai.data.preprocess import PreprocessConfig
from brainxai.models import create_model
from brainxai.models.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint, save_checkpoint
from brainxai.models.registry import model_config
from brainxai.training import distributed
from brainxai.training.calibrate import fit_checkpoint_temperature, split_description
from brainxai.training.grounding import GROUNDING_KINDS, Grounding, grounded_dataset
from brainxai.training.schedules import (
    PROGRESSIVE_EPOCHS,
    PROGRESSIVE_LRS,
    Phase,
    apply_phase,
    progressive_schedule,
    set_train_mode,
    single_schedule,
)
from brainxai.training.split import training_split
from brainxai.util.files import atomic_write, atomic_write_text

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the checkpoint as its recipe)."""

    data: str
    model: str = "efficientnet-lite0"
    out: str = "runs/train"
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    img_size: int | None = None
    augment: str = "default"  # a preset of brainxai.data.augment (none | default | mr); True/False: default/none
    hflip: bool = False
    schedule: Literal["single", "progressive"] = "single"
    phase_epochs: tuple[int, ...] = PROGRESSIVE_EPOCHS
    phase_lrs: tuple[float, ...] = PROGRESSIVE_LRS
    patience: int = 5
    lr_patience: int = 2
    lr_factor: float = 0.5
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    pretrained: bool = True
    cache_dir: str | None = ".cache/brainxai"
    limit_per_class: int | None = None
    exclude_twins_of: str | None = None  # keep an evaluation set's images (pHash twins) out of training
    exclude_sources: tuple[str, ...] = ()  # leave-one-source-out: train without these sources and their twins
    label_smoothing: float = 0.0
    lr_schedule: Literal["plateau", "cosine"] = "plateau"
    amp: Literal["auto", "bf16", "off"] = "auto"
    workers: int = 0
    time_budget_s: float | None = None
    stop_after: int | None = None
    progress: bool = True
    grounding: str = "none"  # none | rrr | cam | multitask | inpaint (brainxai.training.grounding)
    grounding_weight: float = 1.0
    grounding_dilate_px: int = 5  # mask dilation (model-input pixels) for rrr and inpaint
    inpaint_p: float = 0.25  # inpaint: probability of in-painting a masked tumour image
    inpaint_control_p: float = 0.0  # inpaint: probability of in-painting the mirrored control area instead
    inpaint_fill: str = "telea"  # inpaint: telea | transplant (brainxai.data.lesion.FILLS)
    inpaint_classes: tuple[str, ...] = ()  # inpaint: the classes whose images get in-painted (empty: all)
    masks_brisc: str | None = None  # brisc-masks-dev folder (masks of Kaggle twins)
    masks_figshare: str | None = None  # figshare-masks-dev folder (masks of mirrored figshare slices)
    extra_data: tuple[str, ...] = ()  # class-per-folder folders added to the training half only
    init_from: str | None = None  # start from this checkpoint's weights (fine-tuning) instead of ImageNet's

    def __post_init__(self) -> None:
        if isinstance(self.augment, bool):  # recipes from before the presets stored a bool
            self.augment = "default" if self.augment else "none"
        if self.augment not in AUGMENT_PRESETS:
            raise ValueError(f"unknown --augment {self.augment!r}; use one of {', '.join(AUGMENT_PRESETS)}")
        if self.grounding not in GROUNDING_KINDS:
            raise ValueError(f"unknown --grounding {self.grounding!r}; use one of {', '.join(GROUNDING_KINDS)}")
        unknown = set(self.inpaint_classes) - set(CLASSES)
        if unknown:
            raise ValueError(f"unknown --inpaint-class {sorted(unknown)}; use class names ({', '.join(CLASSES)})")
        if self.inpaint_fill not in FILLS:
            raise ValueError(f"unknown --inpaint-fill {self.inpaint_fill!r}; use one of {', '.join(FILLS)}")
        if self.grounding != "none" and not (self.masks_brisc or self.masks_figshare):
            raise ValueError("--grounding needs lesion masks: give --masks-brisc and/or --masks-figshare")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["phase_epochs"] = list(self.phase_epochs)
        d["phase_lrs"] = list(self.phase_lrs)
        d["extra_data"] = list(self.extra_data)
        d["inpaint_classes"] = list(self.inpaint_classes)
        return d


@dataclass
class TrainResult:
    checkpoint: Path
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_loss: float | None  # None when trained without a validation split
    stopped_early: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _build_phases(config: TrainConfig, model: nn.Module) -> list[Phase]:
    if config.schedule == "single":
        return single_schedule(config.epochs, config.lr)
    if config.schedule == "progressive":
        return progressive_schedule(model_config(model), config.phase_epochs, config.phase_lrs)
    raise ValueError(f"unknown schedule {config.schedule!r}; use 'single' or 'progressive'")


def _run_epoch(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    desc: str,
    progress: bool,
    deadline: float | None = None,
    amp: bool = False,
    grounding: Grounding | None = None,
) -> dict[str, float]:
    """One pass; trains when an optimizer is given. Returns loss, accuracy, timing and the share run.

    With a ``deadline`` (a ``time.perf_counter()`` value) the pass stops after the first batch that
    ends past it; ``fraction`` then says how much of the epoch was run. ``amp`` runs the forward
    pass under bfloat16 autocast (weights and optimiser state stay float32). With ``grounding`` the
    loader yields ``(x, y, mask, has_mask, inpainted)`` and the loss is the grounded one
    (``grounding_loss``: the mean grounding term per batch).
    """
    total_loss, correct, n, batches, grounding_sum = 0.0, 0, 0, 0, 0.0
    data_time = compute_time = 0.0
    t_mark = time.perf_counter()
    # tqdm.auto's class calls iter() on an iterable in its constructor; on a DataLoader that starts a
    # second, unused iterator, which draws from the shuffle generator (and, with workers, prefetches
    # a permutation), so the shuffle would depend on the worker count. Hand it the one iterator.
    bar = tqdm(iter(loader), total=len(loader), desc=desc, disable=not progress, leave=False)
    with torch.set_grad_enabled(optimizer is not None):
        for batch in bar:
            t_data = time.perf_counter()
            data_time += t_data - t_mark
            batch = [t.to(device, non_blocking=True) for t in batch]
            y = batch[1]
            if grounding is not None:
                loss, logits, y, term = grounding.batch_loss(model, batch, loss_fn, amp)
                grounding_sum += term
            else:
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                    logits = model(batch[0])
                loss = loss_fn(logits.float(), y)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            total_loss += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
            batches += 1
            t_mark = time.perf_counter()
            compute_time += t_mark - t_data
            bar.set_postfix(loss=f"{total_loss / n:.4f}", acc=f"{correct / n:.4f}")
            if deadline is not None and t_mark > deadline:
                break
    return {
        "loss": total_loss / max(n, 1),
        "accuracy": correct / max(n, 1),
        "data_time": data_time,
        "compute_time": compute_time,
        "fraction": batches / max(len(loader), 1),
        "grounding_loss": grounding_sum / max(batches, 1),
    }


def resolve_amp(amp: str, device: torch.device) -> bool:
    """Whether to train under bfloat16 autocast: ``auto`` means yes on CUDA, no elsewhere; ``bf16`` forces it.

    On most CPUs bfloat16 is slower than float32, hence ``auto`` leaves it off there; CPUs with AMX
    (Intel Xeon since Sapphire Rapids) run it faster, and ``bf16`` asks for it.
    """
    if amp not in ("auto", "bf16", "off"):
        raise ValueError(f"unknown --amp {amp!r}; use auto, bf16 or off")
    if amp == "bf16" and device.type not in ("cuda", "cpu"):
        raise ValueError(f"--amp bf16 needs a CUDA device or the CPU, not {device}")
    return amp == "bf16" or (device.type == "cuda" and amp == "auto")


def _make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, phase: Phase
) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau:
    """``plateau``: halve the rate when validation loss stalls; ``cosine``: anneal to 1% over the phase."""
    if config.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience
        )
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(phase.epochs, 1), eta_min=phase.lr * 0.01
        )
    raise ValueError(f"unknown lr schedule {config.lr_schedule!r}; use 'plateau' or 'cosine'")


def _write_history(out: Path, history: list[dict[str, Any]]) -> None:
    """``history.json`` and ``history.csv`` (one row per epoch), each written atomically."""
    atomic_write_text(out / "history.json", json.dumps(history, indent=2))
    if history:

        def write_csv(tmp: Path) -> None:
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(history[0]))
                writer.writeheader()
                writer.writerows(history)

        atomic_write(out / "history.csv", write_csv)


def _step_scheduler(
    scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau,
    val_loss: float | None,
) -> None:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        if val_loss is None:  # cannot happen: a run without validation refuses the plateau schedule
            raise ValueError("the plateau schedule needs a validation loss")
        scheduler.step(val_loss)
    else:
        scheduler.step()


def _check_stopping_rules(config: TrainConfig, refit: bool) -> None:
    """Refuses a ``--stop-after`` below 1, and the plateau schedule on a refit (it reads the val loss)."""
    if config.stop_after is not None and config.stop_after < 1:
        raise ValueError(f"--stop-after must be at least 1, got {config.stop_after}")
    if refit and config.lr_schedule == "plateau":
        raise ValueError(
            "--val-fraction 0 trains without a validation split, but the plateau schedule reads the "
            "validation loss; use --lr-schedule cosine (and --stop-after N for the epoch chosen on a split)"
        )


@dataclass
class _Run:
    """What a run sets up once: the model, its data, the schedule and the losses."""

    model: nn.Module
    preprocess: PreprocessConfig
    train_ds: MRIDataset
    val_ds: MRIDataset
    data_fp: str
    data_info: dict[str, Any]
    phases: list[Phase]
    # Without a validation split (a refit on all of Training, --val-fraction 0) nothing can select
    # an epoch: the run trains a fixed number of epochs and its checkpoint is the last one.
    refit: bool
    loss_fn: nn.Module
    # Model selection uses the plain negative log-likelihood, so runs with and without label
    # smoothing are compared on the same scale.
    val_loss_fn: nn.Module
    deadline: float | None = None  # time.perf_counter() value at which the time budget is spent
    grounding: Grounding | None = None  # None: plain cross-entropy (--grounding none)
    train_model: nn.Module | None = None  # what the training pass runs: the model, or its DDP wrapper (torchrun)

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.phases)


@dataclass
class _Progress:
    """Where a run stands after its completed epochs (what ``last.pt`` keeps for ``--resume``)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_val: float = float("inf")
    best_epoch: int = -1
    epoch: int = 0  # completed epochs
    phase_best: float = float("inf")  # best validation loss of the current phase
    bad_epochs: int = 0  # epochs of the current phase without improving on phase_best
    stopped_early: bool = False
    budget_spent: bool = False
    reached_stop: bool = False


def train(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Trains a model as described by ``config``; see the module docstring for outputs.

    Args:
        config: The run's recipe.
        resume: Continue from ``out/last.pt`` (the last completed epoch, with optimiser, scheduler
            and random state) instead of starting afresh.
    """
    return Trainer(config, resume=resume).fit()


def _init_from(model: nn.Module, path: str, preprocess: PreprocessConfig) -> dict[str, Any]:
    """Loads a trained checkpoint's weights into ``model`` (fine-tuning); returns what the new checkpoint records.

    Raises:
        CheckpointError: The checkpoint is missing, of another architecture, or prepares images differently.
    """
    loaded = load_checkpoint(path)
    name = model_config(model).name
    if loaded.meta.model != name:
        raise CheckpointError(f"--init-from {path}: a {loaded.meta.model!r} checkpoint, not {name!r}")
    if loaded.preprocess != preprocess:
        raise CheckpointError(f"--init-from {path}: trained with other preprocessing ({loaded.preprocess})")
    model.load_state_dict(loaded.model.state_dict(), strict=True)
    logger.info("starting from the weights of %s (sha256 %s)", loaded.weights_path, loaded.sha256[:12])
    return {"path": str(loaded.weights_path), "sha256": loaded.sha256, "created": loaded.meta.created}


class Trainer:
    """Stateful trainer; :meth:`fit` runs (or resumes) the whole schedule."""

    def __init__(self, config: TrainConfig, resume: bool = False) -> None:
        self.config = config
        self.resume = resume
        self.out = Path(config.out)
        # Under torchrun: this process's rank and device (brainxai.training.distributed); else one process.
        self.dist, self.device = distributed.init_from_env(config.device)
        if self.dist.enabled and (config.time_budget_s or config.grounding != "none"):
            raise ValueError("--time-budget and --grounding are not supported under torchrun yet")
        if not self.dist.is_main:  # rank 0 alone shows progress and writes outputs
            self.config = config = replace(config, progress=False)
        self.amp = resolve_amp(config.amp, self.device)
        if config.lr_schedule not in ("plateau", "cosine"):  # fail before minutes of decoding, not after
            raise ValueError(f"unknown lr schedule {config.lr_schedule!r}; use 'plateau' or 'cosine'")
        if self.device.type == "cuda":
            # Fixed input size: let cuDNN pick the fastest convolution algorithms once.
            torch.backends.cudnn.benchmark = True

    def _data(self, preprocess: PreprocessConfig) -> tuple[MRIDataset, MRIDataset, str, dict[str, Any]]:
        c = self.config
        with distributed.main_first(self.dist):  # rank 0 fills the decode cache, the others then read it
            split = training_split(
                c.data,
                preprocess,
                val_fraction=c.val_fraction,
                seed=c.seed,
                limit_per_class=c.limit_per_class,
                exclude_twins_of=c.exclude_twins_of,
                cache_dir=c.cache_dir,
                progress=c.progress,
                exclude_sources=tuple(c.exclude_sources),
                extra_data=tuple(c.extra_data),
            )
        images, labels, train_idx, val_idx = split.images, split.labels, split.train_idx, split.val_idx
        augment = augmentation(c.augment, hflip=c.hflip)
        masks_info: dict[str, Any] = {}
        train_ds: MRIDataset
        if c.grounding != "none":
            train_ds, masks_info = grounded_dataset(split, preprocess, augment, c)
        else:
            train_ds = MRIDataset(images[train_idx], labels[train_idx], preprocess, augment=augment, seed=c.seed)
        val_ds = MRIDataset(images[val_idx], labels[val_idx], preprocess)
        info = {
            "training_folder": str(split.folder),
            "n_train": len(train_idx),
            "n_val": len(val_idx),
            "skipped_files": [str(p) for p, _ in split.failed],
            "excluded_twins": [str(p.relative_to(split.folder)) for p in split.excluded],
            "excluded_twins_mirror_aware": True,
            "exclude_sources": list(c.exclude_sources),
            "n_excluded_by_source": len(split.excluded_by_source),
            "excluded_by_source": [str(p.relative_to(split.folder)) for p in split.excluded_by_source],
        }
        if split.excluded_by_source:
            logger.info(
                "left out %d training images of %s or sharing content with them",
                len(split.excluded_by_source),
                ", ".join(c.exclude_sources),
            )
        if split.excluded:
            logger.info("left out %d training images that are twins of %s", len(split.excluded), c.exclude_twins_of)
        if masks_info:
            info["masks"] = masks_info
        if split.extra:
            info["extra_data"] = split.extra
            logger.info("extra training data: %s", split.extra["folders"])
        return train_ds, val_ds, split.fingerprint, info

    def fit(self) -> TrainResult:
        """Runs (or resumes) the whole schedule: restore, then epoch by epoch each phase, then calibrate."""
        c = self.config
        run = self._setup()
        progress, state = self._restore(run.model)
        if state is not None and run.grounding is not None and run.grounding.head is not None:
            if state.get("grounding_head") is not None:
                run.grounding.head.load_state_dict(state["grounding_head"])
        progress.reached_stop = c.stop_after is not None and progress.epoch >= c.stop_after
        run.deadline = time.perf_counter() + c.time_budget_s if c.time_budget_s else None
        for phase_i in range(state["phase"] if state is not None else 0, len(run.phases)):
            self._run_phase(run, progress, phase_i, state)
            state = None  # only the phase the run was interrupted in resumes its optimiser
            if progress.budget_spent:
                logger.warning("time budget of %.0f s spent during epoch %d; stopping", c.time_budget_s, progress.epoch)
                break
            if progress.reached_stop:
                logger.info("stopping after epoch %d (--stop-after)", progress.epoch)
                break
        result = self._finish(run, progress)
        distributed.barrier(self.dist)  # every rank returns once rank 0 has written the checkpoint
        distributed.shutdown(self.dist)
        return result

    def _setup(self) -> _Run:
        """Seeds, builds the model, decodes and splits the data, and checks the recipe's schedule."""
        c = self.config
        seed_everything(c.seed)
        self.out.mkdir(parents=True, exist_ok=True)
        model = create_model(c.model, pretrained=c.pretrained, img_size=c.img_size).to(self.device)
        preprocess = model_config(model).preprocess
        init_info = _init_from(model, c.init_from, preprocess) if c.init_from else None
        train_ds, val_ds, data_fp, data_info = self._data(preprocess)
        if init_info is not None:
            data_info["init_from"] = init_info
        refit = len(val_ds) == 0
        _check_stopping_rules(c, refit)
        return _Run(
            model=model,
            preprocess=preprocess,
            train_ds=train_ds,
            val_ds=val_ds,
            data_fp=data_fp,
            data_info=data_info,
            phases=_build_phases(c, model),
            refit=refit,
            loss_fn=nn.CrossEntropyLoss(label_smoothing=c.label_smoothing),
            val_loss_fn=nn.CrossEntropyLoss(),
            grounding=self._grounding(model),
        )

    def _grounding(self, model: nn.Module) -> Grounding | None:
        """The run's grounding (None for ``none``), attached to the model (the multitask head hooks its encoder)."""
        c = self.config
        if c.grounding == "none":
            return None
        grounding = Grounding(c.grounding, weight=c.grounding_weight, dilate_px=c.grounding_dilate_px)
        grounding.attach(model, model_config(model).preprocess.img_size, self.device)
        return grounding

    def _restore(self, model: nn.Module) -> tuple[_Progress, dict[str, Any] | None]:
        """With ``resume``: the model and progress saved in ``last.pt``, and the saved state itself."""
        last_path = self.out / "last.pt"
        if not self.resume:
            return _Progress(), None
        if not last_path.is_file():
            logger.warning("--resume given but %s does not exist; starting afresh", last_path)
            return _Progress(), None
        state = torch.load(last_path, map_location=self.device, weights_only=False)
        ignored = {"progress", "device", "workers"}
        old = {k: v for k, v in state["recipe"].items() if k not in ignored}
        if old != {k: v for k, v in self.config.to_dict().items() if k not in ignored}:
            logger.warning("resuming with a recipe that differs from the interrupted run's")
        model.load_state_dict(state["model"])
        progress = _Progress(
            history=state["history"],
            best_val=state["best_val"],
            best_epoch=state["best_epoch"],
            epoch=state["epoch"],
            bad_epochs=state["bad_epochs"],
        )
        logger.info("resuming from epoch %d (phase %d)", progress.epoch, state["phase"] + 1)
        return progress, state

    def _run_phase(self, run: _Run, progress: _Progress, phase_i: int, state: dict[str, Any] | None) -> None:
        """Trains one phase with a fresh optimiser, or from ``state`` when the run resumes inside it."""
        c = self.config
        phase = run.phases[phase_i]
        extra = run.grounding.parameters() if run.grounding is not None else []  # the multitask mask head
        optimizer = torch.optim.Adam(apply_phase(run.model, phase) + extra, lr=phase.lr)
        run.train_model = None  # drop the previous phase's DDP wrapper (its hooks) before wrapping again
        run.train_model = distributed.wrap(run.model, self.dist, self.device)
        scheduler = _make_scheduler(optimizer, c, phase)
        first = state["epoch_in_phase"] if state is not None else 0
        if state is not None and first > 0:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng"])
            progress.phase_best = state["phase_best"]
        else:
            progress.bad_epochs, progress.phase_best = 0, float("inf")
        for e_in_phase in range(first, phase.epochs):
            if progress.bad_epochs >= c.patience or progress.budget_spent or progress.reached_stop:
                break
            if not self._one_epoch(run, progress, phase, optimizer, scheduler):
                # last.pt means "completed epochs"; a budget-cut epoch is not one, so it is not resumable.
                break
            self._save_resume_point(run, progress, phase_i, e_in_phase + 1, optimizer, scheduler)
        if progress.bad_epochs >= c.patience:
            progress.stopped_early = True
            logger.info("early stopping in %s after %d epochs without improvement", phase.name, progress.bad_epochs)

    def _one_epoch(
        self,
        run: _Run,
        progress: _Progress,
        phase: Phase,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau,
    ) -> bool:
        """Trains and validates one epoch, records it and keeps the best checkpoint.

        Returns:
            Whether the epoch ran to its end (False when the time budget cut it).
        """
        t0 = time.perf_counter()
        lr_now = optimizer.param_groups[0]["lr"]
        tr, va = self._train_and_validate(run, progress, phase, optimizer)
        _step_scheduler(scheduler, va["loss"])
        row = self._record(run, progress, phase, tr, va, lr_now, t0)
        progress.epoch += 1
        progress.reached_stop = self.config.stop_after is not None and progress.epoch >= self.config.stop_after
        self._select(run, progress, row, va["loss"])
        if self.dist.is_main:
            _write_history(self.out, progress.history)
        return tr["fraction"] >= 1.0

    def _loaders(self, run: _Run, epoch: int) -> tuple[DataLoader, DataLoader]:
        """This epoch's training loader (its own shuffle and augmentation seeds) and the validation loader."""
        c = self.config
        run.train_ds.set_epoch(epoch)
        gen = torch.Generator().manual_seed(c.seed * 1_000_003 + epoch)
        # Augmentation is seeded per (epoch, item), so worker processes do not change the result.
        loader_kw: dict[str, Any] = {"num_workers": c.workers, "pin_memory": self.device.type == "cuda"}
        if self.dist.enabled:  # this process's share of the epoch's seeded permutation (batch size per process)
            sampler = distributed.train_sampler(run.train_ds, self.dist, c.seed, epoch)
            train_loader = DataLoader(run.train_ds, batch_size=c.batch_size, sampler=sampler, **loader_kw)
        else:
            train_loader = DataLoader(run.train_ds, batch_size=c.batch_size, shuffle=True, generator=gen, **loader_kw)
        val_loader = DataLoader(run.val_ds, batch_size=c.batch_size * 2, **loader_kw)
        return train_loader, val_loader

    def _train_and_validate(
        self, run: _Run, progress: _Progress, phase: Phase, optimizer: torch.optim.Optimizer
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """One training pass (cut short by the time budget) and, unless refitting, one validation pass."""
        c, epoch = self.config, progress.epoch
        # Per-epoch seeding makes a resumed run draw the same shuffles and dropout masks.
        torch.manual_seed(c.seed * 100_003 + epoch)
        train_loader, val_loader = self._loaders(run, epoch)
        set_train_mode(run.model, phase)
        tr = _run_epoch(
            run.train_model if run.train_model is not None else run.model,
            train_loader,
            self.device,
            run.loss_fn,
            optimizer,
            f"epoch {epoch + 1}/{run.total_epochs} train",
            c.progress,
            run.deadline,
            self.amp,
            **({"grounding": run.grounding} if run.grounding is not None else {}),
        )
        progress.budget_spent = run.deadline is not None and time.perf_counter() > run.deadline
        tr["loss"], tr["accuracy"] = distributed.mean_over_ranks([tr["loss"], tr["accuracy"]], self.dist)
        run.model.eval()
        if run.refit:
            return tr, {"loss": None, "accuracy": None}
        va = _run_epoch(
            run.model,
            val_loader,
            self.device,
            run.val_loss_fn,
            None,
            f"epoch {epoch + 1} val",
            c.progress,
            None,
            self.amp,
        )
        # Every rank validates the whole split; rank 0's figures drive every rank's schedule and stopping.
        va["loss"], va["accuracy"] = distributed.from_main([va["loss"], va["accuracy"]], self.dist)
        return tr, va

    def _record(
        self,
        run: _Run,
        progress: _Progress,
        phase: Phase,
        tr: dict[str, float],
        va: dict[str, Any],
        lr_now: float,
        t0: float,
    ) -> dict[str, Any]:
        """Appends the epoch's history row and logs it."""
        row = {
            "epoch": progress.epoch + 1,
            "phase": phase.name,
            "train_loss": round(tr["loss"], 6),
            "train_accuracy": round(tr["accuracy"], 6),
            "val_loss": None if run.refit else round(va["loss"], 6),
            "val_accuracy": None if run.refit else round(va["accuracy"], 6),
            "lr": lr_now,
            "time_s": round(time.perf_counter() - t0, 2),
            "data_time_s": round(tr["data_time"], 2),
            "epoch_fraction": round(tr["fraction"], 4),
        }
        if run.grounding is not None:
            row["grounding"] = run.grounding.kind
            row["grounding_loss"] = round(tr["grounding_loss"], 6)
        progress.history.append(row)
        logger.info(
            "epoch %d [%s] train loss %.4f acc %.4f | %s | %.0fs",
            progress.epoch + 1,
            phase.name,
            tr["loss"],
            tr["accuracy"],
            "no validation" if run.refit else f"val loss {va['loss']:.4f} acc {va['accuracy']:.4f}",
            row["time_s"],
        )
        return row

    def _select(self, run: _Run, progress: _Progress, row: dict[str, Any], val_loss: float | None) -> None:
        """Keeps the best checkpoint (on a refit, the latest) and counts the phase's epochs without improvement."""
        if run.refit or val_loss is None:
            progress.best_epoch = progress.epoch
            self._save_best(run, progress.history, row)
            return
        if val_loss < progress.phase_best:
            progress.phase_best, progress.bad_epochs = val_loss, 0
        else:
            progress.bad_epochs += 1
        if val_loss < progress.best_val:
            progress.best_val, progress.best_epoch = val_loss, progress.epoch
            self._save_best(run, progress.history, row)

    def _save_resume_point(
        self,
        run: _Run,
        progress: _Progress,
        phase_i: int,
        done_in_phase: int,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau,
    ) -> None:
        """Writes ``last.pt``: the full state after a completed epoch, and where to go on from it."""
        if not self.dist.is_main:  # the replicas are identical; rank 0 keeps the state for any world size
            return
        phase_done = done_in_phase >= run.phases[phase_i].epochs
        state = {
            "model": run.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "epoch": progress.epoch,
            "phase": phase_i + 1 if phase_done else phase_i,
            "epoch_in_phase": 0 if phase_done else done_in_phase,
            "phase_best": progress.phase_best,
            "bad_epochs": progress.bad_epochs,
            "best_val": progress.best_val,
            "best_epoch": progress.best_epoch,
            "history": progress.history,
            "recipe": self.config.to_dict(),
            "grounding_head": run.grounding.head.state_dict() if run.grounding and run.grounding.head else None,
        }
        atomic_write(self.out / "last.pt", lambda tmp: torch.save(state, tmp))

    def _finish(self, run: _Run, progress: _Progress) -> TrainResult:
        """Calibrates the best checkpoint and stores the complete history in its metadata."""
        best_path = self.out / "best"
        if progress.best_epoch < 0:
            raise RuntimeError("training ran no epoch; nothing to save")
        if self.dist.is_main:
            self._finish_meta(run, progress, best_path)
        return TrainResult(
            checkpoint=best_path.with_suffix(".safetensors"),
            history=progress.history,
            best_epoch=progress.best_epoch,
            best_val_loss=None if run.refit else progress.best_val,
            stopped_early=progress.stopped_early,
            extra=run.data_info | {"time_budget_spent": progress.budget_spent},
        )

    def _finish_meta(self, run: _Run, progress: _Progress, best_path: Path) -> None:
        """Refreshes ``best.json`` with the temperature and the complete history, in one atomic write."""
        meta_path = best_path.with_suffix(".json")
        meta = json.loads(meta_path.read_text())
        meta["history"] = progress.history
        if run.refit:
            logger.warning(
                "no validation split: the checkpoint's temperature stays 1 (uncalibrated); "
                "`brainxai calibrate --from` can carry one over from the run the recipe was chosen on"
            )
        else:
            meta.update(self._calibrate(run, best_path))
        atomic_write_text(meta_path, json.dumps(meta, indent=2))

    def _calibrate(self, run: _Run, best_path: Path) -> dict[str, Any]:
        """Post-hoc temperature scaling of the best checkpoint on the validation split (one pass).

        Returns:
            The metadata entries ``temperature`` and ``calibration``.
        """
        c = self.config
        calibration = fit_checkpoint_temperature(
            best_path,
            run.val_ds.images,
            run.val_ds.labels,
            split_description(c.val_fraction, c.seed, c.limit_per_class),
            device=self.device,
        )
        temperature = calibration.pop("temperature")
        logger.info(
            "temperature %.4f fitted on %d validation images: NLL %.4f -> %.4f, ECE %.4f -> %.4f",
            temperature,
            calibration["n"],
            calibration["nll_before"],
            calibration["nll_after"],
            calibration["ece_before"],
            calibration["ece_after"],
        )
        return {"temperature": temperature, "calibration": calibration}

    def _save_best(self, run: _Run, history: list[dict[str, Any]], row: dict[str, Any]) -> None:
        """Saves the model as ``best`` with its recipe, this epoch's metrics and the history so far."""
        if not self.dist.is_main:
            return
        meta = CheckpointMeta(
            model=self.config.model,
            classes=list(model_config(run.model).classes or CLASSES),
            preprocess=run.preprocess,
            recipe=self.config.to_dict()
            | {"device": str(self.device), "amp": "bf16" if self.amp else "off", "world_size": self.dist.world_size},
            metrics={
                "best_epoch": row["epoch"],
                "val_loss": row["val_loss"],
                "val_accuracy": row["val_accuracy"],
            },
            history=list(history),
            dataset_fingerprint=run.data_fp,
        )
        meta.recipe["data_info"] = {k: v for k, v in run.data_info.items() if k != "skipped_files"}
        meta.recipe["grounding_info"] = run.grounding.summary() if run.grounding is not None else {"kind": "none"}
        save_checkpoint(self.out / "best", run.model, meta)
        if run.grounding is not None and run.grounding.head is not None:
            # Not part of the classifier: kept beside it for inspection, never loaded for inference.
            head_state = {k: v.detach().cpu().contiguous() for k, v in run.grounding.head.state_dict().items()}
            atomic_write(self.out / "mask_head.safetensors", lambda tmp: save_file(head_state, str(tmp)))
